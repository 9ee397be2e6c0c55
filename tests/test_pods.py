"""The pod worker against fakes of its ports: annotations, header conflicts, status written
once per change, and the release of a deleted route."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from appgw_sse.core import backends as bk
from appgw_sse.pods import PodReconciler, ProbeSettings
from appgw_sse.routebook import RouteBook
from appgw_sse.workers import DebouncedWorkers
from tests.support.fakes import FakeKube, condition, deleting, route_body

WEB = {"selector": {"matchLabels": {"app": "web"}}}


def pod(name: str, labels: dict[str, str], **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 80}]}]},
        "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
    }


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def book(kube: FakeKube) -> RouteBook:
    return RouteBook(kube, ("*",))


@pytest.fixture
async def pods(book: RouteBook, kube: FakeKube) -> AsyncIterator[PodReconciler]:
    # The workers never fire on their own: each test runs the passes itself.
    worker = PodReconciler(book, kube, debounce=3600, probe=ProbeSettings(enabled=False))
    yield worker
    await worker.close()


async def test_the_first_route_by_name_wins_a_header_and_the_other_is_told(
    book: RouteBook, pods: PodReconciler, kube: FakeKube
) -> None:
    pods.observe_pod("ADDED", pod("web-1", {"app": "web"}, **{"team/owner": "shop"}))
    await book.observe(route_body("a", backend=WEB, headers={"X-Stream": "one"}))
    await book.observe(route_body("b", backend=WEB, headers={"x-stream": "two"}, idle="30s"))
    await pods.reconcile("ns")
    [(name, patch)] = kube.pod_patches
    assert (name, patch[bk.ROUTES_ANNOTATION], patch[bk.IDLE_ANNOTATION]) == ("web-1", "a,b", "30s")
    assert json.loads(patch[bk.HEADERS_ANNOTATION] or "") == {"X-Stream": "one"}
    assert "team/owner" not in patch  # never a key that is not ours
    assert condition(kube.last_status("a"), "BackendsAnnotated") == ("True", "Annotated", 1)
    loser = next(c for c in kube.last_status("b")["conditions"] if c["type"] == "BackendsAnnotated")
    assert (loser["status"], loser["reason"]) == ("False", "HeaderConflict")
    assert loser["message"] == "header x-stream conflicts with route a, whose value the pod carries"


async def web_1_served_by_a(book: RouteBook, pods: PodReconciler) -> None:
    """Pod web-1, selected by route a, after one pass."""
    pods.observe_pod("ADDED", pod("web-1", {"app": "web"}))
    await book.observe(route_body("a", backend=WEB))
    await pods.reconcile("ns")


async def test_status_and_annotations_are_written_once_per_change(
    book: RouteBook, pods: PodReconciler, kube: FakeKube
) -> None:
    await web_1_served_by_a(book, pods)
    assert (len(kube.pod_patches), len(kube.written)) == (1, 1)
    assert kube.last_status("a")["backends"] == {"selected": 1, "annotated": 1}
    await pods.reconcile("ns")  # nothing changed
    pods.observe_pod("ADDED", pod("web-2", {"app": "api"}))  # not selected
    await pods.reconcile("ns")
    assert (len(kube.pod_patches), len(kube.written)) == (1, 1)
    pods.observe_pod("ADDED", pod("web-3", {"app": "web"}))
    await pods.reconcile("ns")
    assert [name for name, _ in kube.pod_patches] == ["web-1", "web-3"]
    assert kube.last_status("a")["backends"] == {"selected": 2, "annotated": 2}
    assert len(kube.written) == 2


async def test_a_service_is_followed_and_its_absence_reported(
    book: RouteBook, pods: PodReconciler, kube: FakeKube
) -> None:
    pods.observe_pod("ADDED", pod("web-1", {"app": "web"}))
    await book.observe(route_body("a", backend={"serviceName": "web"}))
    await pods.reconcile("ns")
    assert condition(kube.last_status("a"), "BackendsAnnotated") == ("False", "ServiceNotFound", 1)
    assert condition(kube.last_status("a")) == ("False", "Pending", 1)  # the gateway is next
    service = {"metadata": {"namespace": "ns", "name": "web"}, "spec": {"selector": {}}}
    pods.observe_service("ADDED", service)  # selects nothing: endpoints are managed by hand
    await pods.reconcile("ns")
    assert condition(kube.last_status("a"), "BackendsAnnotated") == ("True", "NoPodsSelected", 1)
    service["spec"]["selector"] = {"app": "web"}
    pods.observe_service("MODIFIED", service)
    await pods.reconcile("ns")
    assert condition(kube.last_status("a"), "BackendsAnnotated") == ("True", "Annotated", 1)


async def test_a_deleted_route_is_released_once_no_pod_carries_it(
    book: RouteBook, pods: PodReconciler, kube: FakeKube
) -> None:
    await web_1_served_by_a(book, pods)
    await book.observe(deleting(route_body("a", backend=WEB)))
    released = asyncio.create_task(pods.released("ns", "a"))
    await pods.reconcile("ns")
    await asyncio.wait_for(released, 1)
    assert kube.pod_patches[-1] == (
        "web-1",
        {bk.ROUTES_ANNOTATION: None, bk.HEADERS_ANNOTATION: None, bk.IDLE_ANNOTATION: None},
    )


async def test_conformance_is_reported_from_the_probes_verdicts(
    book: RouteBook, kube: FakeKube
) -> None:
    # Probing on, but a stand-in holds the prober's place: the verdicts are set as it would.
    worker = PodReconciler(book, kube, debounce=3600, probe=ProbeSettings(interval=3600))
    worker._probers["ns"] = asyncio.create_task(asyncio.Event().wait())
    verdict = {bk.CONFORMANCE_ANNOTATION: "missing Cache-Control"}
    try:
        worker.observe_pod("ADDED", pod("web-1", {"app": "web"}, **verdict))
        worker.observe_pod("ADDED", pod("web-2", {"app": "web"}))
        await book.observe(route_body("a", backend=WEB | {"port": "http"}))
        await worker.reconcile("ns")
        status = kube.last_status("a")
    finally:
        await worker.close()
    assert condition(status, "BackendsConformant") == ("False", "NonConformant", 1)
    assert status["backends"] == {"selected": 2, "annotated": 2, "conformant": 0}


async def test_a_burst_of_marks_is_one_run() -> None:
    runs: list[str] = []
    done = asyncio.Event()

    async def work(key: str) -> None:
        runs.append(key)
        done.set()

    workers = DebouncedWorkers(work, 0.01, "test", error_delay=1)
    try:
        for _ in range(50):
            workers.mark("k")
        await done.wait()
        done.clear()
        workers.mark("k")  # after the run: one more
        await done.wait()
    finally:
        await workers.close()
    assert runs == ["k", "k"]


async def test_no_backends_are_counted_before_the_pods_are_listed_in_full(
    book: RouteBook, pods: PodReconciler, kube: FakeKube
) -> None:
    """A restart: the route is observed, the pod listing is still arriving. Counting now would
    write `backends.selected: 1` and then 2 again (and annotate from part of the pods)."""
    listing_done = False
    pods.listed = lambda: listing_done
    await book.observe(route_body("a", backend=WEB))
    pods.observe_pod("ADDED", pod("web-1", {"app": "web"}))
    assert await pods.reconcile("ns") == 1.0  # come back once the listing is in
    assert (kube.pod_patches, kube.written) == ([], [])
    pods.observe_pod("ADDED", pod("web-2", {"app": "web"}))
    listing_done = True
    assert await pods.reconcile("ns") is None
    assert kube.last_status("a")["backends"] == {"selected": 2, "annotated": 2}
    assert len(kube.written) == 1
