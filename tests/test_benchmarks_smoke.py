"""The benchmarks keep working: each one's small size runs end to end and meets its targets."""

import os
import subprocess
import sys

import pytest

from tests.support.cluster import REPO, needs_real, real_server

pytestmark = pytest.mark.skipif(
    real_server() is None, reason=needs_real("the benchmarks' smoke run")
)


def smoke(benchmark: str) -> subprocess.CompletedProcess[str]:
    """benchmarks/BENCHMARK --smoke, with this checkout's operator on its path."""
    path = (str(REPO / "operator"), os.environ.get("PYTHONPATH"))
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / benchmark), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p)),
    )


def test_scale_benchmark_smoke_meets_its_targets() -> None:
    result = smoke("scale.py")
    assert "| figure | target | measured |" in result.stdout, result.stderr[-3000:]
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def test_streams_benchmark_smoke_carries_streams_through_every_phase_in_both_columns() -> None:
    result = smoke("streams.py")
    table = result.stdout
    assert "| --debounce 2s (default) | --debounce 0s | ratio |" in table, result.stderr[-3000:]
    for phase in ("GitOps sync", "single changes a minute apart", "deletions at once"):
        assert phase in table, table
    assert result.returncode == 0, table + result.stderr[-3000:]
