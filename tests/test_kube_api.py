"""The realistic Kubernetes API the e2e tests stand on: each KMock gap it closes, checked."""

import json
import os
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appgw_sse.models.crd import build_crd
from appgw_sse.sandbox.kube_api import KubeApi, ResourceDef

SSEROUTES = ResourceDef.from_crd(build_crd())

ROUTES = "/apis/sse.appgw.dev/v1alpha1/namespaces/shop/sseroutes"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[KubeApi]:
    with KubeApi([SSEROUTES], tmp_path) as api:
        yield api


def call(
    api: KubeApi, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    request = urllib.request.Request(
        api.url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def route(name: str = "r", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sse.appgw.dev/v1alpha1",
        "kind": "SseRoute",
        "metadata": {"name": name, **meta},
        "spec": {"idleInterval": "45s"},
    }


def test_metadata_is_filled_and_versions_bump(api: KubeApi) -> None:
    status, created = call(api, "POST", ROUTES, route())
    meta = created["metadata"]
    assert status == 200 and meta["namespace"] == "shop" and meta["uid"] and meta["generation"] == 1
    _, patched = call(
        api,
        "PATCH",
        f"{ROUTES}/r",
        {"spec": {"idleInterval": "50s"}},
        "application/merge-patch+json",
    )
    assert patched["metadata"]["generation"] == 2
    assert int(patched["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    _, labelled = call(
        api,
        "PATCH",
        f"{ROUTES}/r",
        {"metadata": {"labels": {"a": "b"}}},
        "application/merge-patch+json",
    )
    assert labelled["metadata"]["generation"] == 2


def test_conflicts_and_failed_tests(api: KubeApi) -> None:
    _, created = call(api, "POST", ROUTES, route())
    assert call(api, "POST", ROUTES, route())[0] == 409
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"x": 1}}
    assert call(api, "PATCH", f"{ROUTES}/r", stale, "application/merge-patch+json")[0] == 409
    failed = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"}]
    assert call(api, "PATCH", f"{ROUTES}/r", failed, "application/json-patch+json")[0] == 422
    ok = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": created["metadata"]["resourceVersion"],
        },
        {"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
    ]
    assert call(api, "PATCH", f"{ROUTES}/r", ok, "application/json-patch+json")[0] == 200


def test_status_is_a_separate_subresource(api: KubeApi) -> None:
    call(api, "POST", ROUTES, route())
    _, after = call(
        api,
        "PATCH",
        f"{ROUTES}/r/status",
        {"status": {"a": 1}, "spec": {"idleInterval": "9s"}},
        "application/merge-patch+json",
    )
    assert after["status"] == {"a": 1} and after["spec"]["idleInterval"] == "45s"
    _, after = call(
        api, "PATCH", f"{ROUTES}/r", {"status": {"a": 2}}, "application/merge-patch+json"
    )
    assert after["status"] == {"a": 1}


def test_finalizers_hold_deletion(api: KubeApi) -> None:
    call(api, "POST", ROUTES, route(finalizers=["f"]))
    _, deleting = call(api, "DELETE", f"{ROUTES}/r")
    assert deleting["metadata"]["deletionTimestamp"]
    assert call(api, "GET", f"{ROUTES}/r")[0] == 200
    call(
        api,
        "PATCH",
        f"{ROUTES}/r",
        {"metadata": {"finalizers": None}},
        "application/merge-patch+json",
    )
    assert call(api, "GET", f"{ROUTES}/r")[0] == 404


def test_lists_selectors_generate_name_and_put(api: KubeApi) -> None:
    call(api, "POST", ROUTES, route("a", labels={"app": "x", "tier": "web"}))
    call(api, "POST", ROUTES, route("b", labels={"app": "y"}))
    _, generated = call(api, "POST", ROUTES, route("", generateName="gen-"))
    assert generated["metadata"]["name"].startswith("gen-")
    _, listing = call(api, "GET", ROUTES + "?labelSelector=app%20in%20(x,z),tier")
    assert listing["kind"] == "SseRouteList" and listing["metadata"]["resourceVersion"]
    assert [i["metadata"]["name"] for i in listing["items"]] == ["a"]
    _, listing = call(api, "GET", ROUTES + "?fieldSelector=metadata.name%3Db")
    assert [i["metadata"]["name"] for i in listing["items"]] == ["b"]
    _, current = call(api, "GET", f"{ROUTES}/b")
    current["spec"]["idleInterval"] = "1m"
    assert call(api, "PUT", f"{ROUTES}/b", current)[1]["metadata"]["generation"] == 2
    assert call(api, "PUT", f"{ROUTES}/b", current)[0] == 409  # stale resourceVersion


def test_watch_replays_only_what_is_newer(api: KubeApi) -> None:
    _, first = call(api, "POST", ROUTES, route("a"))
    call(api, "POST", ROUTES, route("b"))
    events: list[dict[str, Any]] = []

    def watch() -> None:
        url = f"{api.url}{ROUTES}?watch=true&timeoutSeconds=2&resourceVersion={first['metadata']['resourceVersion']}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("application/json")
            events.extend(json.loads(line) for line in response if line.strip())

    thread = threading.Thread(target=watch)
    thread.start()
    thread.join(timeout=10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]


def test_core_discovery_and_namespaces_work_for_kubectl(api: KubeApi, tmp_path: Path) -> None:
    assert call(api, "GET", "/api/v1")[1]["groupVersion"] == "v1"
    # A private HOME: kubectl's discovery cache must not land in the working tree.
    env = dict(os.environ, KUBECONFIG=str(api.kubeconfig), HOME=str(tmp_path))
    result = subprocess.run(
        ["kubectl", "get", "namespaces"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0, result.stderr
