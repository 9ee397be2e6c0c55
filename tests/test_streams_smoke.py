"""benchmarks/streams.py keeps working: its small size carries live streams through every phase
of the workload, in both columns, and meets its targets."""

import os
import subprocess
import sys

import pytest

from tests.support.cluster import REPO, real_server

pytestmark = pytest.mark.skipif(
    real_server() is None, reason="needs the real kube-apiserver (../shared/k8s)"
)


def test_streams_benchmark_smoke_meets_its_targets() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "streams.py"), "--smoke"],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(REPO / "operator"), os.environ.get("PYTHONPATH")) if p
        )),
    )  # fmt: skip
    table = result.stdout
    assert "| --debounce 2s (default) | --debounce 0s | ratio |" in table, result.stderr[-3000:]
    for phase in ("GitOps sync", "single changes a minute apart", "deletions at once"):
        assert phase in table, table
    assert result.returncode == 0, table + result.stderr[-3000:]
