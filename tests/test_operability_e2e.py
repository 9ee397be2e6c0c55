"""Operating the operator end to end: its log as a story (text and JSON), /healthz and /metrics
while it works, two replicas with a failover, and SIGTERM in the middle of a gateway update."""

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from appgw_sse.logs import JSON_KEYS
from tests.support.cluster import OPERATOR_NAMESPACE, replica_user
from tests.support.e2e import (
    GATEWAY_ID,
    Operator,
    Rig,
    route_manifest,
    running_rig,
    wait_for,
)

LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/leases/appgw-sse-operator"
PUT_LINE = re.compile(r"gateway agw-shop-prod: PUT (.+) for routes (.+) applied in [\d.]+s$")


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def scrape(operator: Operator) -> str:
    status, body = operator.http_get("/metrics")
    assert status == 200
    return body


def token(operator: Operator) -> str:
    return Path(operator.args[operator.args.index("--arm-token-file") + 1]).read_text().strip()


def lease_holder(rig: Rig) -> str | None:
    lease = rig.get(LEASE)
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


def tell_a_story(rig: Rig, operator: Operator) -> str:
    """Create, change and delete a route; stop the operator; its log."""
    rig.apply(route_manifest("notifications"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    rig.apply(route_manifest("notifications", idle="100s"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    rig.kubectl("delete", "sser", "-n", "shop", "notifications", "--wait=false")
    wait_for("route gone", lambda: rig.route("shop", "notifications") is None)
    operator.stop()
    assert operator.process.returncode == 0
    return operator.output()


def test_the_text_log_tells_what_the_operator_did(rig: Rig) -> None:
    operator = rig.operator()
    log = tell_a_story(rig, operator)
    story = [
        r"INFO    appgw_sse\.health: serving /healthz and /metrics on port \d+",
        r"INFO    appgw_sse\.leader: lease appgw-sse-operator acquired by appgw-sse-operator-0",
        r"INFO    appgw_sse\.handlers\.routes: started: writing gateways matching /subscriptions/",
        r"gateway agw-shop-prod: applying .*requestTimeout 30 -> 68 for routes shop/notifications",
        r"gateway agw-shop-prod: PUT .*requestTimeout 30 -> 68 for routes shop/notifications "
        r"applied in",
        r"gateway agw-shop-prod: PUT .*requestTimeout 68 -> 150 for routes shop/notifications",
        r"gateway agw-shop-prod: PUT .*requestTimeout 150 -> 30 for routes none \(restore\)",
        r"route shop/notifications deleted: its gateway is settled without it",
        r"SIGTERM received: stopping",
        r"lease appgw-sse-operator released",
    ]
    position = 0
    for step in story:
        found = re.compile(step).search(log, position)
        assert found, f"the log does not go on with {step!r}:\n{log}"
        position = found.end()
    assert len(re.findall(r": PUT .* applied in", log)) == len(rig.emulator.requests("PUT")) == 3
    assert "Handler 'route_event' succeeded" not in log  # kopf's per-event chatter is DEBUG
    assert token(operator) not in log


def test_the_json_log_carries_gateway_and_routes(rig: Rig) -> None:
    operator = rig.operator("--log-format", "json", "--log-level", "debug")
    lines = [json.loads(line) for line in tell_a_story(rig, operator).splitlines()]
    assert all(
        set(line) <= set(JSON_KEYS) and line.keys() >= {"time", "level", "message"}
        for line in lines
    )
    puts = [line for line in lines if PUT_LINE.search(str(line["message"]))]
    assert len(puts) == 3
    first = puts[0]
    assert first["level"] == "info" and first["logger"] == "appgw_sse.adapters.azure_gateway"
    assert first["gateway"] == GATEWAY_ID and first["routes"] == ["shop/notifications"]
    assert "requestTimeout 30 -> 68" in str(first["message"])
    # Everything said inside a gateway pass names the gateway, down to the SDK and client lines.
    for line in lines:
        if str(line["message"]).startswith("gateway agw-shop-prod"):
            assert line["gateway"] == GATEWAY_ID and "routes" in line, line
    route_lines = [line for line in lines if line.get("route") == "shop/notifications"]
    # kopf watches the route: its raw-event handler takes each event in, and returns at once.
    assert any(
        str(line["logger"]).startswith("kopf.")
        and "Handler 'route_event' succeeded" in line["message"]
        for line in route_lines
    )
    assert any(line["logger"] == "appgw_sse.finalizers" for line in route_lines)  # released
    # Even at DEBUG, where the libraries say the most, no credential is written.
    assert not any(token(operator) in json.dumps(line) for line in lines)


def test_healthz_and_metrics_during_a_twenty_route_burst(rig: Rig) -> None:
    operator = rig.operator("--resync", "2s")

    def watching() -> dict[str, object] | None:
        status, body = operator.http_get("/healthz")
        report: dict[str, object] = json.loads(body)
        return report if status == 200 and report.get("watching") else None

    assert wait_for("a healthy leader watching SseRoutes", watching) == {
        "status": "ok",
        "role": "leader",
        "identity": "appgw-sse-operator-0",
        "running": True,
        "watching": True,
    }
    before = scrape(operator)
    assert metric(before, "appgw_sse_leader") == 1
    rig.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "shop/web"}]},
        }
    )
    rig.apply(
        *[
            route_manifest(
                f"stream-{i:02d}",
                idle=f"{10 + i}s",
                **({"backend": {"selector": {"matchLabels": {"app": "web"}}}} if i == 0 else {}),
            )
            for i in range(20)
        ]
    )
    scrapes = [scrape(operator)]  # while the operator works
    ready = wait_for(
        "20 routes Ready in /metrics",
        lambda: (
            metric(text := scrape(operator), "appgw_sse_routes", condition="Ready", status="True")
            == 20
            and text
        ),
        timeout=60,
    )
    scrapes.append(ready)
    after = scrapes[-1]
    assert metric(after, "appgw_sse_routes", condition="Accepted", status="True") == 20

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    puts = len(rig.emulator.requests("PUT"))
    assert 1 <= moved("appgw_sse_gateway_puts_total", gateway=GATEWAY_ID, result="applied") == puts
    assert 1 <= puts <= 2
    assert moved("appgw_sse_gateway_puts_total", result="failed") == 0
    assert moved("appgw_sse_gateway_update_seconds_count") == puts
    assert moved("appgw_sse_arm_requests_total", method="PUT") == puts
    assert moved("appgw_sse_arm_requests_total", method="GET") >= len(
        rig.emulator.requests("GET")
    )  # every GET of the gateway, and the long-running operation's polls besides
    assert moved("appgw_sse_reconcile_duration_seconds_count") >= 1
    assert moved("appgw_sse_pod_patches_total") >= 1
    assert metric(after, "appgw_sse_drift_conflicts", gateway=GATEWAY_ID) == 0
    assert metric(after, "process_resident_memory_bytes") > 0
    print(after)

    def revert(document: dict[str, Any]) -> None:
        document["properties"]["backendHttpSettingsCollection"][0]["properties"][
            "requestTimeout"
        ] = 30

    rig.emulator.third_party_put(revert)  # drift: put back at the next resync
    corrected = wait_for(
        "the correction counted",
        lambda: (
            metric(
                text := scrape(operator), "appgw_sse_drift_corrections_total", gateway=GATEWAY_ID
            )
            == 1
            and text
        ),
        timeout=30,
    )
    assert metric(corrected, "appgw_sse_gateway_puts_total", result="applied") == puts + 1


def test_two_replicas_one_works_the_other_takes_over_when_it_dies(rig: Rig) -> None:
    first = rig.operator(env={"POD_NAME": "replica-a"})
    wait_for("replica-a to lead", lambda: lease_holder(rig) == "replica-a")
    second = rig.operator(
        env={"POD_NAME": "replica-b", "KUBECONFIG": str(rig.cluster.replica_kubeconfig)}
    )
    wait_for("replica-b standing by", lambda: "standing by: lease" in second.output())
    rig.apply(route_manifest("notifications"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    status, body = second.http_get("/healthz")
    assert status == 200 and json.loads(body)["role"] == "standby"
    assert metric(scrape(second), "appgw_sse_leader") == 0
    assert metric(scrape(second), "appgw_sse_routes") == 0  # no watch, no routes known

    first.stop(signal.SIGKILL)
    killed = time.monotonic()
    rig.apply(route_manifest("notifications", idle="100s"))  # a change after the kill
    wait_for("replica-b to take the lease", lambda: lease_holder(rig) == "replica-b", timeout=40)
    took_over = time.monotonic() - killed
    rig.wait_condition("shop", "notifications", "True", "Applied", timeout=40)
    converged = time.monotonic() - killed
    print(f"failover: lease taken {took_over:.1f}s after SIGKILL, change applied {converged:.1f}s")
    assert took_over < 25  # the 15 s Lease, seen expire within two 2 s retry periods
    # Converged once replica-b leads: its kopf start, the 1 s debounce and the 1 s update, well
    # within another Lease duration (what the failover costs after the Lease is taken).
    assert took_over <= converged < took_over + 15
    document = rig.emulator.gateway()
    timeouts = {
        s["name"]: s["properties"]["requestTimeout"]
        for s in document["properties"]["backendHttpSettingsCollection"]
    }
    assert timeouts["notifications-http"] == 150
    assert len(rig.emulator.requests("PUT")) == 2  # one per change: none twice
    assert "leading" in second.output()

    if rig.cluster.real:  # the audit log tells the replicas apart by identity
        standby = [r for r in rig.cluster.operator_requests() if r.user == replica_user()]
        first_write = next(
            i for i, r in enumerate(standby) if r.verb not in ("get", "list", "watch")
        )
        assert {(r.verb, r.resource) for r in standby[:first_write]} == {("list", "leases")}
        assert (standby[first_write].verb, standby[first_write].resource) == ("update", "leases")
        assert {r.resource for r in standby[first_write:] if r.verb == "patch"} >= {"sseroutes"}


def test_a_leader_that_loses_its_lease_stops_working_at_once(tmp_path: Path) -> None:
    # Not the `rig` fixture: the operator's last renewal is answered 409 Conflict, by design.
    with running_rig(tmp_path) as rig:
        operator = rig.operator()
        wait_for("the operator to lead", lambda: lease_holder(rig) == "appgw-sse-operator-0")
        rig.cluster.call(
            "PATCH",
            f"{LEASE}",
            {"spec": {"holderIdentity": "intruder"}},
            content_type="application/merge-patch+json",
        )
        operator.process.wait(timeout=15)
        assert operator.process.returncode == 1
        assert "was taken over: stopping all work now" in operator.output()
        assert lease_holder(rig) == "intruder"  # never released: it is not ours any more


def test_sigterm_during_an_update_keeps_the_intent_and_exits_promptly(rig: Rig) -> None:
    rig.emulator.admin("POST", "config", {"lroSeconds": 20})
    operator = rig.operator()
    rig.apply(route_manifest("notifications"))
    wait_for("the PUT in flight", lambda: rig.emulator.requests("PUT"))
    signalled = time.monotonic()
    operator.stop(signal.SIGTERM)
    exited = time.monotonic() - signalled
    assert exited < 10, f"took {exited:.1f}s to exit"  # the chart allows 30s
    assert operator.process.returncode == 0
    assert "intent" in rig.ledger()["data"]  # not confirmed: the update is still running
    assert rig.emulator.gateway()["properties"]["provisioningState"] == "Updating"
    assert re.search(r"PUT .* for routes shop/notifications interrupted after", operator.output())
    assert lease_holder(rig) is None  # handed over at once

    rig.operator()  # the next leader waits for that update, then finds nothing left to do
    rig.wait_condition("shop", "notifications", "True", "Applied", timeout=60)
    assert len(rig.emulator.requests("PUT")) == 1
    assert "intent" not in rig.ledger()["data"]
