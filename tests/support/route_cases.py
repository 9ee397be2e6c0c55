"""The SseRoute corpus both validators are held to: the valid specs, and the invalid cases of
tests/data/invalid_routes.yaml that the CRD (schema and CEL) and the operator must both refuse,
naming the field. The contract tests run it without an API server, the current-Kubernetes tests
against one."""

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

SUBSCRIPTION = "00000000-0000-4000-8000-000000000001"
GROUP_PATH = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg"
GATEWAY_ID = f"{GROUP_PATH}/providers/Microsoft.Network/applicationGateways/agw"
BASE_SPEC: dict[str, Any] = {
    "gateway": {"id": GATEWAY_ID, "backendSettings": ["notifications-http"]},
    "idleInterval": "45s",
}

# Values too large to write in tests/data/invalid_routes.yaml, by placeholder.
_LARGE: dict[str, Any] = {
    "FIFTY_ONE_SETTINGS": [f"s{i}" for i in range(51)],
    "ID_OF_200_KB": GATEWAY_ID + "a" * 200 * 1024,
    "ID_WITH_NAME_OF_81": GATEWAY_ID.removesuffix("agw") + "a" * 81,
    "ID_WITH_GROUP_OF_91": GATEWAY_ID.replace("/rg/", "/" + "r" * 91 + "/"),
    "VALUE_OF_100_KB": "x" * 100 * 1024,
    "VALUE_OF_1_MB": "x" * 1024 * 1024,
    "NAME_OF_129": "X" * 129,
    "THIRTY_THREE_HEADERS": {f"X-H{i}": "v" for i in range(33)},
    "PATH_OF_2_KB": "/" + "p" * 2048,
    "KEY_WITH_PREFIX_OF_254": "p" * 254 + "/app",
    "URL_OF_3_KB": "https://shop.example.com/" + "e" * 3 * 1024,
}


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return _LARGE.get(value, value)
    if isinstance(value, dict):
        return {_expand(k): _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def manifest_of(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "sse.appgw.dev/v1alpha1",
        "kind": "SseRoute",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": spec,
    }


def invalid_cases() -> list[Any]:
    cases = yaml.safe_load((ROOT / "tests" / "data" / "invalid_routes.yaml").read_text())
    params = []
    for case in cases:
        patch = _expand(case["spec"])
        params.append(pytest.param(merge(BASE_SPEC, patch), case["field"], id=case["case"]))
    return params


VALID_SPECS = [
    pytest.param(BASE_SPEC, id="minimal"),
    pytest.param(merge(BASE_SPEC, {"idleInterval": "1s"}), id="idle 1s"),
    pytest.param(merge(BASE_SPEC, {"idleInterval": "23h59m59s"}), id="idle just under 24h"),
    pytest.param(
        merge(BASE_SPEC, {"idleInterval": "23h", "requestTimeout": "86400s"}), id="timeout max"
    ),
    pytest.param(merge(BASE_SPEC, {"requestTimeout": "1h30m"}), id="timeout hours"),
    pytest.param(merge(BASE_SPEC, {"drainTimeout": "1s"}), id="drain min"),
    pytest.param(merge(BASE_SPEC, {"drainTimeout": "1h"}), id="drain max"),
    pytest.param(merge(BASE_SPEC, {"drainTimeout": "2m30s"}), id="drain minutes"),
    pytest.param(merge(BASE_SPEC, {"gateway": {"id": GATEWAY_ID.lower()}}), id="lower-case id"),
    pytest.param(merge(BASE_SPEC, {"gateway": {"id": GATEWAY_ID.upper()}}), id="upper-case id"),
    pytest.param(
        merge(
            BASE_SPEC,
            {
                "gateway": {
                    "id": GATEWAY_ID.replace("/rg/", "/(rg).shop_1-x/").removesuffix("agw")
                    + "a" * 79
                    + "_"
                }
            },
        ),
        id="longest name, group with parentheses and dots",
    ),
    pytest.param(merge(BASE_SPEC, {"responseBuffering": "Unmanaged"}), id="unmanaged"),
    pytest.param(
        merge(BASE_SPEC, {"backend": {"serviceName": "web", "port": "http", "path": "/events"}}),
        id="service and named port",
    ),
    pytest.param(
        merge(
            BASE_SPEC,
            {"backend": {"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}},
        ),
        id="selector expression",
    ),
    pytest.param(
        merge(BASE_SPEC, {"headers": {"Content-Type": "text/event-stream"}}), id="headers"
    ),
    pytest.param(
        merge(
            BASE_SPEC,
            {
                "headers": {
                    "Content-Type": "text/event-stream; charset=utf-8",
                    "X-Tabbed": "a\tb",
                    "X-Empty": "",
                    "X-Longest": "v" * 1024,
                    "x" * 128: "v",
                }
            },
        ),
        id="header values with inner space and tab, empty, longest",
    ),
    pytest.param(
        merge(BASE_SPEC, {"headers": {f"X-H{i}": "v" for i in range(32)}}), id="32 headers"
    ),
    pytest.param(
        merge(
            BASE_SPEC,
            {"backend": {"serviceName": "notifications-v2", "path": "/events?topic=a%20b"}},
        ),
        id="path with a query",
    ),
    pytest.param(
        merge(
            BASE_SPEC,
            {
                "backend": {
                    "selector": {
                        "matchLabels": {"app.kubernetes.io/name": "web", "tier": ""},
                        "matchExpressions": [
                            {"key": "example.com/Track_1", "operator": "In", "values": ["a.b"]}
                        ],
                    }
                }
            },
        ),
        id="prefixed label keys, empty label value",
    ),
    pytest.param(
        merge(BASE_SPEC, {"gateway": {"backendSettings": [f"s{i}" for i in range(50)]}}),
        id="50 settings",
    ),
    pytest.param(
        merge(BASE_SPEC, {"streamCheck": {"url": "https://shop.example.com/events/orders"}}),
        id="stream check with defaults",
    ),
    pytest.param(
        merge(
            BASE_SPEC,
            {
                "streamCheck": {
                    "url": "http://10.0.0.4:8080/events?topic=a%20b",
                    "interval": "1m",
                    "listen": "10m",
                }
            },
        ),
        id="stream check at its bounds",
    ),
    pytest.param(
        merge(
            BASE_SPEC,
            {"streamCheck": {"url": "https://a.example", "interval": "24h", "listen": "1s"}},
        ),
        id="stream check at its other bounds",
    ),
]
