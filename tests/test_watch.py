"""adapters.watch: the operator's own paged list and watch of pods and services.

On the API server (real when one can be started) as the operator's own identity; the protocol's
rarer answers (410 Gone on a watch or a continue token, an ERROR event) from a scripted server."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
from aiohttp import web

from appgw_sse.adapters.watch import ApiServer, ListWatch, collection_paths
from tests.support import cluster as clusters
from tests.support.cluster import operator_user


class Seen:
    """What a ListWatch handed over: the events in order and the objects present now."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.present: set[str] = set()

    def __call__(self, kind: str, body: Mapping[str, Any]) -> None:
        name = body["metadata"]["name"]
        self.events.append((kind, name))
        if kind == "DELETED":
            self.present.discard(name)
        else:
            self.present.add(name)


async def until(what: str, check: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out after {seconds:g}s waiting for {what}"
        await asyncio.sleep(0.05)


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "web"}]},
    }


async def test_lists_in_pages_then_follows_the_watch_as_the_operator(tmp_path: Path) -> None:
    with clusters.running(tmp_path) as cluster:
        for i in range(7):
            cluster.call("POST", "/api/v1/namespaces/shop/pods", pod(f"p{i}"))
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=str(cluster.operator_kubeconfig), client_configuration=config
        )
        seen = Seen()
        watch = ListWatch(ApiServer.from_configuration(config), "/api/v1/pods", seen, page=3)
        task = asyncio.create_task(watch.run())
        try:
            await until("the first listing", watch.listed.is_set)
            assert seen.present == {f"p{i}" for i in range(7)}
            assert {kind for kind, _ in seen.events} == {"ADDED"}

            cluster.call("POST", "/api/v1/namespaces/shop/pods", pod("late"))
            cluster.call("DELETE", "/api/v1/namespaces/shop/pods/p0")
            await until("the new pod and the deletion", lambda: "late" in seen.present)
            await until("the deletion", lambda: "p0" not in seen.present)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if cluster.real:
            lists = [
                r
                for r in cluster.requests()
                if r.user == operator_user() and r.resource == "pods" and r.verb == "list"
            ]
            assert len(lists) == 3  # 7 pods in pages of 3
            assert all(r.code == 200 for r in lists)


class ScriptedApi:
    """Answers each list and watch from a script, in order, and records the requests."""

    def __init__(self, answers: list[web.StreamResponse | dict[str, Any]]) -> None:
        self.answers, self.requests = answers, []
        self.closed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.query))
        answer = self.answers.pop(0) if self.answers else {"hang": True}
        if answer.get("hang"):  # nothing more scripted: a watch that stays open until the end
            await self.closed.wait()
        if "status" in answer:
            return web.json_response(answer["body"], status=answer["status"])
        if "events" in answer:
            response = web.StreamResponse()
            await response.prepare(request)
            for event in answer["events"]:
                await response.write(json.dumps(event).encode() + b"\n")
            return response
        return web.json_response(answer)


def listing(names: list[str], version: str, more: str = "") -> dict[str, Any]:
    meta = {"resourceVersion": version, **({"continue": more} if more else {})}
    return {"items": [obj(name, version) for name in names], "metadata": meta}


def obj(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": name, "resourceVersion": version}}


@pytest.fixture
async def scripted(unused_tcp_port: int) -> AsyncIterator[Any]:
    runners, apis = [], []

    async def serve(api: ScriptedApi) -> ApiServer:
        apis.append(api)
        app = web.Application()
        app.router.add_get("/api/v1/pods", api.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
        runners.append(runner)
        return ApiServer(f"http://127.0.0.1:{unused_tcp_port}", False, lambda: None)

    yield serve
    for api in apis:
        api.closed.set()
    for runner in runners:
        await runner.cleanup()


async def test_an_expired_watch_lists_again_and_reports_what_vanished(scripted: Any) -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    api = ScriptedApi(
        [
            listing(["a", "b"], "10", more="page2"),
            listing(["c"], "10"),
            {"events": [{"type": "MODIFIED", "object": obj("a", "11")}, gone]},
            listing(["a", "d"], "20"),  # b and c went while the watch was gone
        ]
    )
    seen = Seen()
    watch = ListWatch(await scripted(api), "/api/v1/pods", seen, page=2)
    task = asyncio.create_task(watch.run())
    try:
        await until("the second listing", lambda: "d" in seen.present)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen.present == {"a", "d"}
    assert seen.events == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
        ("MODIFIED", "a"),
        ("MODIFIED", "a"),
        ("ADDED", "d"),
        ("DELETED", "b"),
        ("DELETED", "c"),
    ]
    assert api.requests[1] == {"limit": "2", "continue": "page2"}
    assert api.requests[2]["resourceVersion"] == "10" and api.requests[2]["watch"] == "true"
    assert "continue" not in api.requests[3] and "resourceVersion" not in api.requests[3]


async def test_a_watch_resumes_from_the_last_bookmark(scripted: Any) -> None:
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}
    api = ScriptedApi(
        [
            listing(["a"], "10"),
            {"events": [bookmark]},  # the server ends this watch after the bookmark
            {"events": [{"type": "DELETED", "object": obj("a", "16")}]},
        ]
    )
    seen = Seen()
    watch = ListWatch(await scripted(api), "/api/v1/pods", seen)
    task = asyncio.create_task(watch.run())
    try:
        await until("the deletion", lambda: ("DELETED", "a") in seen.events)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [r.get("resourceVersion") for r in api.requests[1:3]] == ["10", "15"]
    assert len([r for r in api.requests if "limit" in r]) == 1  # never listed again


async def test_a_failed_list_is_retried_and_nothing_counts_as_listed_before(
    scripted: Any,
) -> None:
    forbidden = {"status": 403, "body": {"kind": "Status", "code": 403, "reason": "Forbidden"}}
    api = ScriptedApi([forbidden, listing(["a"], "10")])
    seen = Seen()
    watch = ListWatch(await scripted(api), "/api/v1/pods", seen)
    task = asyncio.create_task(watch.run())
    try:
        await until("the retried listing", watch.listed.is_set, seconds=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen.events == [("ADDED", "a")]
    assert len(api.requests) >= 2


def test_one_collection_per_watched_namespace() -> None:
    assert collection_paths("pods", []) == ["/api/v1/pods"]
    assert collection_paths("services", ["shop", "partners"]) == [
        "/api/v1/namespaces/shop/services",
        "/api/v1/namespaces/partners/services",
    ]
