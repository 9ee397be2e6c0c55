"""Backend pods end to end: the operator process annotates pods selected by routes."""

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.cluster import ApiRequest, require_real
from tests.support.e2e import Rig, route_manifest, wait_for

CONTRACT = '{"Cache-Control":"no-cache","Connection":"keep-alive","Content-Type":"text/event-stream","Transfer-Encoding":"chunked"}'
FOREIGN = {"team.example.com/owner": "shop-team"}


def pod(
    name: str, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": labels,
            "annotations": dict(annotations or {}),
        },
        "spec": {"containers": [{"name": "app", "image": "shop/web"}]},
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def annotations(rig: Rig, name: str) -> dict[str, str]:
    obj = rig.get(f"/api/v1/namespaces/shop/pods/{name}") or {}
    return dict(obj["metadata"].get("annotations") or {})


def pod_patches(rig: Rig) -> list[str]:
    """The operator's PATCHes to pods (the API server's own record of them)."""
    return [
        f"{r.namespace}/{r.name}"
        for r in rig.cluster.operator_requests()
        if r.verb == "patch" and r.resource == "pods" and not r.subresource
    ]


def sse(name: str) -> dict[str, str]:
    return {
        "sse.appgw.dev/routes": name,
        "sse.appgw.dev/response-headers": CONTRACT,
        "sse.appgw.dev/idle-interval": "45s",
    }


def test_pods_follow_routes_and_foreign_annotations_survive(rig: Rig) -> None:
    rig.create(
        pod("web-1", {"app": "web"}, FOREIGN),
        pod("web-2", {"app": "web", "track": "canary"}),
        pod("db-1", {"app": "db"}),
    )
    rig.operator()
    rig.apply(route_manifest("events", backend={"selector": {"matchLabels": {"app": "web"}}}))
    rig.wait_condition("shop", "events", "True", "Applied")
    status = wait_for(
        "both pods annotated",
        lambda: (
            (rig.route("shop", "events") or {}).get("status", {}).get("backends")
            == {"selected": 2, "annotated": 2}
            and rig.route("shop", "events")
        ),
    )
    assert rig.condition("shop", "events", "BackendsAnnotated")["reason"] == "Annotated"
    assert status["status"]["conditions"]
    assert annotations(rig, "web-1") == FOREIGN | sse("events")
    assert annotations(rig, "web-2") == sse("events")
    assert annotations(rig, "db-1") == {}
    assert sorted(pod_patches(rig)) == [
        "shop/web-1",
        "shop/web-2",
    ]  # one each

    rig.create(pod("web-3", {"app": "web"}))
    wait_for("new pod annotated", lambda: annotations(rig, "web-3") == sse("events"))

    rig.kubectl("label", "pod", "-n", "shop", "web-2", "app=retired", "--overwrite")
    wait_for("relabelled pod cleaned", lambda: annotations(rig, "web-2") == {})
    # A read shows a patch before the API server has logged it (it logs once it has answered):
    # wait for the log to hold it, then count.
    patches = wait_for(
        "the cleaning patch logged", lambda: (found := pod_patches(rig))[3:] and found
    )
    # web-3 once, web-2 once more: nothing else was touched.
    assert sorted(patches) == ["shop/web-1", "shop/web-2", "shop/web-2", "shop/web-3"]

    rig.kubectl("delete", "sser", "-n", "shop", "events", "--wait=false")
    wait_for("route gone", lambda: rig.route("shop", "events") is None)
    assert annotations(rig, "web-1") == FOREIGN
    assert annotations(rig, "web-3") == {}


def test_two_routes_one_by_service_share_a_pod_and_the_loser_of_a_header_is_told(rig: Rig) -> None:
    rig.create(
        pod("web-1", {"app": "web"}, FOREIGN),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        },
    )
    rig.operator()
    rig.apply(
        route_manifest(
            "alerts",
            backend={
                "selector": {
                    "matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]
                }
            },
        ),
        route_manifest(
            "chat",
            settings=("chat-http",),
            idle="20s",
            backend={"serviceName": "web"},
            headers={"Content-Type": "text/event-stream; charset=utf-8"},
        ),
    )
    wait_for(
        "both routes on the pod",
        lambda: annotations(rig, "web-1").get("sse.appgw.dev/routes") == "alerts,chat",
    )
    carried = annotations(rig, "web-1")
    assert carried["sse.appgw.dev/idle-interval"] == "20s"
    assert (
        json.loads(carried["sse.appgw.dev/response-headers"])["Content-Type"] == "text/event-stream"
    )
    lost = rig.wait_condition("shop", "chat", "False", "HeaderConflict", type_="BackendsAnnotated")
    assert "Content-Type" in lost["message"] and "alerts" in lost["message"]
    # Each route's status is written on its own: wait for alerts' rather than race it.
    rig.wait_condition("shop", "alerts", "True", type_="BackendsAnnotated")

    rig.kubectl("delete", "sser", "-n", "shop", "alerts", "--wait=false")
    wait_for(
        "only chat left", lambda: annotations(rig, "web-1").get("sse.appgw.dev/routes") == "chat"
    )
    assert annotations(rig, "web-1")["sse.appgw.dev/response-headers"] == (
        '{"Content-Type":"text/event-stream; charset=utf-8"}'
    )
    assert FOREIGN.items() <= annotations(rig, "web-1").items()


def test_no_pods_selected_is_visible_but_not_an_error(rig: Rig) -> None:
    rig.operator()
    rig.apply(route_manifest("lonely", backend={"selector": {"matchLabels": {"app": "nobody"}}}))
    condition = rig.wait_condition(
        "shop", "lonely", "True", "NoPodsSelected", type_="BackendsAnnotated"
    )
    assert condition["message"]
    rig.wait_condition("shop", "lonely", "True", "Applied")
    assert rig.route("shop", "lonely")["status"]["backends"] == {"selected": 0, "annotated": 0}


class _Conforming(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        for name, value in (
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
        ):
            self.send_header(name, value)
        self.end_headers()
        event = b": heartbeat\n\n"
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event))

    def log_message(self, *args: Any) -> None:
        return None


class _Buffered(_Conforming):
    def do_GET(self) -> None:
        body = b"data: all at once\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def backends() -> Iterator[dict[str, int]]:
    servers = [
        http.server.ThreadingHTTPServer(("127.0.0.1", 0), h) for h in (_Conforming, _Buffered)
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are accepted by the kernel and never answered
    try:
        yield {
            "good": servers[0].server_address[1],
            "buffered": servers[1].server_address[1],
            "silent": silent.getsockname()[1],
        }
    finally:
        for server in servers:
            server.shutdown()
        silent.close()


def test_probe_reports_conformance_per_pod(rig: Rig, backends: dict[str, int]) -> None:
    for kind, port in backends.items():
        serving = pod(f"web-{kind}", {"app": "web"})
        serving["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": port}]
        rig.create(serving)
    rig.operator("--probe-interval", "1s")
    rig.apply(
        route_manifest(
            "events",
            backend={
                "selector": {"matchLabels": {"app": "web"}},
                "port": "http",
                "path": "/events",
            },
        )
    )
    wait_for(
        "every pod probed",
        lambda: all("sse.appgw.dev/conformance" in annotations(rig, f"web-{k}") for k in backends),
        timeout=30,
    )
    assert annotations(rig, "web-good")["sse.appgw.dev/conformance"] == "ok"
    assert "Content-Length set" in annotations(rig, "web-buffered")["sse.appgw.dev/conformance"]
    assert annotations(rig, "web-silent")["sse.appgw.dev/conformance"] == "unreachable"
    condition = rig.wait_condition(
        "shop", "events", "False", "NonConformant", type_="BackendsConformant"
    )
    assert "web-buffered" in condition["message"] and "web-silent" in condition["message"]
    assert rig.route("shop", "events")["status"]["backends"] == {
        "selected": 3,
        "annotated": 3,
        "conformant": 1,
    }
    rig.wait_condition("shop", "events", "True", "Applied")  # advisory: Ready is not held back
    assert {e["message"] for e in rig.events("shop", "NonConformant")} >= {
        "pod web-silent: unreachable"
    }


def test_a_restarted_operator_writes_nothing_it_finds_stored_and_warns_no_one_again(
    rig: Rig,
) -> None:
    """The first pass after a restart starts from what the API holds: the routes' stored status,
    the pods' annotations, the Events still alive. It writes none of them again."""
    rig.create(*(pod(f"web-{i}", {"app": "web"}) for i in range(3)))
    operator = rig.operator()
    web = {"selector": {"matchLabels": {"app": "web"}}}
    rig.apply(route_manifest("events", backend=web), route_manifest("feed", idle="30s"))
    for name in ("events", "feed"):
        rig.wait_condition("shop", name, "True", "Applied")
    wait_for(
        "the pods annotated",
        lambda: (
            (rig.route("shop", "events") or {}).get("status", {}).get("backends")
            == {"selected": 3, "annotated": 3}
        ),
    )
    # Both get a DrainingOff warning: their setting has no connection draining.
    wait_for("two DrainingOff events", lambda: len(rig.events("shop", "DrainingOff")) == 2)
    operator.stop()
    before, puts = len(rig.cluster.operator_requests()), rig.admin_puts()

    rig.operator()
    # A route created after the restart: once it is annotated and Ready, the restarted
    # operator has made its first passes over this gateway and this namespace.
    rig.apply(route_manifest("late", backend=web))
    rig.wait_condition("shop", "late", "True", "Applied")
    wait_for(
        "the late route's backends counted",
        lambda: (
            (rig.route("shop", "late") or {}).get("status", {}).get("backends")
            == {"selected": 3, "annotated": 3}
        ),
    )
    writes = [
        f"{r.verb} {r.resource}/{r.subresource} {r.name}"
        for r in rig.cluster.operator_requests()[before:]
        if r.verb in ("create", "update", "patch", "delete")
        and r.resource not in ("leases", "events", "pods")  # Events and pods: below
        and r.name != "late"  # the new route's finalizer and status
    ]
    assert writes == [], writes
    assert rig.admin_puts() == puts
    assert sorted(e["involvedObject"]["name"] for e in rig.events("shop", "DrainingOff")) == [
        "events",
        "feed",
        "late",
    ]
    assert {e["involvedObject"]["name"] for e in rig.events("shop")} - {"late"} == {
        "events",
        "feed",
    }
    assert len(rig.events("shop")) == 5  # Applied and DrainingOff on each first route; late's
    assert len(pod_patches(rig)) == 6  # 3 pods, then `late` joins their annotations


def test_both_watches_relist_after_compaction_and_an_api_server_restart(rig: Rig) -> None:
    """The operator's pod watch (adapters/watch.py) and kopf's route watch resume from a
    resourceVersion the restarted server no longer has (etcd compacted past it, a new watch
    cache): each must list again and go on, not stop or miss what changed."""
    require_real("watches resuming after etcd compaction and an API server restart")
    rig.create(pod("web-1", {"app": "web"}))
    rig.operator()
    rig.apply(route_manifest("events", backend={"selector": {"matchLabels": {"app": "web"}}}))
    wait_for("web-1 annotated", lambda: annotations(rig, "web-1").get("sse.appgw.dev/routes"))
    lists_before = len(operator_lists(rig))

    rig.cluster.compact_etcd()
    rig.restart_apiserver()
    rig.create(pod("web-2", {"app": "web"}))
    rig.apply(route_manifest("late", settings=("chat-http",), idle="20s"))

    wait_for("web-2 annotated", lambda: annotations(rig, "web-2").get("sse.appgw.dev/routes"))
    rig.wait_condition("shop", "late", "True", "Applied", timeout=60)
    relisted = {r.resource for r in operator_lists(rig)[lists_before:]}
    assert {"pods", "sseroutes"} <= relisted, relisted


def operator_lists(rig: Rig) -> list[ApiRequest]:
    return [r for r in rig.cluster.operator_requests() if r.verb == "list" and r.code == 200]
