"""The CRD and the pydantic models enforce the same contract, case by case."""

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
from tests.support.route_cases import (
    BASE_SPEC,
    SUBSCRIPTION,
    VALID_SPECS,
    invalid_cases,
    manifest_of,
    merge,
)

ROOT = Path(__file__).resolve().parent.parent
CRD_FILE = ROOT / "crds" / "sseroutes.sse.appgw.dev.yaml"
VALIDATOR = CrdValidator(build_crd())


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


@pytest.mark.parametrize(("spec", "field"), invalid_cases())
def test_invalid_spec_is_rejected_by_both(spec: dict[str, Any], field: str) -> None:
    errors = VALIDATOR.errors(manifest_of(spec))
    assert any(_names_field(e, field) for e in errors), errors or "the API server would accept it"
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert any(p.startswith(f"{field}:") for p in caught.value.problems), caught.value.problems


def test_invalid_corpus_is_large_enough() -> None:
    assert len(invalid_cases()) >= 80


def test_missing_spec_is_rejected() -> None:
    manifest = manifest_of(BASE_SPEC)
    del manifest["spec"]
    assert VALIDATOR.errors(manifest)


@pytest.mark.parametrize("spec", VALID_SPECS)
def test_valid_spec_is_accepted_by_both(spec: dict[str, Any]) -> None:
    assert VALIDATOR.errors(manifest_of(spec)) == []
    parse_spec(spec)


def test_shipped_examples_are_accepted_by_both() -> None:
    manifests = list(yaml.safe_load_all((EXAMPLES / "routes.yaml").read_text()))
    assert len(manifests) >= 3
    for manifest in manifests:
        assert VALIDATOR.errors(manifest) == [], manifest["metadata"]["name"]
        parse_spec(manifest["spec"])


def test_cel_rule_failure_names_the_field() -> None:
    errors = VALIDATOR.errors(manifest_of(merge(BASE_SPEC, {"requestTimeout": "10s"})))
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
    spec = merge(BASE_SPEC, {"gateway": {"id": gateway_id}})
    try:
        parse_spec(spec)
        accepted = True
    except SpecError:
        accepted = False
    assert (VALIDATOR.errors(manifest_of(spec)) == []) == accepted


def test_the_timeout_column_says_it_is_the_routes_need() -> None:
    version = build_crd()["spec"]["versions"][0]
    [timeout] = [c for c in version["additionalPrinterColumns"] if c["name"] == "Timeout"]
    assert timeout["jsonPath"] == ".status.requestTimeoutSeconds"
    assert timeout["description"].startswith("The request timeout this route needs")
    assert "not what the gateway holds" in timeout["description"]
