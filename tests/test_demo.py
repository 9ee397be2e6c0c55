"""The sandbox end to end: `appgw-sse demo` as a user runs it, its before/after verdicts, on the
real API server (when this machine has one) and on the embedded stand-in a fresh machine gets."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import real_server


@pytest.mark.floor
@pytest.mark.parametrize("kube", ["real", "standin"])
def test_demo_shows_the_stream_go_from_buffered_and_cut_to_live(kube: str) -> None:
    if kube == "real" and real_server() is None:
        pytest.skip("no real API server on this machine")
    result = subprocess.run(
        [sys.executable, "-m", "appgw_sse", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, APPGW_SSE_KUBE=kube),
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    expected = "the real kube-apiserver" if kube == "real" else "the embedded Kubernetes API"
    assert f"Kubernetes: {expected}" in result.stdout
    verdicts = dict(
        line.split(":", 1)
        for line in result.stdout.splitlines()
        if line.startswith(("before:", "after:"))
    )
    assert "buffered (events arrive in bursts of" in verdicts["before"]
    assert "cut after" in verdicts["before"] and "requestTimeout of 3 s" in verdicts["before"]
    assert verdicts["after"].strip() == "streams live"
    assert "Ready after" in result.stdout and "(1 PUT)" in result.stdout
    assert "requestTimeout 9s" in result.stdout
