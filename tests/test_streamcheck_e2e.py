"""spec.streamCheck end to end: the operator listens through the emulator's data plane to the
demo's backend and says Live, then Buffered when someone turns response buffering back on
behind its back, then Live again once it has corrected the gateway, on a real API server.

Time is compressed: --stream-check-interval 2s replaces the route's interval (at least 1m in the
CRD); idleInterval 5s makes each check listen 10 s, as the backend is silent for 4 s at a time.
"""

import itertools
import re
import time
from typing import Any

from appgw_sse.sandbox.demo import PATH, POOL, sample_backend
from tests.support.e2e import Rig, route_manifest

INTERVAL, LISTEN = 2.0, 10.0
VERDICTS = {"Live", "Buffered", "Cut", "Compressed", "Unreachable", "NoResponse", "HttpError"}


def buffering_on(document: dict[str, Any]) -> None:
    document["properties"]["globalConfiguration"]["enableResponseBuffering"] = True


def counted(metrics: str, verdict: str) -> float:
    found = re.search(
        rf'^appgw_sse_stream_check_total{{verdict="{verdict}"}} (\S+)$', metrics, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_stream_check_says_buffered_then_live_once_the_operator_fixed_it(rig: Rig) -> None:
    with sample_backend() as backend:
        frontends = rig.emulator.admin("POST", "backends", {POOL: backend})["frontends"]
        url = frontends["agw-shop-prod"] + PATH
        operator = rig.operator("--stream-check-interval", f"{INTERVAL:g}s")
        rig.apply(route_manifest("notifications", idle="5s", streamCheck={"url": url}))
        rig.wait_condition("shop", "notifications", "True", "Applied")
        live = rig.wait_condition(
            "shop", "notifications", "True", "Live", type_="StreamVerified", timeout=60
        )
        assert f"listened 10.0 s to {url}" in live["message"]

        # Someone turns response buffering back on: the next whole listen hears the bursts.
        rig.emulator.third_party_put(buffering_on)
        changed = time.monotonic()
        buffered = rig.wait_condition(
            "shop",
            "notifications",
            "False",
            "Buffered",
            type_="StreamVerified",
            timeout=2 * LISTEN + INTERVAL + 30,
        )
        took = time.monotonic() - changed
        assert "bursts of 8" in buffered["message"], buffered["message"]
        assert rig.condition("shop", "notifications")["status"] == "True"  # advisory only

        # A new generation has the operator plan its gateway again: it corrects the drift, and
        # the stream check (restarted for the new spec) hears the stream live again.
        rig.apply(
            route_manifest("notifications", idle="5s", streamCheck={"url": url, "listen": "9s"})
        )
        rig.wait_condition(
            "shop", "notifications", "True", "Live", type_="StreamVerified", timeout=90
        )
        global_config = rig.emulator.gateway()["properties"]["globalConfiguration"]
        assert global_config["enableResponseBuffering"] is False

        events = sorted(
            (e for e in rig.events("shop") if e["reason"] in VERDICTS),
            key=lambda e: e["firstTimestamp"],
        )
        reasons = [e["reason"] for e in events]
        assert reasons[0] == "Live" and reasons[-1] == "Live" and "Buffered" in reasons, reasons
        assert all(a != b for a, b in itertools.pairwise(reasons)), reasons  # changes only
        _, metrics = operator.http_get("/metrics")
        assert counted(metrics, "Live") >= 2 and counted(metrics, "Buffered") >= 1
        first_events = re.search(
            r"^appgw_sse_stream_check_first_event_seconds_count (\S+)$", metrics, re.M
        )
        assert first_events is not None and float(first_events.group(1)) >= 3
    print(f"Buffered reported {took:.1f} s after buffering was turned on")
