"""Pure backend logic: selector semantics, merged contracts, minimal patches, conformance."""

import json

import pytest

from appgw_sse.core import backends as bk
from appgw_sse.models.route import LabelSelector


def selector(**raw: object) -> LabelSelector:
    return LabelSelector.model_validate(raw)


@pytest.mark.parametrize(
    ("raw", "labels", "expected"),
    [
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "api"}, False),
        (
            {"matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}]},
            {"t": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]},
            {"t": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "t", "operator": "Exists"}]}, {"t": ""}, True),
        ({"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]}, {"t": ""}, False),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "t", "operator": "Exists"}],
            },
            {"app": "web"},
            False,
        ),
    ],
)
def test_label_selector_semantics(raw: dict, labels: dict, expected: bool) -> None:
    assert bk.selects(selector(**raw), labels) is expected


def test_a_service_without_selector_selects_nothing() -> None:
    assert not bk.service_selects(None, {"app": "web"})
    assert not bk.service_selects({}, {"app": "web"})
    assert bk.service_selects({"app": "web"}, {"app": "web", "pod-template-hash": "1"})


HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def test_contract_merges_routes_and_reports_the_loser() -> None:
    contract = bk.pod_contract(
        [
            bk.BackendRoute("ns/b", "b", {"content-type": "text/plain", "X-Extra": "1"}, 20),
            bk.BackendRoute("ns/a", "a", HEADERS, 45),
        ]
    )
    assert contract.annotations[bk.ROUTES_ANNOTATION] == "a,b"
    assert contract.annotations[bk.IDLE_ANNOTATION] == "20s"
    assert json.loads(contract.annotations[bk.HEADERS_ANNOTATION]) == HEADERS | {"X-Extra": "1"}
    assert list(contract.conflicts) == ["ns/b"] and "route a" in contract.conflicts["ns/b"]


def test_patch_touches_only_our_keys_and_only_when_needed() -> None:
    desired = bk.pod_contract([bk.BackendRoute("ns/a", "a", HEADERS, 45)]).annotations
    foreign = {"team/owner": "x", "sse.appgw.dev/conformance": "ok"}
    assert bk.annotation_patch(foreign, desired) == desired
    assert bk.annotation_patch(foreign | desired, desired) is None
    removal = bk.annotation_patch(foreign | desired, None)
    assert removal == dict.fromkeys([*desired, "sse.appgw.dev/conformance"])
    assert bk.annotation_patch({"team/owner": "x"}, None) is None


@pytest.mark.parametrize(
    ("status", "headers", "verdict"),
    [
        (
            200,
            {
                "content-type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache, no-store",
                "Transfer-Encoding": "chunked",
            },
            "ok",
        ),
        (200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}, "ok"),
        (
            200,
            {"Content-Type": "application/json", "Cache-Control": "no-cache"},
            "Content-Type is application/json",
        ),
        (200, {"Content-Type": "text/event-stream"}, "missing Cache-Control"),
        (
            200,
            {
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Content-Length": "10",
            },
            "Content-Length set (buffered, not streamed)",
        ),
        (
            200,
            {
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Connection": "close",
            },
            "Connection is close",
        ),
        (404, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}, "status 404"),
    ],
)
def test_conformance(status: int, headers: dict, verdict: str) -> None:
    expected = HEADERS | {"Connection": "keep-alive", "Transfer-Encoding": "chunked"}
    assert bk.conformance(status, headers, expected) == verdict
