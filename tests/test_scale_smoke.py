"""benchmarks/scale.py keeps working: its small size runs end to end and meets every target."""

import os
import subprocess
import sys

import pytest

from tests.support.cluster import REPO, real_server

pytestmark = pytest.mark.skipif(
    real_server() is None, reason="needs the real kube-apiserver (../shared/k8s)"
)


def test_scale_benchmark_smoke_meets_its_targets() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "scale.py"), "--smoke"],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(REPO / "operator"), os.environ.get("PYTHONPATH")) if p
        )),
    )  # fmt: skip
    assert "| figure | target | measured |" in result.stdout, result.stderr[-3000:]
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
