"""The gateway worker and the route book against fakes of their ports: which generation the
conditions speak for, and which instance of the gateway the ledger belongs to."""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest

from appgw_sse.adapters.kube import RouteListing
from appgw_sse.config import OperatorConfig
from appgw_sse.core.conditions import Condition, Reason
from appgw_sse.core.fields import REQUEST_TIMEOUT
from appgw_sse.finalizers import Finalizers
from appgw_sse.handlers.routes import route_event
from appgw_sse.models.status import BackendsStatus
from appgw_sse.ports import TransientGatewayError
from appgw_sse.reconciler import GatewayReconciler
from appgw_sse.routebook import RouteBook
from tests.support.fakes import FakeGateways, FakeKube, condition
from tests.support.fakes import route_body as body
from tests.support.gateways import gateway_document, gateway_id

GID = gateway_id()
KEY = GID.lower()
A = REQUEST_TIMEOUT.at("a")
OLD, NEW = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def instance(timeout: int, guid: str) -> dict[str, Any]:
    document = gateway_document({"a": timeout})
    document["properties"]["resourceGuid"] = guid
    return document


def route(generation: int, idle: str = "45s", **spec: Any) -> dict[str, Any]:
    return body("r", generation, idle, **spec)


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def gateways() -> FakeGateways:
    return FakeGateways(instance(30, OLD))


@pytest.fixture
def book(kube: FakeKube) -> RouteBook:
    return RouteBook(kube, ("*",))


@pytest.fixture
async def reconciler(
    book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> AsyncIterator[GatewayReconciler]:
    # The workers never fire on their own: each test runs the passes itself.
    config = OperatorConfig(allowed_gateways=("*",), debounce=3600)
    running = GatewayReconciler(config, book, gateways, kube)
    yield running
    await running.close()


# -- conditions speak for the generation they were computed from ----------------------------


async def test_a_generation_arriving_during_a_put_is_pending_until_its_own_put(
    reconciler: GatewayReconciler, book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    await book.observe(route(1))
    await reconciler.reconcile(KEY)
    assert condition(kube.statuses[-1]) == ("True", "Applied", 1)
    gateways.hold = asyncio.Event()
    await book.observe(route(2, idle="100s"))  # needs 150 s
    running = asyncio.create_task(reconciler.reconcile(KEY))
    await gateways.in_flight.wait()
    await book.observe(route(3, idle="120s"))  # needs 180 s
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
    reconciler: GatewayReconciler, book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    await book.observe(route(1))
    gateways.hold = asyncio.Event()
    running = asyncio.create_task(reconciler.reconcile(KEY))
    await gateways.in_flight.wait()
    await book.observe(route(2, restoreOnDelete=False))  # the gateway needs the same
    gateways.hold.set()
    await running
    assert condition(kube.statuses[-1]) == ("True", "Applied", 2)


async def test_a_pods_side_update_never_makes_an_unapplied_generation_ready(
    reconciler: GatewayReconciler, book: RouteBook, kube: FakeKube
) -> None:
    backend = {"backend": {"serviceName": "svc"}}
    await book.observe(route(1, **backend))
    await reconciler.reconcile(KEY)
    await book.observe(route(2, idle="100s", **backend))
    annotated = Condition(
        type="BackendsAnnotated",
        status="True",
        reason="Annotated",
        message="1 pod(s) carry the SSE contract",
    )
    await book.write_status(
        book.routes["ns/r"], [annotated], backends=BackendsStatus(selected=1, annotated=1)
    )
    assert condition(kube.statuses[-1]) == ("False", "Pending", 2)


async def test_a_rejected_generation_is_not_accepted_by_a_later_pass(
    reconciler: GatewayReconciler, book: RouteBook, kube: FakeKube
) -> None:
    await book.observe(route(1))
    await reconciler.reconcile(KEY)
    await book.observe(route(2, idle="45"))  # no unit: InvalidSpec
    await reconciler.reconcile(KEY)  # a resync: the last valid requirements still hold
    assert condition(kube.statuses[-1], "Accepted") == ("False", "InvalidSpec", 2)
    assert condition(kube.statuses[-1]) == ("False", "InvalidSpec", 2)


# -- the ledger belongs to one instance of the gateway --------------------------------------


async def test_a_recreated_gateway_gets_a_fresh_ledger_an_event_and_a_log_line(
    reconciler: GatewayReconciler,
    book: RouteBook,
    gateways: FakeGateways,
    kube: FakeKube,
    caplog: Any,
) -> None:
    await book.observe(route(1))
    await reconciler.reconcile(KEY)
    assert kube.ledgers[KEY][0].owned[A].original == 30
    gateways.document = instance(45, NEW)
    with caplog.at_level(logging.WARNING, logger="appgw_sse.reconciler"):
        await reconciler.reconcile(KEY)
    assert "agw (routes ns/r): gateway was recreated; original values read afresh" in caplog.text
    assert [e[1] for e in kube.events].count(Reason.GATEWAY_RECREATED) == 1
    confirmed, pending = kube.ledgers[KEY]
    assert (confirmed.resource_guid, pending) == (NEW, None)
    assert confirmed.owned[A].original == 45
    await book.observe(route(1, metadata={"deletionTimestamp": "now"}))
    await reconciler.reconcile(KEY)
    assert gateways.timeout() == 45
    assert KEY not in kube.ledgers  # emptied by the restore: deleted, not kept


async def test_a_gone_gateway_keeps_its_ledger_only_while_a_route_needs_it(
    reconciler: GatewayReconciler, book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    await book.observe(route(1))
    await reconciler.reconcile(KEY)
    gateways.document = None
    await reconciler.reconcile(KEY)
    assert condition(kube.statuses[-1]) == ("False", "GatewayNotFound", 1)
    assert KEY in kube.ledgers  # the route still needs the gateway
    writes = len(kube.written)
    await book.observe(route(1, metadata={"deletionTimestamp": "now"}))
    await reconciler.reconcile(KEY)
    await asyncio.wait_for(reconciler.released("ns", "r"), 1)
    assert KEY not in kube.ledgers
    assert len(kube.written) == writes  # released at once, with no status write to race it


# -- scheduling, drift and release ----------------------------------------------------------


async def test_a_burst_of_routes_costs_one_read_and_one_put(
    book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    config = OperatorConfig(allowed_gateways=("*",), debounce=0.01)
    worker = GatewayReconciler(config, book, gateways, kube)
    names = [f"r{i}" for i in range(20)]
    try:
        for i, name in enumerate(names):  # each marks the gateway dirty
            await book.observe(body(name, idle=f"{40 + i}s"))
        await kube.wait_until(lambda: all(ready(kube, name) for name in names))
    finally:
        await worker.close()
    assert (gateways.reads, gateways.puts, gateways.timeout()) == (1, 1, 89)
    assert len(kube.written) == len(names)  # Applied: a PUT done within seconds shows no Applying


def ready(kube: FakeKube, name: str) -> bool:
    written = [status for route, status in kube.written if route == name]
    return bool(written) and condition(written[-1]) == ("True", "Applied", 1)


async def test_the_third_correction_of_a_value_is_held_until_the_route_changes(
    reconciler: GatewayReconciler, book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    await book.observe(route(1))
    await reconciler.reconcile(KEY)
    for _ in range(2):
        gateways.set_timeout(40)  # someone else lowers it
        await reconciler.reconcile(KEY)
        assert gateways.timeout() == 68
    gateways.set_timeout(40)
    await reconciler.reconcile(KEY)
    assert (gateways.timeout(), gateways.puts) == (40, 3)
    assert condition(kube.statuses[-1], "GatewayConfigured") == ("False", "DriftConflict", 1)
    assert [e[1] for e in kube.events].count(Reason.DRIFT_CONFLICT) == 1
    await reconciler.reconcile(KEY)  # still held: no PUT, no second Event
    assert (gateways.puts, [e[1] for e in kube.events].count(Reason.DRIFT_CONFLICT)) == (3, 1)
    await book.observe(route(2, idle="46s"))  # the route changed: try again
    await reconciler.reconcile(KEY)
    assert gateways.timeout() == 69
    assert condition(kube.statuses[-1]) == ("True", "Applied", 2)


async def test_a_deleted_route_is_released_once_its_values_are_restored(
    reconciler: GatewayReconciler, book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    await book.observe(route(1))
    await reconciler.reconcile(KEY)
    await book.observe(route(1, metadata={"deletionTimestamp": "now"}))
    released = asyncio.create_task(reconciler.released("ns", "r"))
    await reconciler.reconcile(KEY)
    await asyncio.wait_for(released, 1)
    assert gateways.timeout() == 30
    assert KEY not in kube.ledgers
    change = book.forget("ns", "r")
    assert change is not None and change.forgotten and change.gateways == {KEY}


async def test_a_route_without_a_gateway_is_released_at_once_when_deleted(
    reconciler: GatewayReconciler, book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    await book.observe(route(1, idle="45"))  # never valid: nothing of it on any gateway
    await book.observe(route(1, idle="45", metadata={"deletionTimestamp": "now"}))
    await asyncio.wait_for(reconciler.released("ns", "r"), 1)
    assert (gateways.reads, gateways.puts) == (0, 0)


async def test_a_pass_that_changes_nothing_writes_no_status(
    reconciler: GatewayReconciler, book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    await book.observe(route(1))
    await reconciler.reconcile(KEY)
    written = len(kube.statuses)
    await reconciler.reconcile(KEY)
    await book.observe(route(1))  # our own status write coming back: same generation
    assert len(kube.statuses) == written
    assert (gateways.reads, gateways.puts) == (2, 1)


async def test_a_dry_run_plans_reports_and_never_puts(
    book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    config = OperatorConfig(allowed_gateways=("*",), debounce=3600, dry_run=True)
    worker = GatewayReconciler(config, book, gateways, kube)
    await book.observe(route(1))
    await worker.reconcile(KEY)
    await worker.close()
    assert gateways.puts == 0
    status = kube.statuses[-1]
    assert condition(status, "GatewayConfigured") == ("False", "DryRun", 1)
    assert status["gateway"]["backendSettings"] == [
        {"name": "a", "requestTimeout": 30, "connectionDraining": 0}
    ]


async def test_after_a_restart_no_pass_plans_before_every_listed_route_is_observed(
    reconciler: GatewayReconciler, book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    await book.observe(route(1, idle="5s"))  # needs 10 s
    await book.observe(body("other", 1, "45s"))  # needs 68 s: raised from 30, in the ledger
    await reconciler.reconcile(KEY)
    assert gateways.timeout() == 68
    puts = gateways.puts

    # A restart: both routes were listed at startup, and kopf has handed over only the one
    # needing less. A pass now would restore 30 s under the other's live streams.
    restarted = RouteBook(kube, ("*",))
    restarted.unseen = {"ns/r", "ns/other"}

    async def released(namespace: str, name: str) -> None:
        return None

    memo = kopf.Memo(book=restarted, finalizers=Finalizers(kube, released))
    config = OperatorConfig(allowed_gateways=("*",), debounce=3600)
    worker = GatewayReconciler(config, restarted, gateways, kube)
    await route_event(type=None, body=route(1, idle="5s"), memo=memo)
    assert await worker.reconcile(KEY) == 1.0  # come back once every listed route is seen
    assert (gateways.timeout(), gateways.puts) == (68, puts)
    await route_event(type=None, body=body("other", 1, "45s"), memo=memo)
    assert await worker.reconcile(KEY) is None
    assert (gateways.timeout(), gateways.puts) == (68, puts)
    await memo["finalizers"].close()
    await worker.close()


async def test_a_long_put_says_applying_and_a_short_one_does_not(
    reconciler: GatewayReconciler,
    book: RouteBook,
    gateways: FakeGateways,
    kube: FakeKube,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await book.observe(route(1))
    await reconciler.reconcile(KEY)
    assert [condition(status)[1] for _, status in kube.written] == ["Applied"]
    kube.written.clear()
    monkeypatch.setattr("appgw_sse.reconciler.APPLYING_NOTICE_SECONDS", 0.01)
    gateways.hold = asyncio.Event()
    await book.observe(route(2, idle="100s"))
    running = asyncio.create_task(reconciler.reconcile(KEY))
    await kube.wait_until(lambda: kube.written)
    assert condition(kube.written[0][1])[:2] == ("False", "Applying")
    gateways.hold.set()
    await running
    assert condition(kube.written[-1][1]) == ("True", "Applied", 2)


# -- what the Events credit a route with ----------------------------------------------------


async def test_a_route_that_leaves_buffering_unmanaged_is_not_credited_with_turning_it_off(
    reconciler: GatewayReconciler,
    book: RouteBook,
    gateways: FakeGateways,
    kube: FakeKube,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await book.observe(route(1, responseBuffering="Unmanaged"))  # needs 68 s
    await book.observe(body("other", 1, "20s"))  # needs 25 s and buffering off
    with caplog.at_level(logging.INFO, logger="appgw_sse.reconciler"):
        await reconciler.reconcile(KEY)
    applied = {route: message for route, reason, message in kube.events if reason == "Applied"}
    buffering = "globalConfiguration.enableResponseBuffering True -> False"
    timeout = "backendHttpSettingsCollection[a].requestTimeout 30 -> 68"
    assert applied == {
        "r": f"gateway agw: {timeout}",
        "other": f"gateway agw: {buffering}; {timeout}",
    }
    assert (
        f"gateway agw: applying {buffering} for routes ns/other; {timeout} for routes ns/other, ns/r"
    ) in caplog.messages


# -- a finalizer is released only after its restore is on the gateway -----------------------


async def test_a_route_deleted_during_a_pass_is_released_only_by_a_pass_that_restores_it(
    reconciler: GatewayReconciler,
    book: RouteBook,
    gateways: FakeGateways,
    kube: FakeKube,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await book.observe(route(1, idle="100s"))
    await reconciler.reconcile(KEY)
    gateways.hold = asyncio.Event()
    await book.observe(route(2, idle="110s"))  # needs 165 s
    running = asyncio.create_task(reconciler.reconcile(KEY))
    await gateways.in_flight.wait()
    await book.observe(route(2, idle="110s", metadata={"deletionTimestamp": "now"}))
    released = asyncio.create_task(reconciler.released("ns", "r"))
    gateways.hold.set()
    await running
    assert gateways.timeout() == 165  # this pass applied the route's value: no release
    gateways.hold = None
    gateways.failure = TransientGatewayError(Reason.AZURE_ERROR, "InternalServerError", "boom", 15)
    with caplog.at_level(logging.WARNING):
        assert await reconciler.reconcile(KEY) == 15
    assert not released.done()
    assert "routes ns/r (deleted, waiting for the restore)" in caplog.text
    waiting = next(c for c in kube.last_status("r")["conditions"] if c["type"] == "Ready")
    assert waiting["status"] == "False" and "finalizer is released once" in waiting["message"]
    gateways.failure = None
    await reconciler.reconcile(KEY)
    await asyncio.wait_for(released, 1)
    assert gateways.timeout() == 30
    assert KEY not in kube.ledgers


async def test_a_gateway_with_a_ledger_and_no_route_is_restored_by_its_own_pass(
    reconciler: GatewayReconciler, book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    await book.observe(route(1))
    await reconciler.reconcile(KEY)
    assert gateways.timeout() == 68
    restarted = RouteBook(kube, ("*",))  # a restart; the route's finalizer was removed by hand
    config = OperatorConfig(allowed_gateways=("*",), debounce=3600)
    worker = GatewayReconciler(config, restarted, gateways, kube)
    try:
        worker.restore_orphans([GID, gateway_id("other")], routed={gateway_id("other").lower()})
        await worker.reconcile(KEY)  # the pass restore_orphans marked it for
        assert gateways.timeout() == 30
        assert KEY not in kube.ledgers
    finally:
        await worker.close()


# -- claims on the gateway ------------------------------------------------------------------


async def test_an_existing_ledger_is_adopted_in_one_put_that_says_so(
    reconciler: GatewayReconciler, book: RouteBook, gateways: FakeGateways, kube: FakeKube
) -> None:
    await book.observe(route(1))
    await reconciler.reconcile(KEY)
    assert gateways.puts == 1 and gateways.timeout() == 68
    assert gateways.document is not None
    gateways.document["tags"] = {}  # e.g. a Terraform apply removed them; the ledger stays
    kube.events.clear()
    await reconciler.reconcile(KEY)
    assert gateways.puts == 2 and gateways.timeout() == 68
    originals = gateways.document["tags"]["appgw-sse.originals"]
    assert originals == "instance=11111111;buffering=on;timeout:a=30"
    assert kube.events == [
        (
            "r",
            "Applied",
            "gateway agw: claim of default written (response buffering disabled; a "
            "requestTimeout 68s)",
        )
    ]
    await reconciler.reconcile(KEY)
    assert gateways.puts == 2  # written once


async def test_a_listed_route_gone_before_kopf_listed_it_holds_no_pass_for_ever(
    kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A route listed at startup and deleted (its finalizer removed by hand) before kopf's own
    listing brings no event: a re-list drops it, and the guard lifts once the others are seen."""
    from appgw_sse.handlers import routes

    class Listing:
        lists = 0
        again = asyncio.Event()  # listed a second time: the first re-list has been taken in

        async def listed_routes(self, namespaces: Any) -> RouteListing:
            self.lists += 1
            if self.lists > 1:
                self.again.set()
            return RouteListing(handled={"ns/r"}, gateways=set())  # "ns/gone" is gone

    monkeypatch.setattr(routes, "UNSEEN_RECHECK_SECONDS", 0.01)
    book = RouteBook(kube, ("*",))
    book.unseen = {"ns/r", "ns/gone"}
    listing = Listing()
    task = asyncio.create_task(
        routes._drop_vanished(listing, book, OperatorConfig(allowed_gateways=("*",)))
    )  # type: ignore[arg-type]
    await asyncio.wait_for(listing.again.wait(), 10)
    assert book.unseen == {"ns/r"} and not book.listed()
    book.unseen.discard("ns/r")  # kopf hands it over
    await asyncio.wait_for(task, 5)  # nothing left to look for: the re-lists stop
    assert book.listed()
