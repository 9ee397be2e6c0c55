"""The gateway azure-sdk-for-python publishes as its CreateOrUpdate sample (user-assigned identity,
PFX and Key Vault certificates, an SSL profile, a rewrite rule set) through the operator: one PUT
that changes only the owned fields, and the PFX secret ARM never reads back still stored."""

from typing import Any

from tests.support.e2e import Rig, route_manifest
from tests.support.emulator import sample_gateway
from tests.support.gateways import without_owned_fields

SAMPLE = sample_gateway()
SAMPLE_ID = SAMPLE["id"]
# What ARM recomputes on every write. resourceGuid is left out too: the emulator issues a new one
# per PUT today, where ARM keeps it for the gateway's lifetime.
RECOMPUTED = ("etag", "provisioningState")


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in RECOMPUTED}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    result: dict[str, Any] = strip(without_owned_fields(document))
    result["properties"].pop("resourceGuid")
    return result


def pfx(document: dict[str, Any]) -> dict[str, Any]:
    return dict(document["properties"]["sslCertificates"][0]["properties"])


def test_sample_gateway_round_trips_with_only_owned_fields_changed(rig: Rig) -> None:
    rig.emulator.admin("POST", "gateways", SAMPLE)
    before = rig.emulator.gateway(SAMPLE_ID)
    assert "data" not in pfx(before) and "password" not in pfx(before)
    rig.operator()
    rig.apply(route_manifest("sample-stream", gateway_id=SAMPLE_ID, settings=("appgwbhs",)))
    rig.wait_condition("shop", "sample-stream", "True", "Applied")

    after = rig.emulator.gateway(SAMPLE_ID)
    assert after["properties"]["globalConfiguration"]["enableResponseBuffering"] is False
    assert after["properties"]["backendHttpSettingsCollection"][0]["properties"] == (
        before["properties"]["backendHttpSettingsCollection"][0]["properties"]
        | {"requestTimeout": 68, "provisioningState": "Succeeded"}
    )
    assert comparable(after) == comparable(before)
    assert len(rig.emulator.requests("PUT", SAMPLE_ID)) == 1
    # The operator could not have sent the PFX (never read back): the stored one survived.
    assert (
        "data" not in pfx(after) and pfx(after)["publicCertData"] == pfx(before)["publicCertData"]
    )
    stored = next(
        g for g in rig.emulator.admin("GET", "gateways?secrets=true") if g["id"] == SAMPLE_ID
    )
    sent = pfx(SAMPLE)
    assert (pfx(stored)["data"], pfx(stored)["password"]) == (sent["data"], sent["password"])
