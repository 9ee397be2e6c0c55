"""ARM fidelity of the emulator, over real HTTPS: shapes, etags, LRO, validation, concurrency."""

import asyncio
import copy
import json
import re
import signal
import ssl
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from appgw_sse import EXAMPLES
from appgw_sse.emulator.state import ArmError, Throttling
from tests.support.emulator import Arm, example_gateway, sample_gateway

GW = example_gateway()["id"]
OPS = "/subscriptions/00000000-0000-4000-8000-000000000001/providers/Microsoft.Network/locations"
SAMPLE = sample_gateway()["id"]
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


SETTLE_SECONDS = 10.0


async def settle(arm: Arm, path: str) -> dict:
    """Poll the operation until it leaves InProgress; fail if it has not by SETTLE_SECONDS."""

    async def settled() -> dict:
        while True:
            status, body, _ = await arm.call("GET", path, query="")
            assert status == 200
            if body["status"] != "InProgress":
                return body
            await asyncio.sleep(0.05)

    try:
        return await asyncio.wait_for(settled(), SETTLE_SECONDS)
    except TimeoutError:
        pytest.fail(f"the operation {path} was still InProgress after {SETTLE_SECONDS:g} s")


async def test_settle_fails_at_its_deadline(arm: Arm, monkeypatch: pytest.MonkeyPatch) -> None:
    await arm.admin("POST", "config", {"lroSeconds": 30})
    _, doc, _ = await arm.call("GET", GW)
    _, _, headers = await arm.call("PUT", GW, doc)
    monkeypatch.setattr(f"{__name__}.SETTLE_SECONDS", 0.3)
    with pytest.raises(pytest.fail.Exception, match=r"still InProgress after 0\.3 s"):
        await settle(arm, op_path(headers))


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
    for drain in (0, 3601, "60"):
        bad_drain = copy.deepcopy(doc)
        bad_drain["properties"]["backendHttpSettingsCollection"][0]["properties"][
            "connectionDraining"
        ] = {"enabled": True, "drainTimeoutInSec": drain}
        status, body, _ = await arm.call("PUT", GW, bad_drain)
        assert (status, body["error"]["code"]) == (
            400,
            "ApplicationGatewayBackendHttpSettingsInvalidConnectionDrainingTimeout",
        )
        assert "between 1 and 3600" in body["error"]["message"]
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
    for tags, code in [
        ({f"t{i}": "x" for i in range(51)}, "InvalidTags"),
        ({"appgw-sse.claim.blue": "x" * 257}, "InvalidTagValueLength"),
        ({"a/b": "x"}, "InvalidTagNameCharacters"),
        ({"n" * 513: "x"}, "InvalidTagName"),
    ]:
        status, body, _ = await arm.call("PUT", GW, doc | {"tags": tags})
        assert (status, body["error"]["code"]) == (400, code)
    status, _, _ = await arm.call(
        "PUT", GW, doc | {"tags": {f"t{i}": "x" * 256 for i in range(50)}}
    )
    assert status == 200


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
        [
            sys.executable,
            "-m",
            "appgw_sse",
            "emulator",
            "--seed",
            str(EXAMPLES / "gateway.json"),
            "--tls-dir",
            str(tmp_path),
            "--throttling",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["url"].startswith("https://127.0.0.1:")
        assert Path(ready["ca_bundle"]) == tmp_path / "ca.pem"
        assert Path(ready["token_file"]).read_text().strip()
        request = urllib.request.Request(
            f"{ready['url']}{GW}?api-version=2024-05-01", headers={"Authorization": "Bearer t"}
        )
        context = ssl.create_default_context(cafile=ready["ca_bundle"])
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            assert response.headers["x-ms-ratelimit-remaining-subscription-reads"] == "249"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


# -- what ARM hides: write-only secrets, read-only identity ids (REST spec 2024-05-01) ----------


def certificate(document: dict, name: str) -> dict:
    found = [c for c in document["properties"]["sslCertificates"] if c["name"] == name]
    return dict(found[0]["properties"])


async def stored(arm: Arm, gateway_id: str) -> dict:
    """The gateway as the emulator stores it, secrets included (admin API)."""
    documents = await arm.admin("GET", "gateways?secrets=true")
    return next(d for d in documents if d["id"] == gateway_id)


async def create_sample(arm: Arm) -> dict:
    status, created, headers = await arm.call("PUT", SAMPLE, sample_gateway())
    assert status == 201, created
    assert (await settle(arm, op_path(headers)))["status"] == "Succeeded"
    return dict(created)


async def test_the_sample_never_reads_back_its_pfx_secrets(arm: Arm) -> None:
    sent = certificate(sample_gateway(), "sslcert")
    created = await create_sample(arm)
    _, got, _ = await arm.call("GET", SAMPLE)
    _, listing, _ = await arm.call("GET", SAMPLE.rsplit("/", 1)[0])
    (admin_view,) = [d for d in await arm.admin("GET", "gateways") if d["id"] == SAMPLE]
    for document in (created, got, listing["value"][0], admin_view):
        pfx = certificate(document, "sslcert")
        assert "data" not in pfx and "password" not in pfx
        assert pfx["publicCertData"] and sent["data"] not in pfx["publicCertData"]
        assert "publicCertData" not in certificate(document, "sslcert2")  # a Key Vault secret
    # The public certificates' data is not write-only: it reads back.
    assert got["properties"]["trustedRootCertificates"][0]["properties"]["data"]
    kept = certificate(await stored(arm, SAMPLE), "sslcert")
    assert (kept["data"], kept["password"]) == (sent["data"], sent["password"])


async def test_a_put_without_the_secret_keeps_the_stored_one(arm: Arm) -> None:
    sent = certificate(sample_gateway(), "sslcert")
    await create_sample(arm)
    _, got, _ = await arm.call("GET", SAMPLE)
    got["tags"] = {"changed": "by az network application-gateway update"}
    status, _, headers = await arm.call("PUT", SAMPLE, got)  # GET-modify-PUT: no secret in it
    assert status == 200
    await settle(arm, op_path(headers))
    kept = certificate(await stored(arm, SAMPLE), "sslcert")
    assert (kept["data"], kept["password"]) == (sent["data"], sent["password"])
    _, after, _ = await arm.call("GET", SAMPLE)
    published = certificate(got, "sslcert")["publicCertData"]
    assert certificate(after, "sslcert")["publicCertData"] == published

    renewed = copy.deepcopy(after)
    renewed["properties"]["sslCertificates"][0]["properties"].update(data="cmVuZXdlZA==")
    _, _, headers = await arm.call("PUT", SAMPLE, renewed)  # a new PFX (no password) replaces
    await settle(arm, op_path(headers))
    replaced = certificate(await stored(arm, SAMPLE), "sslcert")
    assert replaced["data"] == "cmVuZXdlZA==" and "password" not in replaced
    _, final, _ = await arm.call("GET", SAMPLE)
    assert certificate(final, "sslcert")["publicCertData"] != published


async def test_a_new_certificate_needs_data_or_a_key_vault_secret(arm: Arm) -> None:
    await create_sample(arm)
    _, got, _ = await arm.call("GET", SAMPLE)
    with_new = copy.deepcopy(got)
    with_new["properties"]["sslCertificates"].append(
        {"name": "newcert", "properties": {"password": "a password without its PFX"}}
    )
    status, body, _ = await arm.call("PUT", SAMPLE, with_new)
    assert status == 400
    assert body["error"]["code"] == (
        "ApplicationGatewayCertificateDataOrKeyVaultSecretIdMustBeSpecified"
    )
    assert body["error"]["target"] == "properties.sslCertificates[2]"
    assert "newcert" in body["error"]["message"]
    _, unchanged, _ = await arm.call("GET", SAMPLE)
    assert unchanged["etag"] == got["etag"]
    # Creating a gateway: nothing is stored yet, so a certificate without its PFX is refused.
    bare = sample_gateway()
    del bare["properties"]["sslCertificates"][0]["properties"]["data"]
    status, body, _ = await arm.call("PUT", SAMPLE.replace("/appgw", "/appgw-new"), bare)
    assert (status, body["error"]["target"]) == (400, "properties.sslCertificates[0]")


async def test_user_assigned_identity_ids_are_read_only(arm: Arm) -> None:
    created = await create_sample(arm)
    identities = created["identity"]["userAssignedIdentities"]
    (entry,) = identities.values()
    assert GUID.match(entry["principalId"]) and GUID.match(entry["clientId"])
    assert entry["principalId"] != entry["clientId"]
    _, got, _ = await arm.call("GET", SAMPLE)
    assert got["identity"]["userAssignedIdentities"] == identities
    forged = copy.deepcopy(got)
    for value in forged["identity"]["userAssignedIdentities"].values():
        value.update(principalId=str(uuid.uuid4()), clientId=str(uuid.uuid4()))
    _, _, headers = await arm.call("PUT", SAMPLE, forged)
    await settle(arm, op_path(headers))
    _, after, _ = await arm.call("GET", SAMPLE)
    assert after["identity"]["userAssignedIdentities"] == identities


# -- ARM's throttling as a model (docs: request-limits-and-throttling) -------------------------


def test_token_bucket_empties_then_refills() -> None:
    now = [0.0]
    buckets = Throttling({"reads": (2, 0.5), "writes": (1, 1)}, lambda: now[0])
    assert [buckets.take("SUB", "reads"), buckets.take("sub", "reads")] == [1, 0]
    with pytest.raises(ArmError) as empty:
        buckets.take("sub", "reads")
    assert (empty.value.status, empty.value.code) == (429, "SubscriptionRequestsThrottled")
    assert empty.value.headers["Retry-After"] == "2"  # one token at 0.5 per second
    assert buckets.take("sub", "writes") == 0  # a bucket per kind
    assert buckets.take("other", "reads") == 1  # and per subscription
    now[0] = 1.0
    with pytest.raises(ArmError) as half:
        buckets.take("sub", "reads")
    assert half.value.headers["Retry-After"] == "1"
    now[0] = 100.0  # refills up to the burst, no further
    assert buckets.take("sub", "reads") == 1
    report = buckets.report()["sub"]["reads"]
    assert (report["lowest"], report["throttled"], report["remaining"]) == (0, 2, 1)


async def test_throttling_is_opt_in_and_answers_429_with_retry_after(arm: Arm) -> None:
    _, _, headers = await arm.call("GET", GW)
    assert not any(h.startswith("x-ms-ratelimit") for h in headers)
    config = await arm.admin(
        "POST", "config", {"throttling": {"reads": {"burst": 2, "perSecond": 0.01}}}
    )
    assert config["throttling"]["writes"] == {"burst": 200, "perSecond": 10}
    remaining = []
    for _ in range(2):
        status, doc, headers = await arm.call("GET", GW)
        remaining.append(headers["x-ms-ratelimit-remaining-subscription-reads"])
    assert remaining == ["1", "0"]
    status, body, headers = await arm.call("GET", GW)
    assert (status, body["error"]["code"]) == (429, "SubscriptionRequestsThrottled")
    assert headers["Retry-After"] == "100"
    status, _, headers = await arm.call("PUT", GW, doc)  # writes have their own bucket
    assert (status, headers["x-ms-ratelimit-remaining-subscription-writes"]) == (200, "199")
    report = await arm.admin("GET", "throttling")
    assert report[GW.split("/")[2]]["reads"]["throttled"] == 1
    await arm.admin("POST", "config", {"throttling": False})
    assert (await arm.call("GET", GW))[0] == 200
    status, body, _ = await arm.call(
        "POST", "/_emulator/config", {"throttling": {"x": {}}}, query=""
    )
    assert status == 400 and "unknown kind" in body["error"]["message"]
