"""Our finalizer on routes, held by the operator: added to a new route at once, removed once its
gateway is settled without it, and a deletion waiting for a stuck gateway holds back no other
route."""

import asyncio
from typing import Any

import kopf
import pytest

from appgw_sse import finalizers as fin
from appgw_sse.config import OperatorConfig
from appgw_sse.core.contract import FINALIZER
from appgw_sse.finalizers import Finalizers
from appgw_sse.reconciler import GatewayReconciler
from appgw_sse.routebook import RouteBook
from tests.support.fakes import FakeGateways, FakeKube, deleting
from tests.support.fakes import route_body as body
from tests.support.gateways import gateway_document

OTHER = "other.example/keep"  # another controller's finalizer: never dropped


def version(route: dict[str, Any], resource_version: str, *finalizers: str) -> dict[str, Any]:
    route["metadata"] |= {"resourceVersion": resource_version, "finalizers": list(finalizers)}
    return route


async def never(namespace: str, name: str) -> None:
    await asyncio.Event().wait()


async def at_once(namespace: str, name: str) -> None:
    return None


def writes_for(kube: FakeKube, name: str) -> list[tuple[list[str], str]]:
    return [(f, v) for n, f, v in kube.finalizer_writes if n == name]


async def test_a_new_route_gets_our_finalizer_once_on_its_latest_version() -> None:
    kube = FakeKube()
    finalizers = Finalizers(kube, never, writers=1)
    finalizers.observe(version(body("a"), "1", OTHER))
    finalizers.observe(version(body("a"), "2", OTHER))  # before the write: one write, on "2"
    finalizers.observe(version(body("b"), "3"))
    await kube.wait_until(lambda: writes_for(kube, "b"))
    assert writes_for(kube, "a") == [([OTHER, FINALIZER], "2")]
    assert writes_for(kube, "b") == [([FINALIZER], "3")]
    finalizers.observe(version(body("a"), "4", OTHER, FINALIZER))  # has it: nothing to write
    finalizers.observe(version(body("c"), "5"))
    await kube.wait_until(lambda: writes_for(kube, "c"))
    assert len(writes_for(kube, "a")) == 1
    await finalizers.close()


async def test_kopfs_diff_base_of_earlier_versions_goes_once_with_or_without_a_finalizer_write() -> (
    None
):
    kube = FakeKube()
    finalizers = Finalizers(kube, never, writers=1)
    legacy = {fin.LEGACY_ANNOTATIONS[0]: '{"spec": {"idleInterval": "10s"}}', "team": "shop"}
    upgraded = version(body("a"), "1", FINALIZER)  # taken in by an earlier version
    upgraded["metadata"]["annotations"] = dict(legacy)
    fresh = version(body("b"), "2")
    fresh["metadata"]["annotations"] = dict(legacy)
    finalizers.observe(upgraded)
    finalizers.observe(fresh)
    await kube.wait_until(lambda: len(kube.finalizer_writes) == 2)
    assert writes_for(kube, "a") == [([FINALIZER], "1")]  # the finalizers as they were
    assert writes_for(kube, "b") == [([FINALIZER], "2")]
    assert kube.annotations_dropped == [
        ("a", fin.LEGACY_ANNOTATIONS),
        ("b", fin.LEGACY_ANNOTATIONS),
    ]
    finalizers.observe(version(body("a"), "3", FINALIZER))  # gone: nothing more to write
    finalizers.observe(version(body("c"), "4"))
    await kube.wait_until(lambda: writes_for(kube, "c"))
    assert len(writes_for(kube, "a")) == 1
    await finalizers.close()


async def test_while_deletions_wait_for_a_stuck_gateway_new_routes_get_their_finalizer() -> None:
    kube, gateways = FakeKube(), FakeGateways(gateway_document({"a": 30}))
    book = RouteBook(kube, ("*",))
    reconciler = GatewayReconciler(
        OperatorConfig(allowed_gateways=("*",), debounce=0.05), book, gateways, kube
    )
    finalizers = Finalizers(kube, reconciler.released, writers=1)  # a single writer
    routes = [version(body(f"old{i}", idle="45s"), "1", FINALIZER) for i in range(3)]
    for route in routes:
        await book.observe(route)
    await reconciler.reconcile(gateways_key(book))
    assert (gateways.timeout(), gateways.puts) == (68, 1)

    gateways.hold = asyncio.Event()  # the gateway's next update does not end
    for route in routes:
        gone = version(deleting(route), "2", FINALIZER)
        finalizers.observe(gone)
        await book.observe(gone)
    await asyncio.wait_for(gateways.in_flight.wait(), 10)
    for i in range(5):  # new routes meanwhile, more than there are writers
        finalizers.observe(version(body(f"new{i}"), "3"))
    await kube.wait_until(lambda: all(writes_for(kube, f"new{i}") for i in range(5)))
    assert not any(writes_for(kube, route["metadata"]["name"]) for route in routes)

    gateways.hold.set()  # the update ends: one PUT restored the gateway for all three
    await kube.wait_until(
        lambda: all(writes_for(kube, r["metadata"]["name"]) == [([], "2")] for r in routes)
    )
    assert (gateways.timeout(), gateways.puts) == (30, 2)
    await finalizers.close()
    await reconciler.close()


def gateways_key(book: RouteBook) -> str:
    (key,) = book.gateway_keys()
    return key


async def test_a_removal_that_met_a_newer_version_is_written_again_on_it() -> None:
    kube = FakeKube()
    kube.stale = {"5"}
    finalizers = Finalizers(kube, at_once)
    finalizers.observe(version(deleting(body("a")), "5", OTHER, FINALIZER))
    await kube.wait_until(lambda: writes_for(kube, "a"))
    finalizers.observe(version(deleting(body("a")), "6", OTHER, FINALIZER))
    await kube.wait_until(lambda: len(writes_for(kube, "a")) == 2)
    assert writes_for(kube, "a") == [([OTHER], "5"), ([OTHER], "6")]
    await finalizers.close()


async def test_a_failed_write_is_retried_and_a_forgotten_route_is_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fin, "RETRY_SECONDS", 0.01)

    class Failing(FakeKube):
        failures = 1

        async def patch_route_finalizers(self, *args: Any) -> bool:
            if self.failures:
                self.failures -= 1
                raise OSError("connection reset")
            return await super().patch_route_finalizers(*args)

    kube = Failing()
    finalizers = Finalizers(kube, never)
    finalizers.observe(version(deleting(body("gone")), "1", FINALIZER))
    finalizers.forget("ns", "gone")  # its finalizer was removed by hand: nothing left to do
    finalizers.observe(version(body("a"), "2"))
    await kube.wait_until(lambda: writes_for(kube, "a"))
    assert kube.finalizer_writes == [("a", [FINALIZER], "2")]
    await finalizers.close()


async def test_a_route_event_that_fails_is_logged_and_kopf_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from appgw_sse.handlers.routes import route_event

    class Refusing(RouteBook):
        async def observe(self, body: Any) -> None:
            raise RuntimeError("status write refused")

    kube = FakeKube()
    book = Refusing(kube, ("*",))
    book.unseen = {"ns/a"}  # listed at startup
    memo = kopf.Memo(book=book, finalizers=Finalizers(kube, never))
    await route_event(type="ADDED", body=version(body("a"), "1"), memo=memo)  # does not raise
    assert "route ns/a: taking in its ADDED event failed" in caplog.text
    assert book.listed()  # seen, even though taking it in failed: no pass is held for ever
    await kube.wait_until(lambda: writes_for(kube, "a"))
    await memo["finalizers"].close()


def test_kopf_watches_the_routes_through_one_raw_event_handler_and_holds_no_finalizer() -> None:
    """kopf, not a watch of our own, feeds the route book; with only a raw-event handler it
    stores no state on routes and adds no finalizer of its own (ours is held by `finalizers`)."""
    import appgw_sse.handlers.routes  # noqa: F401  (registers the handlers)
    from appgw_sse.core.contract import API_GROUP, API_VERSION, PLURAL

    registry = kopf.get_default_registry()
    watching = registry._watching.get_all_handlers()
    routes = [(h.id, h.selector) for h in watching if h.selector and h.selector.any_name == PLURAL]
    assert [(id, s.group, s.version) for id, s in routes if s] == [
        ("route_event", API_GROUP, API_VERSION)
    ]
    # No resume/create/update/delete handler nor daemon: nothing for which kopf would store
    # progress or a diff-base, or hold a finalizer.
    assert not registry._changing.get_all_handlers() and not registry._spawning.get_all_handlers()
