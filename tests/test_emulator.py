"""ARM fidelity of the emulator, over real HTTPS: shapes, etags, LRO, validation, concurrency."""

import asyncio
import copy
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from appgw_sse.offline import EXAMPLES
from tests.support.emulator import Arm, example_gateway

GW = example_gateway()["id"]
OPS = "/subscriptions/00000000-0000-4000-8000-000000000001/providers/Microsoft.Network/locations"


async def settle(arm: Arm, path: str, deadline: float = 10.0) -> dict:
    """Poll the operation until it leaves InProgress."""
    end = time.monotonic() + deadline
    while True:
        status, body, _ = await arm.call("GET", path, query="")
        assert status == 200
        if body["status"] != "InProgress" or time.monotonic() > end:
            return body
        await asyncio.sleep(0.05)


def op_path(headers: dict[str, str]) -> str:
    url = headers["Azure-AsyncOperation"]
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


async def test_get_is_case_insensitive_and_arm_shaped(arm: Arm) -> None:
    status, body, headers = await arm.call(
        "GET", GW.upper().replace("MICROSOFT.NETWORK", "microsoft.network")
    )
    assert status == 200
    assert body["id"] == GW and body["etag"].startswith('W/"')
    assert body["properties"]["provisioningState"] == "Succeeded"
    assert "x-ms-request-id" in headers


async def test_errors_use_arms_envelope(arm: Arm) -> None:
    missing = GW.replace("agw-shop-prod", "nope")
    status, body, _ = await arm.call("GET", missing)
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"
    assert "'Microsoft.Network/applicationGateways/nope'" in body["error"]["message"]
    status, body, headers = await arm.call("GET", GW, token=None)
    assert status == 401 and body["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in headers
    status, body, _ = await arm.call("GET", GW, query="")
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"
    status, body, _ = await arm.call("PATCH", GW)
    assert status == 405 and body["error"]["code"] == "MethodNotAllowed"
    status, body, _ = await arm.call(
        "GET", "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachines/v"
    )
    assert status == 404 and body["error"]["code"] == "InvalidResourceType"


async def test_put_is_a_long_running_operation_with_new_etag(arm: Arm) -> None:
    _, before, _ = await arm.call("GET", GW)
    body = copy.deepcopy(before)
    body["properties"]["provisioningState"] = "Bogus"  # read-only: ignored
    body["properties"]["backendHttpSettingsCollection"][0]["id"] = "/wrong"  # recomputed
    status, updating, headers = await arm.call("PUT", GW, body)
    assert status == 200
    assert updating["properties"]["provisioningState"] == "Updating"
    assert updating["etag"] != before["etag"]
    assert updating["properties"]["backendHttpSettingsCollection"][0]["id"].startswith(GW + "/")
    assert headers["Azure-AsyncOperation"].startswith(arm.running.url + OPS)
    assert "api-version=2024-05-01" in headers["Azure-AsyncOperation"]
    assert "Retry-After" not in headers  # sub-second LRO: the client's interval applies
    assert (await settle(arm, op_path(headers)))["status"] == "Succeeded"
    _, after, _ = await arm.call("GET", GW)
    assert after["properties"]["provisioningState"] == "Succeeded"


async def test_create_answers_201_and_delete_removes(arm: Arm) -> None:
    new = example_gateway()
    new_id = GW.replace("agw-shop-prod", "agw-new")
    new["id"] = new_id
    text = json.dumps(new).replace(GW, new_id)
    status, _, headers = await arm.call("PUT", new_id, json.loads(text))
    assert status == 201
    await settle(arm, op_path(headers))
    status, _, headers = await arm.call("DELETE", new_id)
    assert status == 202
    await settle(arm, op_path(headers))
    assert (await arm.call("GET", new_id))[0] == 404
    assert (await arm.call("DELETE", new_id))[0] == 204
    status, listing, _ = await arm.call("GET", GW.rsplit("/", 1)[0])
    assert [g["name"] for g in listing["value"]] == ["agw-shop-prod"]


async def test_validation_rules(arm: Arm) -> None:
    _, doc, _ = await arm.call("GET", GW)
    too_long = copy.deepcopy(doc)
    too_long["properties"]["backendHttpSettingsCollection"][0]["properties"]["requestTimeout"] = (
        86401
    )
    status, body, _ = await arm.call("PUT", GW, too_long)
    assert (status, body["error"]["code"]) == (
        400,
        "ApplicationGatewayBackendHttpSettingsInvalidRequestTimeout",
    )
    v1 = copy.deepcopy(doc)
    v1["properties"]["sku"] = {"name": "Standard_Medium", "tier": "Standard", "capacity": 2}
    status, body, _ = await arm.call("PUT", GW, v1)
    assert (status, body["error"]["code"]) == (
        400,
        "ApplicationGatewayFeatureCannotBeEnabledForSelectedSku",
    )
    dangling = copy.deepcopy(doc)
    dangling["properties"]["backendHttpSettingsCollection"].pop(0)  # a path rule still uses it
    status, body, _ = await arm.call("PUT", GW, dangling)
    assert (status, body["error"]["code"]) == (400, "InvalidResourceReference")
    _, unchanged, _ = await arm.call("GET", GW)
    assert unchanged["etag"] == doc["etag"]


async def test_if_match_mismatch_is_412(arm: Arm) -> None:
    _, doc, _ = await arm.call("GET", GW)
    status, body, _ = await arm.call("PUT", GW, doc, headers={"If-Match": 'W/"stale"'})
    assert (status, body["error"]["code"]) == (412, "PreconditionFailed")
    status, _, _ = await arm.call("PUT", GW, doc, headers={"If-Match": doc["etag"]})
    assert status == 200


async def test_concurrent_put_modes(arm: Arm) -> None:
    await arm.admin("POST", "config", {"lroSeconds": 30})
    _, doc, _ = await arm.call("GET", GW)
    status, _, first = await arm.call("PUT", GW, doc)
    assert status == 200
    status, body, headers = await arm.call("PUT", GW, doc)
    assert (status, body["error"]["code"]) == (429, "RetryableErrorDueToAnotherOperation")
    assert headers["Retry-After"].isdigit()
    await arm.admin("POST", "config", {"conflictMode": "409"})
    status, body, _ = await arm.call("PUT", GW, doc)
    assert (status, body["error"]["code"]) == (409, "AnotherOperationInProgress")
    await arm.admin("POST", "config", {"conflictMode": "supersede", "lroSeconds": 0})
    status, _, _ = await arm.call("PUT", GW, doc)
    assert status == 200
    earlier = await settle(arm, op_path(first))
    assert earlier["status"] == "Canceled"
    assert earlier["error"]["code"] == "CanceledAndSupersededDueToAnotherOperation"


async def test_faults_answer_without_changing_state(arm: Arm) -> None:
    await arm.admin(
        "POST",
        "faults",
        {
            "method": "PUT",
            "status": 503,
            "code": "ServerBusy",
            "headers": {"Retry-After": "1"},
            "count": 1,
        },
    )
    _, doc, _ = await arm.call("GET", GW)
    changed = copy.deepcopy(doc)
    changed["tags"]["x"] = "y"
    status, body, headers = await arm.call("PUT", GW, changed)
    assert (status, body["error"]["code"], headers["Retry-After"]) == (503, "ServerBusy", "1")
    _, after, _ = await arm.call("GET", GW)
    assert after["etag"] == doc["etag"] and "x" not in after["tags"]
    log = await arm.requests("PUT")
    assert [entry["status"] for entry in log] == [503]
    assert log[0]["bodyDigest"]


async def test_lro_failure_rolls_back_and_marks_failed(arm: Arm) -> None:
    await arm.admin(
        "POST", "faults", {"target": "lro", "code": "InternalServerError", "message": "boom"}
    )
    _, doc, _ = await arm.call("GET", GW)
    changed = copy.deepcopy(doc)
    changed["tags"]["x"] = "y"
    _, _, headers = await arm.call("PUT", GW, changed)
    result = await settle(arm, op_path(headers))
    assert (result["status"], result["error"]["code"]) == ("Failed", "InternalServerError")
    _, after, _ = await arm.call("GET", GW)
    assert after["properties"]["provisioningState"] == "Failed" and "x" not in after["tags"]


def test_cli_prints_ready_line_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "appgw_sse", "emulator", "--seed", str(EXAMPLES / "gateway.json"),
         "--tls-dir", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["url"].startswith("https://127.0.0.1:")
        assert Path(ready["ca_bundle"]) == tmp_path / "ca.pem"
        assert Path(ready["token_file"]).read_text().strip()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
