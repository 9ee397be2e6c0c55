"""Figures for the operator end to end (emulator LRO 1 s, debounce 1 s):

    python benchmarks/operator_figures.py

- PUTs for a burst of 50 routes applied at once to one gateway, and the headroom left in ARM's
  subscription throttling buckets (the emulator's model of them);
- gateway GETs per resync period with 20 routes on one gateway;
- seconds from `kubectl apply` returning to Ready=True, for single routes.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.e2e import route_manifest, running_rig, wait_for


def burst() -> None:
    with tempfile.TemporaryDirectory() as tmp, running_rig(Path(tmp)) as rig:
        rig.emulator.admin("POST", "config", {"throttling": True})
        rig.operator()
        started = time.monotonic()
        rig.apply(*[route_manifest(f"s{i:02d}", idle=f"{10 + i}s") for i in range(50)])
        for i in range(50):
            rig.wait_condition("shop", f"s{i:02d}", "True", "Applied", timeout=120)
        print(
            f"50-route burst: {len(rig.emulator.requests('PUT'))} PUT(s), all Ready after "
            f"{time.monotonic() - started:.1f}s"
        )
        for subscription, buckets in rig.emulator.admin("GET", "throttling").items():
            print(
                f"  ARM buckets of {subscription}: "
                + ", ".join(
                    f"{kind} fewest left {b['lowest']}/{b['burst']:g}, {b['throttled']} throttled"
                    for kind, b in buckets.items()
                )
            )


def resync_gets() -> None:
    with tempfile.TemporaryDirectory() as tmp, running_rig(Path(tmp)) as rig:
        rig.operator("--resync", "2s")
        rig.apply(*[route_manifest(f"s{i:02d}") for i in range(20)])
        for i in range(20):
            rig.wait_condition("shop", f"s{i:02d}", "True", "Applied", timeout=120)
        before, started = len(rig.emulator.requests("GET")), time.monotonic()
        wait_for("ten resync periods", lambda: time.monotonic() - started >= 20, timeout=30)
        gets = len(rig.emulator.requests("GET")) - before
        print(
            f"resync every 2s, 20 routes on one gateway: {gets} GETs in 20s "
            f"= {gets / 10:.1f} per resync period, PUTs {len(rig.emulator.requests('PUT'))}"
        )


def apply_to_ready(samples: int = 5) -> None:
    with tempfile.TemporaryDirectory() as tmp, running_rig(Path(tmp)) as rig:
        rig.operator()
        durations = []
        for i in range(samples):
            started = time.monotonic()
            rig.apply(route_manifest(f"r{i}", idle=f"{50 + 10 * i}s"))  # each one needs a PUT
            rig.wait_condition("shop", f"r{i}", "True", "Applied", timeout=60)
            durations.append(time.monotonic() - started)
        print(
            f"apply -> Ready with a PUT (LRO 1s, debounce 1s): median {statistics.median(durations):.2f}s, "
            f"min {min(durations):.2f}s, max {max(durations):.2f}s over {samples}"
        )


if __name__ == "__main__":
    burst()
    resync_gets()
    apply_to_ready()
