"""Nothing lost, no stale writer (issue 21): the faults a cluster produces, on the real API server
and the emulator's fault injection: a route deleted during a pass, a restart, a paused leader."""

import datetime
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

from appgw_sse.emulator.server import token_fingerprint
from tests.support.cluster import require_real
from tests.support.e2e import Operator, Rig, gateway_id, route_manifest, wait_for
from tests.test_operability_e2e import lease_holder

API = ("api-http",)
STOPPED = re.compile(r"^(\S+) ERROR .*not renewed for 10s: stopping all work now", re.M)


def timeouts(document: dict[str, Any]) -> dict[str, int]:
    return {
        s["name"]: s["properties"]["requestTimeout"]
        for s in document["properties"]["backendHttpSettingsCollection"]
    }


def buffering(document: dict[str, Any]) -> bool:
    return bool(document["properties"]["globalConfiguration"]["enableResponseBuffering"])


def api_timeout(rig: Rig) -> int:
    return timeouts(rig.emulator.gateway())["api-http"]


def ledger_exists(rig: Rig) -> bool:
    from appgw_sse.adapters.kube import ledger_name
    from tests.support.e2e import GATEWAY_ID, OPERATOR_NAMESPACE

    path = f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/configmaps/{ledger_name(GATEWAY_ID)}"
    return rig.get(path) is not None


def fault_taken(rig: Rig) -> bool:
    """Whether every injected fault was used up (a held request has arrived)."""
    return all(f["count"] == 0 for f in rig.emulator.admin("GET", "faults"))


def test_a_route_deleted_mid_pass_keeps_its_finalizer_until_restored_even_across_a_restart(
    rig: Rig,
) -> None:
    operator = rig.operator()
    original = rig.emulator.gateway()
    rig.apply(route_manifest("api", settings=API, idle="100s"))
    rig.wait_condition("shop", "api", "True", "Applied")
    assert api_timeout(rig) == 150
    # The next PUT is held 4 s (then lands); the route changes to 110 s, and is deleted while
    # that PUT is in flight; every PUT after it fails: made to fail before the deletion, so
    # that no restore can slip in however long kubectl takes on a busy machine.
    rig.emulator.admin("POST", "faults", [{"method": "PUT", "status": 0, "delay": 4}])
    rig.apply(route_manifest("api", settings=API, idle="110s"))
    wait_for("the PUT of 110 s held", lambda: fault_taken(rig))
    rig.emulator.admin("POST", "faults", [{"method": "PUT", "status": 500, "count": 1000}])
    rig.kubectl("delete", "sser", "-n", "shop", "api", "--wait=false")
    wait_for("the held PUT to land", lambda: api_timeout(rig) == 165)
    # The pass that applied 110 s never releases the route; the next one fails to restore it
    # and says that the release waits, and why.
    waiting = wait_for(
        "the route saying its release waits",
        lambda: "finalizer is released once" in rig.condition("shop", "api").get("message", ""),
        timeout=60,
    )
    assert rig.route("shop", "api") is not None, waiting
    assert "routes shop/api (deleted, waiting for the restore)" in operator.output()
    assert "routes )" not in operator.output()

    operator.stop(signal.SIGKILL)
    rig.emulator.admin("DELETE", "faults")
    rig.operator()
    wait_for("the route released", lambda: rig.route("shop", "api") is None, timeout=60)
    restored = rig.emulator.gateway()
    assert timeouts(restored) == timeouts(original)  # api-http back to 20
    assert buffering(restored) is True
    assert not ledger_exists(rig)


def test_a_ledger_left_without_routes_is_restored_after_a_restart(rig: Rig) -> None:
    operator = rig.operator()
    rig.apply(route_manifest("api", settings=API, idle="100s"))
    rig.wait_condition("shop", "api", "True", "Applied")
    operator.stop(signal.SIGKILL)
    # Someone removes the finalizer by hand while no operator runs: the route is gone, its
    # values and the ledger stay.
    rig.kubectl(
        "patch", "sser", "-n", "shop", "api", "--type=merge", "-p", '{"metadata":{"finalizers":[]}}'
    )
    rig.kubectl("delete", "sser", "-n", "shop", "api", "--wait=false")
    wait_for("the route gone", lambda: rig.route("shop", "api") is None)
    assert api_timeout(rig) == 150 and ledger_exists(rig)

    restarted = rig.operator()
    wait_for("the gateway restored", lambda: api_timeout(rig) == 20, timeout=30)
    assert buffering(rig.emulator.gateway()) is True
    wait_for("the ledger deleted", lambda: not ledger_exists(rig))
    assert "has a ledger but no route: a pass restores it" in restarted.output()


def replica(rig: Rig, name: str, kubeconfig: Path) -> tuple[Operator, str]:
    """An operator replica with a bearer token of its own: the emulator's request log tells
    which replica sent each request (by the token's fingerprint)."""
    token = f"token-of-{name}"
    token_file = rig.workdir / f"{name}.token"
    token_file.write_text(token)
    operator = rig.operator(
        "--arm-token-file",
        str(token_file),
        env={"POD_NAME": name, "KUBECONFIG": str(kubeconfig)},
    )
    return operator, token_fingerprint(token)


def test_a_deposed_leader_never_writes_after_it_resumes(rig: Rig) -> None:
    kubeconfigs = {"a": rig.cluster.operator_kubeconfig, "b": rig.cluster.replica_kubeconfig}
    replicas = {"a": replica(rig, "a", kubeconfigs["a"])}
    wait_for("a to lead", lambda: lease_holder(rig) == "a")
    replicas["b"] = replica(rig, "b", kubeconfigs["b"])
    leader, standby = "a", "b"
    for round_ in range(2):
        paused_round(rig, f"r{round_}", replicas[leader], replicas[standby][0], standby)
        # The deposed one comes back as the standby of the next round.
        replicas[leader] = replica(rig, leader, kubeconfigs[leader])
        leader, standby = standby, leader


def paused_round(
    rig: Rig, name: str, leading: tuple[Operator, str], standby: Operator, standby_name: str
) -> None:
    """The leader is paused in the middle of a pass for a new route (its ledger read, its GET
    held); the route is deleted; the standby takes over and releases it (nothing to restore);
    the old leader resumes with its plan for the route, writes nothing and exits."""
    wait_for("the standby", lambda: "standing by: lease" in standby.output())
    rig.emulator.admin(
        "POST", "faults", [{"method": "GET", "status": 0, "delay": 3, "path": "agw-shop-prod"}]
    )
    rig.apply(route_manifest(name, settings=API, idle="100s"))
    wait_for("the leader's GET held", lambda: fault_taken(rig), timeout=30)
    paused, paused_token = leading
    paused.process.send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    rig.kubectl("delete", "sser", "-n", "shop", name, "--wait=false")
    wait_for(f"{standby_name} to lead", lambda: lease_holder(rig) == standby_name, timeout=60)
    wait_for("the route released", lambda: rig.route("shop", name) is None, timeout=60)
    paused.process.send_signal(signal.SIGCONT)
    assert paused.process.wait(timeout=30) == 1  # stops, to restart as a standby
    assert "stopping all work now" in paused.output()
    stale = [
        r
        for r in rig.emulator.admin("GET", "requests")
        if r["token"] == paused_token and r["method"] != "GET" and r["time"] > stopped_at
    ]
    assert stale == [], json.dumps(stale)
    # No route: the gateway holds its originals and no ledger claims anything.
    assert api_timeout(rig) == 20 and buffering(rig.emulator.gateway()) is True
    assert not ledger_exists(rig)


def test_a_gateway_granted_to_one_namespace_refuses_routes_of_another(rig: Rig) -> None:
    rule = "partners=/subscriptions/*/resourceGroups/rg-finance/*"
    rig.operator("--allowed-gateway", rule)
    finance = gateway_id("agw-finance", "rg-finance")
    rig.apply(
        route_manifest("feed", namespace="partners", gateway_id=finance),
        route_manifest("grab", namespace="shop", gateway_id=finance, idle="600s"),
    )
    rig.wait_condition("partners", "feed", "True", "Applied")
    refused = rig.wait_condition("shop", "grab", "False", "GatewayNotAllowed", type_="Accepted")
    assert f"--allowed-gateway {rule}" in refused["message"]
    assert "routes in namespace shop may not use it" in refused["message"]
    document = rig.emulator.gateway(finance)
    assert timeouts(document)["notifications-http"] == 68  # the partners' need, not 600 s


def test_no_renewal_outlives_the_lease_when_the_api_server_is_paused(rig: Rig) -> None:
    require_real("pausing the API server under a leader")
    operator = rig.operator()
    wait_for("the operator to lead", lambda: lease_holder(rig) == "appgw-sse-operator-0")
    wait_for("the operator working", lambda: "started: writing gateways" in operator.output())
    apiserver = rig.cluster.pids[-1]
    os.kill(apiserver, signal.SIGSTOP)  # every request now hangs, the renewals' too
    paused = datetime.datetime.now(tz=datetime.UTC)
    try:
        line = wait_for(
            "the leader to stop working",
            lambda: STOPPED.search(operator.output()),
            timeout=40,
        )
    finally:
        os.kill(apiserver, signal.SIGCONT)
    stopped = datetime.datetime.fromisoformat(line.group(1).replace("Z", "+00:00"))
    print(f"API server paused: work stopped {(stopped - paused).total_seconds():.1f}s later")
    # Work stops 10 s after the last renewal that succeeded was sent (at most a retry period
    # before the pause), before the 15 s Lease could pass to anyone else; with urllib3's
    # retries one renewal alone could hang 22 s.
    assert (stopped - paused).total_seconds() < 15.0, stopped - paused
    assert operator.process.wait(timeout=60) == 1


def test_deleting_an_invalid_route_restores_its_last_valid_values_without_a_4xx(rig: Rig) -> None:
    rig.operator()
    rig.apply(route_manifest("api", settings=API, idle="100s"))
    rig.wait_condition("shop", "api", "True", "Applied")
    # Only a CEL rule forbids 24h: without the rules (a 1.20 server drops them; an old CRD has
    # none) the operator refuses it.
    rig.install_crd_without_cel_rules()
    rig.apply(route_manifest("api", settings=API, idle="24h"))
    rig.wait_condition("shop", "api", "False", "InvalidSpec")
    rig.kubectl("delete", "sser", "-n", "shop", "api", "--wait=false")
    wait_for("the route released", lambda: rig.route("shop", "api") is None, timeout=60)
    assert api_timeout(rig) == 20
    # The rig's teardown fails on any 4xx the API server answered the operator (a 422 when a
    # status write raced kopf's finalizer patch).
