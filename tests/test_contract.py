"""The CRD and the pydantic models enforce the same contract, case by case."""

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from appgw_sse import EXAMPLES
from appgw_sse.core.contract import ARM_NAME_PATTERN, RESOURCE_GROUP_PATTERN
from appgw_sse.models import SpecError, parse_spec
from appgw_sse.models.crd import build_crd
from tests.support.crd_validation import CrdValidator

ROOT = Path(__file__).resolve().parent.parent
CRD_FILE = ROOT / "crds" / "sseroutes.sse.appgw.dev.yaml"
VALIDATOR = CrdValidator(build_crd())

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
}


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return _LARGE.get(value, value)
    if isinstance(value, dict):
        return {_expand(k): _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def _manifest(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "sse.appgw.dev/v1alpha1",
        "kind": "SseRoute",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": spec,
    }


def _invalid_cases() -> list[Any]:
    cases = yaml.safe_load((ROOT / "tests" / "data" / "invalid_routes.yaml").read_text())
    params = []
    for case in cases:
        patch = _expand(case["spec"])
        params.append(pytest.param(_merge(BASE_SPEC, patch), case["field"], id=case["case"]))
    return params


VALID_SPECS = [
    pytest.param(BASE_SPEC, id="minimal"),
    pytest.param(_merge(BASE_SPEC, {"idleInterval": "1s"}), id="idle 1s"),
    pytest.param(_merge(BASE_SPEC, {"idleInterval": "23h59m59s"}), id="idle just under 24h"),
    pytest.param(
        _merge(BASE_SPEC, {"idleInterval": "23h", "requestTimeout": "86400s"}), id="timeout max"
    ),
    pytest.param(_merge(BASE_SPEC, {"requestTimeout": "1h30m"}), id="timeout hours"),
    pytest.param(_merge(BASE_SPEC, {"drainTimeout": "1s"}), id="drain min"),
    pytest.param(_merge(BASE_SPEC, {"drainTimeout": "1h"}), id="drain max"),
    pytest.param(_merge(BASE_SPEC, {"drainTimeout": "2m30s"}), id="drain minutes"),
    pytest.param(_merge(BASE_SPEC, {"gateway": {"id": GATEWAY_ID.lower()}}), id="lower-case id"),
    pytest.param(_merge(BASE_SPEC, {"gateway": {"id": GATEWAY_ID.upper()}}), id="upper-case id"),
    pytest.param(
        _merge(
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
    pytest.param(_merge(BASE_SPEC, {"responseBuffering": "Unmanaged"}), id="unmanaged"),
    pytest.param(
        _merge(BASE_SPEC, {"backend": {"serviceName": "web", "port": "http", "path": "/events"}}),
        id="service and named port",
    ),
    pytest.param(
        _merge(
            BASE_SPEC,
            {"backend": {"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}},
        ),
        id="selector expression",
    ),
    pytest.param(
        _merge(BASE_SPEC, {"headers": {"Content-Type": "text/event-stream"}}), id="headers"
    ),
    pytest.param(
        _merge(
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
        _merge(BASE_SPEC, {"headers": {f"X-H{i}": "v" for i in range(32)}}), id="32 headers"
    ),
    pytest.param(
        _merge(
            BASE_SPEC,
            {"backend": {"serviceName": "notifications-v2", "path": "/events?topic=a%20b"}},
        ),
        id="path with a query",
    ),
    pytest.param(
        _merge(
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
        _merge(BASE_SPEC, {"gateway": {"backendSettings": [f"s{i}" for i in range(50)]}}),
        id="50 settings",
    ),
]


def test_crd_file_is_generated_from_the_contract() -> None:
    assert yaml.safe_load(CRD_FILE.read_text()) == build_crd(), (
        "crds/ is stale: run `appgw-sse crd > crds/sseroutes.sse.appgw.dev.yaml`"
    )


def test_every_schema_field_is_described() -> None:
    def undocumented(schema: dict[str, Any], path: str) -> list[str]:
        missing = [] if schema.get("description") or path.endswith("metadata") else [path]
        for name, sub in (schema.get("properties") or {}).items():
            missing += undocumented(sub, f"{path}.{name}")
        if isinstance(schema.get("items"), dict) and "properties" in schema["items"]:
            for name, sub in schema["items"]["properties"].items():
                missing += undocumented(sub, f"{path}[].{name}")
        return missing

    assert undocumented(VALIDATOR.schema, "") == []


def test_names_follow_the_contract() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == "sseroutes.sse.appgw.dev"
    assert (names["kind"], names["plural"], names["singular"]) == (
        "SseRoute",
        "sseroutes",
        "sseroute",
    )
    assert names["shortNames"] == ["sser"] and names["categories"] == ["appgw"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Gateway", "Idle", "Timeout", "Ready", "Reason", "Age", "Mode", "Message"]
    assert [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority")] == [
        "Mode",
        "Message",
    ]


def test_defaults_in_crd_match_the_models() -> None:
    spec = parse_spec(BASE_SPEC)
    defaulted = VALIDATOR.schema["properties"]["spec"]["properties"]
    assert defaulted["responseBuffering"]["default"] == spec.response_buffering
    assert defaulted["restoreOnDelete"]["default"] == spec.restore_on_delete
    assert defaulted["headers"]["default"] == spec.headers


def _names_field(error: str, field: str) -> bool:
    """Whether an API server error is about `field`: its path, or its parent's path with the
    field's name in the message (a required or an unknown field)."""
    path, _, message = error.partition(": ")
    path = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", path)  # jsonschema's list indexes as [N]
    parent, _, leaf = field.rpartition(".")
    return path == field or (path == parent and f"'{leaf}'" in message)


@pytest.mark.parametrize(("spec", "field"), _invalid_cases())
def test_invalid_spec_is_rejected_by_both(spec: dict[str, Any], field: str) -> None:
    errors = VALIDATOR.errors(_manifest(spec))
    assert any(_names_field(e, field) for e in errors), errors or "the API server would accept it"
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert any(p.startswith(f"{field}:") for p in caught.value.problems), caught.value.problems


def test_invalid_corpus_is_large_enough() -> None:
    assert len(_invalid_cases()) >= 80


def test_missing_spec_is_rejected() -> None:
    manifest = _manifest(BASE_SPEC)
    del manifest["spec"]
    assert VALIDATOR.errors(manifest)


@pytest.mark.parametrize("spec", VALID_SPECS)
def test_valid_spec_is_accepted_by_both(spec: dict[str, Any]) -> None:
    assert VALIDATOR.errors(_manifest(spec)) == []
    parse_spec(spec)


def test_shipped_examples_are_accepted_by_both() -> None:
    manifests = list(yaml.safe_load_all((EXAMPLES / "routes.yaml").read_text()))
    assert len(manifests) >= 3
    for manifest in manifests:
        assert VALIDATOR.errors(manifest) == [], manifest["metadata"]["name"]
        parse_spec(manifest["spec"])


def test_cel_rule_failure_names_the_field() -> None:
    errors = VALIDATOR.errors(_manifest(_merge(BASE_SPEC, {"requestTimeout": "10s"})))
    assert errors == ["spec.requestTimeout: requestTimeout must be longer than idleInterval"]


# Characters that matter to ARM's naming rules or to the HTTP client's URL handling.
_ID_CHARACTERS = "ag09._-()/ ?#%\n\u200b\u00e9"


@given(
    subscription=st.sampled_from([SUBSCRIPTION, SUBSCRIPTION.upper(), "s", SUBSCRIPTION[1:]]),
    group=st.one_of(
        st.from_regex(RESOURCE_GROUP_PATTERN, fullmatch=True),
        st.text(alphabet=_ID_CHARACTERS, max_size=92),
    ),
    name=st.one_of(
        st.from_regex(ARM_NAME_PATTERN, fullmatch=True),
        st.text(alphabet=_ID_CHARACTERS, max_size=82),
    ),
)
def test_crd_and_model_agree_on_every_gateway_id(subscription: str, group: str, name: str) -> None:
    gateway_id = (
        f"/subscriptions/{subscription}/resourceGroups/{group}"
        f"/providers/Microsoft.Network/applicationGateways/{name}"
    )
    spec = _merge(BASE_SPEC, {"gateway": {"id": gateway_id}})
    try:
        parse_spec(spec)
        accepted = True
    except SpecError:
        accepted = False
    assert (VALIDATOR.errors(_manifest(spec)) == []) == accepted


def test_the_timeout_column_says_it_is_the_routes_need() -> None:
    version = build_crd()["spec"]["versions"][0]
    [timeout] = [c for c in version["additionalPrinterColumns"] if c["name"] == "Timeout"]
    assert timeout["jsonPath"] == ".status.requestTimeoutSeconds"
    assert timeout["description"].startswith("The request timeout this route needs")
    assert "not what the gateway holds" in timeout["description"]
