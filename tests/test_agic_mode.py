"""AGIC mode against fakes of its ports: on a gateway AGIC manages, the routes' values go into
Ingress annotations, and their conditions say where they went or why they could not."""

from typing import Any

from appgw_sse.agic_mode import AgicMode, AgicPass
from appgw_sse.core import agic
from appgw_sse.core.ledger import Ledger
from appgw_sse.core.planner import plan_gateway
from appgw_sse.routebook import RouteBook
from tests.support.fakes import FakeKube, condition
from tests.support.fakes import route_body as body
from tests.support.gateways import gateway_document, gateway_id

GID = gateway_id()
KEY = GID.lower()
AGIC_TAGS = {
    "managed-by-k8s-ingress": "1.8.1",
    "ingress-for-aks-cluster-id": "/subscriptions/x/aks",
}


async def agic_pass(mode: AgicMode, book: RouteBook, document: dict[str, Any]) -> AgicPass:
    """The gateway's pass as its worker runs it: planned from the routes on it, then AGIC mode."""
    records = book.on_gateway(KEY)
    planned = {r.key: r.intent for r in records if r.intent}
    plan = plan_gateway(GID, list(planned.values()), document, Ledger(gateway_id=GID))
    return await mode.reconcile(KEY, records, plan, document, planned)


async def test_the_other_services_of_a_shared_ingress_are_named() -> None:
    kube = FakeKube()
    book = RouteBook(kube, ("*",))
    mode = AgicMode(book, kube, enabled=True)
    kube.ingresses["ns"] = [agic.Ingress("web", {}, frozenset({"svc", "api"}))]
    await book.observe(body("r", backend={"serviceName": "svc"}))
    await agic_pass(mode, book, gateway_document({"a": 30}, buffering=False, tags=AGIC_TAGS))
    assert kube.ingress_patches == [("web", {agic.REQUEST_TIMEOUT: "68"})]
    configured = next(
        c for c in kube.last_status("r")["conditions"] if c["type"] == "GatewayConfigured"
    )
    assert configured["reason"] == "IngressesAnnotated"
    assert "Ingress web also routes to Service api" in configured["message"]
    [(_, message)] = [(r, m) for _, r, m in kube.events if r == "IngressShared"]
    assert message.endswith("other Services: Ingress web also routes to Service api")


async def test_an_ingress_list_failure_is_a_condition_on_the_routes_that_need_ingresses() -> None:
    kube = FakeKube()
    book = RouteBook(kube, ("*",))
    mode = AgicMode(book, kube, enabled=True)
    document = gateway_document({"a": 30}, tags=AGIC_TAGS)
    kube.ingress_failure = "could not list the Ingresses of namespace ns: 403 Forbidden"
    await book.observe(body("plain"))  # no serviceName: never needs an Ingress
    await book.observe(body("served", backend={"serviceName": "svc"}))
    failed = await agic_pass(mode, book, document)
    assert failed.retry == 30  # tried again, no traceback
    assert set(failed.unlisted) == {"ns"}
    assert condition(kube.last_status("plain"), "GatewayConfigured")[:2] == (
        "False",
        "ManagedByAGIC",
    )
    configured = next(
        c for c in kube.last_status("served")["conditions"] if c["type"] == "GatewayConfigured"
    )
    assert (
        configured["reason"] == "IngressesUnavailable" and "403 Forbidden" in configured["message"]
    )
    kube.ingress_failure = None
    assert await agic_pass(mode, book, document) == AgicPass({}, None)
    assert condition(kube.last_status("served"), "GatewayConfigured")[1] == "IngressNotFound"


async def test_with_agic_mode_off_the_routes_that_need_ingresses_say_so_and_nothing_retries() -> (
    None
):
    kube = FakeKube()
    book = RouteBook(kube, ("*",))
    mode = AgicMode(book, kube, enabled=False)
    kube.ingresses["ns"] = [agic.Ingress("web", {}, frozenset({"svc"}))]
    await book.observe(body("served", backend={"serviceName": "svc"}))
    off = await agic_pass(mode, book, gateway_document({"a": 30}, tags=AGIC_TAGS))
    assert off == AgicPass({"ns": "AGIC mode is off (--no-agic, agic.enabled=false)"}, None)
    assert kube.ingress_patches == []
    configured = next(
        c for c in kube.last_status("served")["conditions"] if c["type"] == "GatewayConfigured"
    )
    assert configured["reason"] == "IngressesUnavailable"
    assert configured["message"] == "AGIC mode is off (--no-agic, agic.enabled=false)"


async def test_an_ingress_change_concerns_the_gateways_last_seen_managed_by_agic() -> None:
    kube = FakeKube()
    book = RouteBook(kube, ("*",))
    mode = AgicMode(book, kube, enabled=True)
    await book.observe(body("r", backend={"serviceName": "svc"}))
    assert mode.gateways_in("ns") == set()  # no pass saw the gateway yet
    await agic_pass(mode, book, gateway_document({"a": 30}, tags=AGIC_TAGS))
    assert mode.gateways_in("ns") == {KEY}
    assert mode.gateways_in("other") == set()
    mode.left(KEY)  # read again without AGIC's tags
    assert mode.gateways_in("ns") == set()
