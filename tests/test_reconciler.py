"""The reconciler against fakes of its ports: which generation its conditions speak for, and
which instance of the gateway its ledger belongs to."""

import asyncio
import copy
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from appgw_sse.adapters.azure_gateway import Snapshot
from appgw_sse.adapters.errors import TerminalGatewayError
from appgw_sse.core import document as doc
from appgw_sse.core.contract import FINALIZER
from appgw_sse.core.ledger import Ledger
from appgw_sse.core.planner import Plan, Reason
from appgw_sse.models.status import BackendsStatus, Condition
from appgw_sse.reconciler import OperatorConfig, Reconciler
from tests.support.gateways import gateway_document, gateway_id

GID = gateway_id()
KEY = GID.lower()
OLD, NEW = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def instance(timeout: int, guid: str) -> dict[str, Any]:
    document = gateway_document({"a": timeout})
    document["properties"]["resourceGuid"] = guid
    return document


class FakeGateways:
    """One gateway; apply() can be held open like a long-running PUT."""

    def __init__(self, document: dict[str, Any] | None) -> None:
        self.document = document
        self.hold: asyncio.Event | None = None
        self.in_flight = asyncio.Event()

    def timeout(self) -> int:
        assert self.document is not None
        return doc.backend_setting_timeouts(self.document)["a"]

    async def wait_until_settled(self, gateway_id: str) -> Snapshot:
        if self.document is None:
            raise TerminalGatewayError(Reason.GATEWAY_NOT_FOUND, "ResourceNotFound", "gone")
        return Snapshot(document=copy.deepcopy(self.document), etag="e")

    async def apply(self, plan: Plan) -> dict[str, Any]:
        assert self.document is not None and plan.holds_in(self.document)
        self.in_flight.set()
        if self.hold is not None:
            await self.hold.wait()
        self.in_flight.clear()
        self.document = plan.apply_to(self.document)
        return copy.deepcopy(self.document)

    async def close(self) -> None:
        return None


class FakeKube:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []  # (route, reason, message)
        self.ledgers: dict[str, tuple[Ledger, Ledger | None]] = {}

    async def patch_route_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(copy.deepcopy(status))

    async def post_event(
        self, route: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        self.events.append((route["name"], reason, message))

    async def load_ledger(self, gateway_id: str) -> tuple[Ledger, Ledger | None]:
        return self.ledgers.get(gateway_id.lower(), (Ledger(gateway_id=gateway_id), None))

    async def save_ledger(self, confirmed: Ledger, intent: Ledger | None = None) -> None:
        self.ledgers[confirmed.gateway_id.lower()] = (confirmed, intent)

    async def delete_ledger(self, gateway_id: str) -> None:
        self.ledgers.pop(gateway_id.lower(), None)


def route(generation: int, idle: str = "45s", **changes: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "r",
            "uid": "u",
            "generation": generation,
            "finalizers": [FINALIZER],
        }
        | changes.pop("metadata", {}),
        "spec": {"gateway": {"id": GID, "backendSettings": ["a"]}, "idleInterval": idle} | changes,
    }


def condition(status: dict[str, Any], type_: str = "Ready") -> tuple[str, str, int]:
    found = next(c for c in status["conditions"] if c["type"] == type_)
    return found["status"], found["reason"], found["observedGeneration"]


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def gateways() -> FakeGateways:
    return FakeGateways(instance(30, OLD))


@pytest.fixture
async def reconciler(gateways: FakeGateways, kube: FakeKube) -> AsyncIterator[Reconciler]:
    # The workers never fire on their own: each test runs the passes itself.
    running = Reconciler(OperatorConfig(allowed_gateways=("*",), debounce=3600), gateways, kube)
    yield running
    await running.close()


# -- conditions speak for the generation they were computed from ----------------------------


async def test_a_generation_arriving_during_a_put_is_pending_until_its_own_put(
    reconciler: Reconciler, gateways: FakeGateways, kube: FakeKube
) -> None:
    await reconciler.observe(route(1))
    await reconciler.reconcile(KEY)
    assert condition(kube.statuses[-1]) == ("True", "Applied", 1)
    gateways.hold = asyncio.Event()
    await reconciler.observe(route(2, idle="100s"))  # needs 150 s
    running = asyncio.create_task(reconciler.reconcile(KEY))
    await gateways.in_flight.wait()
    await reconciler.observe(route(3, idle="120s"))  # needs 180 s
    written = len(kube.statuses)
    gateways.hold.set()
    await running
    assert gateways.timeout() == 150
    after = kube.statuses[written:]
    assert [condition(s) for s in after] == [("False", "Pending", 3)]
    assert condition(after[-1], "GatewayConfigured") == ("False", "Pending", 3)
    await reconciler.reconcile(KEY)
    assert gateways.timeout() == 180
    assert condition(kube.statuses[-1]) == ("True", "Applied", 3)


async def test_unchanged_requirements_keep_the_outcome_for_the_new_generation(
    reconciler: Reconciler, gateways: FakeGateways, kube: FakeKube
) -> None:
    await reconciler.observe(route(1))
    gateways.hold = asyncio.Event()
    running = asyncio.create_task(reconciler.reconcile(KEY))
    await gateways.in_flight.wait()
    await reconciler.observe(route(2, restoreOnDelete=False))  # the gateway needs the same
    gateways.hold.set()
    await running
    assert condition(kube.statuses[-1]) == ("True", "Applied", 2)


async def test_a_pods_side_update_never_makes_an_unapplied_generation_ready(
    reconciler: Reconciler, kube: FakeKube
) -> None:
    backend = {"backend": {"serviceName": "svc"}}
    await reconciler.observe(route(1, **backend))
    await reconciler.reconcile(KEY)
    await reconciler.observe(route(2, idle="100s", **backend))
    annotated = Condition(
        type="BackendsAnnotated",
        status="True",
        reason="Annotated",
        message="1 pod(s) carry the SSE contract",
    )
    await reconciler.write_backends_status(
        reconciler.routes["ns/r"], [annotated], BackendsStatus(selected=1, annotated=1)
    )
    assert condition(kube.statuses[-1]) == ("False", "Pending", 2)


async def test_a_rejected_generation_is_not_accepted_by_a_later_pass(
    reconciler: Reconciler, kube: FakeKube
) -> None:
    await reconciler.observe(route(1))
    await reconciler.reconcile(KEY)
    await reconciler.observe(route(2, idle="45"))  # no unit: InvalidSpec
    await reconciler.reconcile(KEY)  # a resync: the last valid requirements still hold
    assert condition(kube.statuses[-1], "Accepted") == ("False", "InvalidSpec", 2)
    assert condition(kube.statuses[-1]) == ("False", "InvalidSpec", 2)


# -- the ledger belongs to one instance of the gateway --------------------------------------


async def test_a_recreated_gateway_gets_a_fresh_ledger_an_event_and_a_log_line(
    reconciler: Reconciler, gateways: FakeGateways, kube: FakeKube, caplog: Any
) -> None:
    await reconciler.observe(route(1))
    await reconciler.reconcile(KEY)
    assert kube.ledgers[KEY][0].backend_settings["a"].original == 30
    gateways.document = instance(45, NEW)
    with caplog.at_level(logging.WARNING, logger="appgw_sse.reconciler"):
        await reconciler.reconcile(KEY)
    assert "agw (routes ns/r): gateway was recreated; original values read afresh" in caplog.text
    assert [e[1] for e in kube.events].count(Reason.GATEWAY_RECREATED) == 1
    confirmed, intent = kube.ledgers[KEY]
    assert (confirmed.resource_guid, intent) == (NEW, None)
    assert confirmed.backend_settings["a"].original == 45
    await reconciler.observe(route(1, metadata={"deletionTimestamp": "now"}))
    await reconciler.reconcile(KEY)
    assert gateways.timeout() == 45
    assert KEY not in kube.ledgers  # emptied by the restore: deleted, not kept


async def test_a_gone_gateway_keeps_its_ledger_only_while_a_route_needs_it(
    reconciler: Reconciler, gateways: FakeGateways, kube: FakeKube
) -> None:
    await reconciler.observe(route(1))
    await reconciler.reconcile(KEY)
    gateways.document = None
    await reconciler.reconcile(KEY)
    assert condition(kube.statuses[-1]) == ("False", "GatewayNotFound", 1)
    assert KEY in kube.ledgers  # the route still needs the gateway
    await reconciler.observe(route(1, metadata={"deletionTimestamp": "now"}))
    await reconciler.reconcile(KEY)
    await asyncio.wait_for(reconciler.released("ns", "r"), 1)
    assert KEY not in kube.ledgers
