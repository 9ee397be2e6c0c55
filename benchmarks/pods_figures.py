"""Figures for backend pods against the local Kubernetes API (operator as a process):

    python benchmarks/pods_figures.py [--pods 1000]

- seconds from `kubectl apply` of a route to every selected pod annotated, and PATCHes per pod;
- PATCHes when the route changes what pods carry (idleInterval), and when nothing changes.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.e2e import route_manifest, running_rig, wait_for


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    count = parser.parse_args().pods
    with tempfile.TemporaryDirectory() as tmp, running_rig(Path(tmp)) as rig:
        pods = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"web-{i:04d}", "namespace": "shop", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "web"}]},
            }
            for i in range(count)
        ]
        rig.kubectl(
            "create",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}),
        )
        rig.operator("--no-probe")

        def patches() -> int:
            return sum(
                1
                for r in rig.cluster.operator_requests()
                if r.verb == "patch" and r.resource == "pods"
            )

        def annotated() -> bool:
            route = rig.route("shop", "events") or {}
            backends = (route.get("status") or {}).get("backends") or {}
            return backends.get("annotated") == count and backends.get("selected") == count

        started = time.monotonic()
        rig.apply(route_manifest("events", backend={"selector": {"matchLabels": {"app": "web"}}}))
        wait_for(f"{count} pods annotated", annotated, timeout=600)
        elapsed, first = time.monotonic() - started, patches()
        print(
            f"{count} pods annotated in {elapsed:.1f}s after kubectl apply: {first} PATCHes "
            f"({first / count:.2f} per pod)"
        )

        rig.apply(
            route_manifest(
                "events", idle="30s", backend={"selector": {"matchLabels": {"app": "web"}}}
            )
        )
        wait_for("idle-interval updated", lambda: patches() >= first + count, timeout=600)
        time.sleep(3)  # a settling window for this benchmark's own count, not a synchronisation
        print(f"route change (idleInterval): {patches() - first} PATCHes for {count} pods")
        before = patches()
        rig.kubectl("label", "sser", "-n", "shop", "events", "touched=yes")
        time.sleep(3)
        print(f"metadata-only change of the route: {patches() - before} PATCHes")


if __name__ == "__main__":
    main()
