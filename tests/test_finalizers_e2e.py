"""Routes deleted while their gateway cannot be updated hold no one up (issue 24): they keep our
finalizer until one update restores the gateway, and new routes meanwhile get theirs and go Ready
on a gateway that works. On the real API server, the emulator failing the stuck gateway's PUTs."""

import time
from typing import Any

from tests.support.e2e import GATEWAY_ID, Rig, gateway_id, route_manifest, route_ready, wait_for

COUNT = 20
ROUTES = "/apis/sse.appgw.dev/v1alpha1/namespaces/shop/sseroutes"


def routes(rig: Rig) -> dict[str, dict[str, Any]]:
    listing = rig.get(ROUTES) or {}
    return {r["metadata"]["name"]: r for r in listing.get("items") or ()}


def all_ready(rig: Rig, wanted: set[str]) -> bool:
    found = routes(rig)
    return wanted <= found.keys() and all(route_ready(found[name]) for name in wanted)


def test_deletions_waiting_for_a_stuck_gateway_hold_up_no_new_route_and_go_in_one_put(
    rig: Rig,
) -> None:
    operator = rig.operator()
    old = {f"old-{i:02d}" for i in range(COUNT)}
    rig.apply(*(route_manifest(name, idle="100s") for name in sorted(old)))
    wait_for("the first routes Ready", lambda: all_ready(rig, old), timeout=90)
    # The first gateway's updates fail from now on (ARM answering 500, retried each second).
    rig.emulator.admin(
        "POST",
        "faults",
        [
            {
                "method": "PUT",
                "path": "agw-shop-prod",
                "count": 100000,
                "headers": {"Retry-After": "1"},
            }
        ],
    )
    rig.kubectl("delete", "sser", "-n", "shop", "--all", "--wait=false")
    wait_for(
        "a failed pass saying the deleted routes wait for the restore",
        lambda: "(deleted, waiting for the restore)" in operator.output(),
        timeout=60,
    )

    second = gateway_id("agw-shop-second")
    new = {f"new-{i:02d}" for i in range(COUNT)}
    rig.apply(*(route_manifest(name, gateway_id=second, idle="20s") for name in sorted(new)))
    wait_for("the new routes Ready while the deleted ones wait", lambda: all_ready(rig, new), 90)
    assert old <= routes(rig).keys()  # still held: their gateway was never restored

    recovered = time.time()
    rig.emulator.admin("DELETE", "faults")
    wait_for("the deleted routes released", lambda: not old & routes(rig).keys(), timeout=90)
    puts = [
        r
        for r in rig.emulator.requests("PUT", GATEWAY_ID)
        if r["time"] >= recovered and r["status"] < 300
    ]
    assert len(puts) == 1, puts  # one update restored the gateway for all of them


def test_kopfs_diff_base_left_by_an_earlier_version_is_dropped_and_nothing_else(rig: Rig) -> None:
    # A route as an earlier version left it: our finalizer, and kopf's copy of an old spec.
    route = route_manifest("legacy", idle="100s")
    route["metadata"] |= {
        "finalizers": ["sse.appgw.dev/finalizer"],
        "annotations": {
            "sse.appgw.dev/last-handled-configuration": '{"spec": {"idleInterval": "10s"}}',
            "team": "shop",
        },
    }
    rig.apply(route)
    rig.operator()
    wait_for(
        "the stale diff-base dropped",
        lambda: (
            "sse.appgw.dev/last-handled-configuration"
            not in (routes(rig)["legacy"]["metadata"].get("annotations") or {})
        ),
    )
    wait_for("the route Ready", lambda: all_ready(rig, {"legacy"}))
    metadata = routes(rig)["legacy"]["metadata"]
    metadata["annotations"].pop("kubectl.kubernetes.io/last-applied-configuration")
    assert metadata["annotations"] == {"team": "shop"}
    assert metadata["finalizers"] == ["sse.appgw.dev/finalizer"]
