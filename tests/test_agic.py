"""AGIC mode's pure decision: which Ingresses, which annotation values, what is restored."""

from appgw_sse.core import agic
from appgw_sse.core.agic import DRAINING, DRAINING_TIMEOUT, REQUEST_TIMEOUT, Ingress, IngressLedger
from tests.support.gateways import intent


def ing(name: str, service: str = "svc") -> Ingress:
    return Ingress(name, {}, frozenset({service}))


def with_keys(name: str, values: dict[str, str], service: str = "svc") -> Ingress:
    return Ingress(name, values, frozenset({service}))


def test_only_agic_ingresses_are_seen() -> None:
    by_class = {
        "metadata": {"name": "a"},
        "spec": {
            "ingressClassName": "azure-application-gateway",
            "defaultBackend": {"service": {"name": "svc"}},
        },
    }
    by_annotation = {
        "metadata": {
            "name": "b",
            "annotations": {"kubernetes.io/ingress.class": "azure/application-gateway"},
        },
        "spec": {"rules": [{"http": {"paths": [{"backend": {"service": {"name": "other"}}}]}}]},
    }
    nginx = {"metadata": {"name": "c"}, "spec": {"ingressClassName": "nginx"}}
    assert agic.agic_ingress(by_class) == Ingress("a", {}, frozenset({"svc"}))
    found = agic.agic_ingress(by_annotation)
    assert found is not None and found.services == frozenset({"other"})
    assert agic.agic_ingress(nginx) is None


def test_values_are_set_on_the_ingresses_of_the_service_only() -> None:
    routes = [intent("r", drain=120, service="svc")]
    plan = agic.plan_ingresses(routes, [ing("web"), ing("other", service="x")], IngressLedger("ns"))
    assert plan.patches == {
        "web": {REQUEST_TIMEOUT: "68", DRAINING: "true", DRAINING_TIMEOUT: "120"}
    }
    assert plan.served == {"ns/r": ["web"]}
    assert plan.ledger.owned[("web", REQUEST_TIMEOUT)] == agic.Owned(None, "68")


def test_a_higher_value_is_kept_and_not_owned() -> None:
    routes = [intent("r", service="svc")]
    plan = agic.plan_ingresses(
        routes, [with_keys("web", {REQUEST_TIMEOUT: "600"})], IngressLedger("ns")
    )
    assert plan.patches == {} and plan.ledger.is_empty


def test_a_lower_value_is_raised_and_restored_later() -> None:
    routes = [intent("r", service="svc")]
    ingresses = [with_keys("web", {REQUEST_TIMEOUT: "30"})]
    plan = agic.plan_ingresses(routes, ingresses, IngressLedger("ns"))
    assert plan.patches == {"web": {REQUEST_TIMEOUT: "68"}}
    applied = [with_keys("web", {REQUEST_TIMEOUT: "68"})]
    restore = agic.plan_ingresses([], applied, plan.ledger)
    assert restore.patches == {"web": {REQUEST_TIMEOUT: "30"}} and restore.ledger.is_empty
    released = agic.plan_ingresses([], applied, plan.ledger, release=True)
    assert released.patches == {} and released.ledger.is_empty


def test_a_value_changed_by_someone_else_is_not_restored() -> None:
    ledger = IngressLedger("ns", {("web", REQUEST_TIMEOUT): agic.Owned(None, "68")})
    plan = agic.plan_ingresses([], [with_keys("web", {REQUEST_TIMEOUT: "90"})], ledger)
    assert plan.patches == {} and plan.ledger.is_empty
    assert plan.notices and "not restored" in plan.notices[0].message


def test_the_ledger_round_trips() -> None:
    ledger = IngressLedger(
        "ns",
        {
            ("web", REQUEST_TIMEOUT): agic.Owned(None, "68"),
            ("web", DRAINING): agic.Owned("false", "true"),
        },
    )
    assert IngressLedger.from_json(ledger.to_json()) == ledger


def test_buffering_command_names_the_group_and_gateway() -> None:
    gid = "/subscriptions/s/resourceGroups/rg-a/providers/Microsoft.Network/applicationGateways/gw"
    assert agic.buffering_command(gid) == (
        "az network application-gateway update -g rg-a -n gw "
        "--set globalConfiguration.enableResponseBuffering=false"
    )
