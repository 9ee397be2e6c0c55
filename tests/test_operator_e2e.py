"""The operator end to end: `appgw-sse run` as a process, driven with kubectl, against the
project's ARM emulator and a realistic Kubernetes API."""

import json
import signal
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.e2e import GATEWAY_ID, Rig, gateway_id, route_manifest, wait_for


def timeouts(document: dict) -> dict[str, int]:
    return {
        s["name"]: s["properties"]["requestTimeout"]
        for s in document["properties"]["backendHttpSettingsCollection"]
    }


def buffering(document: dict) -> bool:
    return bool(document["properties"]["globalConfiguration"]["enableResponseBuffering"])


@pytest.mark.floor
def test_create_update_delete_restores(rig: Rig) -> None:
    rig.operator()
    original = rig.emulator.gateway()
    rig.apply(route_manifest("notifications"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    accepted = rig.condition("shop", "notifications", "Accepted")
    document = rig.emulator.gateway()
    assert buffering(document) is False
    assert timeouts(document)["notifications-http"] == 68
    route = rig.route("shop", "notifications")
    assert route["status"]["requestTimeoutSeconds"] == 68
    assert route["status"]["gateway"] == {
        "name": "agw-shop-prod",
        "responseBuffering": "Disabled",
        "backendSettings": [
            {"name": "notifications-http", "requestTimeout": 68, "connectionDraining": 0}
        ],
    }
    assert "sse.appgw.dev/finalizer" in route["metadata"]["finalizers"]
    assert len(rig.emulator.requests("PUT")) == 1
    table = rig.kubectl("get", "sser", "-n", "shop")
    assert "agw-shop-prod" in table and "True" in table and "Applied" in table

    rig.apply(route_manifest("notifications", idle="100s"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    assert timeouts(rig.emulator.gateway())["notifications-http"] == 150
    # Accepted stayed True through the update: its lastTransitionTime must not move.
    assert rig.condition("shop", "notifications", "Accepted") == accepted | {
        "observedGeneration": 2
    }

    rig.kubectl("delete", "sser", "-n", "shop", "notifications", "--wait=false")
    wait_for("route gone", lambda: rig.route("shop", "notifications") is None)
    restored = rig.emulator.gateway()
    assert buffering(restored) is True
    assert timeouts(restored) == timeouts(original)
    assert len(rig.emulator.requests("PUT")) == 3
    assert rig.events("shop", "Applied")


def test_fifty_routes_at_once_cost_at_most_two_puts(rig: Rig) -> None:
    rig.operator()
    routes = [route_manifest(f"stream-{i:02d}", idle=f"{10 + i}s") for i in range(50)]
    rig.apply(*routes)
    for i in range(50):
        rig.wait_condition("shop", f"stream-{i:02d}", "True", "Applied", timeout=60)
    assert len(rig.emulator.requests("PUT")) <= 2
    assert timeouts(rig.emulator.gateway())["notifications-http"] == 89  # idle 59s -> 89s


def test_two_gateways_in_parallel(rig: Rig) -> None:
    rig.operator()
    second = gateway_id("agw-shop-second")
    rig.apply(route_manifest("a"), route_manifest("b", gateway_id=second, idle="20s"))
    rig.wait_condition("shop", "a", "True", "Applied")
    rig.wait_condition("shop", "b", "True", "Applied")
    assert timeouts(rig.emulator.gateway())["notifications-http"] == 68
    assert timeouts(rig.emulator.gateway(second))["notifications-http"] == 30  # 25s needed, 30 kept
    assert buffering(rig.emulator.gateway(second)) is False
    first_puts = rig.emulator.requests("PUT")
    second_puts = rig.emulator.requests("PUT", second)
    assert len(first_puts) == len(second_puts) == 1
    # In parallel: the second PUT started before the first one's 1 s operation could finish.
    assert abs(first_puts[0]["time"] - second_puts[0]["time"]) < 1.0


def test_a_users_later_change_survives_deletion(rig: Rig) -> None:
    rig.operator()
    rig.apply(route_manifest("notifications"))
    rig.wait_condition("shop", "notifications", "True", "Applied")

    def raise_timeout(document: dict) -> None:
        document["properties"]["backendHttpSettingsCollection"][0]["properties"][
            "requestTimeout"
        ] = 300

    rig.emulator.third_party_put(raise_timeout)
    rig.kubectl("delete", "sser", "-n", "shop", "notifications", "--wait=false")
    wait_for("route gone", lambda: rig.route("shop", "notifications") is None)
    document = rig.emulator.gateway()
    assert timeouts(document)["notifications-http"] == 300  # theirs, not our original 30
    assert buffering(document) is True  # ours, restored


def test_restore_on_delete_false_leaves_values(rig: Rig) -> None:
    rig.operator()
    rig.apply(route_manifest("notifications", restoreOnDelete=False))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    rig.kubectl("delete", "sser", "-n", "shop", "notifications", "--wait=false")
    wait_for("route gone", lambda: rig.route("shop", "notifications") is None)
    assert timeouts(rig.emulator.gateway())["notifications-http"] == 68
    assert len(rig.emulator.requests("PUT")) == 1


def test_drift_is_corrected_then_conflict_stops_the_fight(rig: Rig) -> None:
    rig.operator("--resync", "1s")
    rig.apply(route_manifest("notifications"))
    rig.wait_condition("shop", "notifications", "True", "Applied")

    def revert(document: dict) -> None:
        document["properties"]["backendHttpSettingsCollection"][0]["properties"][
            "requestTimeout"
        ] = 30

    for correction in (1, 2):
        rig.emulator.third_party_put(revert)
        wait_for(
            f"correction {correction}",
            lambda: timeouts(rig.emulator.gateway())["notifications-http"] == 68,
        )
    assert len(rig.emulator.requests("PUT")) == 3
    rig.emulator.third_party_put(revert)
    rig.wait_condition("shop", "notifications", "False", "DriftConflict", type_="GatewayConfigured")
    assert "stopped correcting" in rig.condition("shop", "notifications")["message"]
    assert rig.events("shop", "DriftConflict")
    gets = len(rig.emulator.requests("GET"))
    wait_for("two more resyncs", lambda: len(rig.emulator.requests("GET")) >= gets + 2)
    assert timeouts(rig.emulator.gateway())["notifications-http"] == 30
    assert len(rig.emulator.requests("PUT")) == 3  # no more fighting
    _, scraped = rig.operators[0].http_get("/metrics")
    assert f'appgw_sse_drift_conflicts{{gateway="{GATEWAY_ID}"}} 1.0' in scraped


def test_gateways_the_operator_must_not_write(rig: Rig) -> None:
    rig.operator()
    rig.apply(
        route_manifest("agic", gateway_id=gateway_id("agw-shop-agic")),
        route_manifest("v1", gateway_id=gateway_id("agw-shop-v1")),
        route_manifest("finance", gateway_id=gateway_id("agw-finance", "rg-finance")),
        route_manifest("missing", settings=("notifications-http", "nope")),
    )
    agic = rig.wait_condition("shop", "agic", "False", "ManagedByAGIC")
    assert "request-timeout" in agic["message"]
    rig.wait_condition("shop", "v1", "False", "UnsupportedSku")
    rig.wait_condition("shop", "finance", "False", "GatewayNotAllowed")
    missing = rig.wait_condition("shop", "missing", "False", "BackendSettingsNotFound")
    assert "nope" in missing["message"]
    assert rig.condition("shop", "finance", "Accepted")["status"] == "False"
    assert rig.condition("shop", "agic", "Accepted")["status"] == "True"
    assert rig.admin_puts() == 0


@pytest.mark.floor
def test_invalid_spec_is_reported_and_changes_nothing(rig: Rig) -> None:
    rig.operator()
    rig.apply(route_manifest("notifications"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    if rig.cluster.real:  # the CRD's schema stops this one at the API server
        refused = rig.cluster.kubectl(
            "apply",
            "--validate=false",
            "-f",
            "-",
            stdin=json.dumps(route_manifest("notifications", idle="45")),
        )
        assert refused.returncode != 0 and "spec.idleInterval" in refused.stderr
    # Only a CEL rule forbids 24h. A current server refuses it; a 1.20 server drops CEL rules,
    # and so does a CRD from before they existed (as old clusters have): the operator
    # re-validates.
    if rig.cluster.validate_flags() == ():
        refused = rig.cluster.kubectl(
            "apply", "-f", "-", stdin=json.dumps(route_manifest("notifications", idle="24h"))
        )
        assert refused.returncode != 0 and "spec.idleInterval" in refused.stderr
        rig.install_crd_without_cel_rules()
    rig.apply(route_manifest("notifications", idle="24h"))
    ready = rig.wait_condition("shop", "notifications", "False", "InvalidSpec")
    assert ready["status"] == "False" and "spec.idleInterval" in ready["message"]
    assert rig.condition("shop", "notifications", "Accepted")["reason"] == "InvalidSpec"
    assert timeouts(rig.emulator.gateway())["notifications-http"] == 68  # last valid spec holds
    assert len(rig.emulator.requests("PUT")) == 1
    rig.apply(route_manifest("notifications", idle="20s"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    assert timeouts(rig.emulator.gateway())["notifications-http"] == 30  # back to the original


def test_dry_run_plans_and_never_puts(rig: Rig) -> None:
    rig.operator("--dry-run")
    rig.apply(route_manifest("notifications"))
    ready = rig.wait_condition("shop", "notifications", "False", "DryRun")
    assert "requestTimeout 30 -> 68" in ready["message"]
    assert rig.admin_puts() == 0


def test_429_storm_and_concurrent_writer_converge_keeping_their_change(rig: Rig) -> None:
    rig.emulator.admin(
        "POST",
        "faults",
        [
            {
                "method": "PUT",
                "status": 429,
                "count": 6,
                "code": "RetryableErrorDueToAnotherOperation",
                "headers": {"Retry-After": "1"},
            },
            {"target": "interleave", "method": "PUT", "patch": {"tags": {"owner": "someone-else"}}},
        ],
    )
    rig.operator()
    rig.apply(route_manifest("notifications"))
    rig.wait_condition("shop", "notifications", "True", "Applied", timeout=60)
    document = rig.emulator.gateway()
    assert document["tags"]["owner"] == "someone-else"
    assert timeouts(document)["notifications-http"] == 68
    statuses = [r["status"] for r in rig.emulator.requests("PUT")]
    assert statuses.count(429) == 6 and 412 in statuses and statuses[-1] == 200
    assert rig.events("shop", "Throttled")


def test_operator_killed_mid_update_resumes_without_losing_the_original(rig: Rig) -> None:
    rig.emulator.admin("POST", "config", {"lroSeconds": 6})
    operator = rig.operator()
    rig.apply(route_manifest("notifications"))
    wait_for("the PUT in flight", lambda: rig.emulator.requests("PUT"))
    operator.stop(signal.SIGKILL)
    ledger = rig.ledger()
    assert "intent" in ledger["data"]  # written before the PUT, not yet confirmed
    assert rig.emulator.gateway()["properties"]["provisioningState"] == "Updating"

    rig.operator()
    rig.wait_condition("shop", "notifications", "True", "Applied", timeout=60)
    assert len(rig.emulator.requests("PUT")) == 1  # waited for the running update, no second PUT
    ledger = rig.ledger()
    assert "intent" not in ledger["data"]
    owned = json.loads(ledger["data"]["ledger"])
    assert owned["backendSettings"]["notifications-http"] == {"original": 30, "applied": 68}

    rig.emulator.admin("POST", "config", {"lroSeconds": 1})
    rig.kubectl("delete", "sser", "-n", "shop", "notifications", "--wait=false")
    wait_for("route gone", lambda: rig.route("shop", "notifications") is None, timeout=60)
    assert timeouts(rig.emulator.gateway())["notifications-http"] == 30
    assert buffering(rig.emulator.gateway()) is True


# -- a ledger belongs to one instance of its gateway ----------------------------------------


def arm_call(rig: Rig, method: str, gateway: str = GATEWAY_ID) -> int:
    """A plain ARM request to the emulator with its bearer token; the HTTP status."""
    token = Path(rig.emulator.ready["token_file"]).read_text().strip()
    request = urllib.request.Request(
        f"{rig.emulator.url}{gateway}?api-version=2024-05-01",
        method=method,
        headers={"Authorization": f"Bearer {token}"},
    )
    context = ssl.create_default_context(cafile=rig.emulator.ready["ca_bundle"])
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def delete_gateway(rig: Rig) -> dict:
    """Delete the gateway through ARM and wait until it is gone; the document it had."""
    document = rig.emulator.gateway()
    assert arm_call(rig, "DELETE") == 202
    wait_for("the gateway to be deleted", lambda: arm_call(rig, "GET") == 404)
    return document


def recreate_gateway(rig: Rig, document: dict, timeout: int, buffering: bool) -> None:
    """Create the gateway anew (a new instance under the same id) with these two values."""
    props = document["properties"]
    props["backendHttpSettingsCollection"][0]["properties"]["requestTimeout"] = timeout
    props["globalConfiguration"]["enableResponseBuffering"] = buffering
    rig.emulator.admin("POST", "gateways", document)


def ledger_configmaps(rig: Rig) -> list[str]:
    return rig.kubectl(
        "get",
        "configmaps",
        "-n",
        "appgw-sse-system",
        "-o",
        "name",
        "-l",
        "app.kubernetes.io/managed-by=appgw-sse-operator",
    ).split()


def test_a_deleted_gateways_ledger_never_lowers_its_successor(rig: Rig) -> None:
    rig.operator()
    rig.apply(route_manifest("a"))  # notifications-http 30 -> 68
    rig.wait_condition("shop", "a", "True", "Applied")
    document = delete_gateway(rig)
    rig.kubectl("delete", "sser", "-n", "shop", "a", "--wait=false")
    wait_for("route a gone", lambda: rig.route("shop", "a") is None)
    # The user recreates the gateway with 68 of their own; route b needs only 10.
    recreate_gateway(rig, document, timeout=68, buffering=False)
    puts = len(rig.emulator.requests("PUT"))
    rig.apply(route_manifest("b", idle="5s"))
    rig.wait_condition("shop", "b", "True", "Applied")
    assert timeouts(rig.emulator.gateway())["notifications-http"] == 68
    assert len(rig.emulator.requests("PUT")) == puts  # 68 already satisfies b: nothing to write
    assert ledger_configmaps(rig) == []  # nothing owned on the new gateway, none kept for the old


def test_a_gateway_recreated_under_a_live_route_is_restored_to_its_own_value(rig: Rig) -> None:
    operator = rig.operator("--resync", "1s")
    rig.apply(route_manifest("a"))
    rig.wait_condition("shop", "a", "True", "Applied")
    document = delete_gateway(rig)
    rig.wait_condition("shop", "a", "False", "GatewayNotFound")
    recreate_gateway(rig, document, timeout=45, buffering=True)
    wait_for(
        "the new gateway raised to 68",
        lambda: timeouts(rig.emulator.gateway())["notifications-http"] == 68,
    )
    rig.wait_condition("shop", "a", "True", "Applied")
    rig.kubectl("delete", "sser", "-n", "shop", "a", "--wait=false")
    wait_for("route a gone", lambda: rig.route("shop", "a") is None)
    restored = rig.emulator.gateway()
    assert timeouts(restored)["notifications-http"] == 45  # the new instance's, not the old 30
    assert buffering(restored) is True
    assert rig.events("shop", "GatewayRecreated")
    assert "gateway was recreated; original values read afresh" in operator.output()
    assert ledger_configmaps(rig) == []  # emptied by the restore, so deleted


# -- conditions speak for the generation they were computed from ----------------------------


def test_ready_never_claims_a_generation_the_gateway_does_not_hold(rig: Rig) -> None:
    rig.operator()
    rig.apply(route_manifest("notifications"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    rig.emulator.admin("POST", "config", {"lroSeconds": 6})
    rig.apply(route_manifest("notifications", idle="100s"))  # generation 2: 150 s
    wait_for("generation 2's PUT in flight", lambda: len(rig.emulator.requests("PUT")) == 2)
    rig.apply(route_manifest("notifications", idle="120s"))  # generation 3: 180 s
    samples: list[tuple[str, int, int]] = []

    def generation_3_ready() -> bool:
        # The route first, then the gateway: a Ready=True seen before the gateway is read
        # cannot be blamed on a value that landed in between.
        ready = rig.condition("shop", "notifications")
        held = timeouts(rig.emulator.gateway())["notifications-http"]
        samples.append((ready.get("status", ""), ready.get("observedGeneration", 0), held))
        return samples[-1] == ("True", 3, 180)

    wait_for("Ready at generation 3", generation_3_ready, timeout=60)
    lies = [s for s in samples if s[:2] == ("True", 3) and s[2] != 180]
    assert not lies, f"Ready=True for generation 3 while the gateway held {lies[0][2]}s"
    assert any(s[0] == "False" and s[1] == 3 for s in samples)  # seen pending, not skipped
    assert rig.route("shop", "notifications")["status"]["gateway"]["backendSettings"] == [
        {"name": "notifications-http", "requestTimeout": 180, "connectionDraining": 0}
    ]
