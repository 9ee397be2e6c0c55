"""The sandbox end to end: `appgw-sse demo` as a user runs it, its before/after verdicts, on the
real API server (when this machine has one) and on the embedded stand-in a fresh machine gets;
on a busy machine, when a component fails, and what its plot shows."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appgw_sse.doctor import analyse
from appgw_sse.sandbox import apiserver
from appgw_sse.sandbox.demo import DemoResult, lanes, plot
from tests.support.cluster import require_real
from tests.support.observations import observation

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def port_8080_taken() -> Iterator[None]:
    """Port 8080 (`--health-port`'s default) held by another socket, as on a busy machine."""
    with socket.socket() as holder:
        with contextlib.suppress(OSError):  # already taken by someone else: just as good
            holder.bind(("0.0.0.0", 8080))
            holder.listen()
        yield


def demo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appgw_sse", "demo", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, **env),
        cwd=REPO,
    )


@pytest.mark.floor
@pytest.mark.parametrize("kube", ["real", "standin"])
def test_demo_shows_the_stream_go_from_buffered_and_cut_to_live(kube: str) -> None:
    if kube == "real":
        require_real("the demo on the real API server")
    with port_8080_taken():
        result = demo(APPGW_SSE_KUBE=kube)
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


def test_a_failing_operator_is_named_with_the_end_of_its_log() -> None:
    result = demo(APPGW_SSE_KUBE="standin", APPGW_SSE_LOG_LEVEL="chatty")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    out = result.stdout
    assert "demo failed: the operator exited with status 1" in out, out
    kept = re.search(r"the logs are kept in (\S+)", out)
    assert kept is not None, out
    try:
        log = Path(kept[1]) / "operator.log"
        assert f"last lines of the operator's log ({log}):" in out
        # The operator's own words for why, shown and kept.
        assert "APPGW_SSE_LOG_LEVEL='chatty'" in out and "APPGW_SSE_LOG_LEVEL" in log.read_text()
    finally:
        shutil.rmtree(kept[1], ignore_errors=True)


def test_without_the_real_api_server_it_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APPGW_SSE_KUBE", raising=False)
    monkeypatch.delenv("APPGW_SSE_START_APISERVER", raising=False)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", "")  # the floor: the etcd on PATH is needed
    checkout = tmp_path / "checkout"
    script = tmp_path / "shared" / "k8s" / "start-apiserver"
    assert apiserver.missing([checkout]) == f"no {script}"
    script.parent.mkdir(parents=True)
    script.touch()
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "etcd" else f"/bin/{tool}")
    assert apiserver.missing([checkout]) == f"{script} needs etcd, not on PATH"
    monkeypatch.setattr(shutil, "which", lambda tool: f"/bin/{tool}")
    assert apiserver.missing([checkout]) is None
    assert apiserver.start_script([checkout]) == script
    monkeypatch.setenv("APPGW_SSE_KUBE", "standin")
    assert apiserver.missing([checkout]) == "APPGW_SSE_KUBE=standin"


def demo_result() -> DemoResult:
    """The demo's two runs as they go: eight events held and released at once, then a cut;
    then an event every 0.5 s with the backend's 4 s silence in between."""
    spell = [0.5 * n for n in range(8)]  # sent 0.0 .. 3.5
    before = observation([3.5] * 8, spell, end="cut", ended_at=6.5)
    sent_after = spell + [7.5 + 0.5 * n for n in range(5)]
    after = observation(sent_after, sent_after)
    return DemoResult(analyse(before), analyse(after))


def test_the_plot_shows_bursts_every_sent_event_the_silences_and_the_cut() -> None:
    before, after = lanes(demo_result())
    assert (before.label, after.label) == ("before: buffered, then cut", "after: live")
    assert before.bursts == [(3.5, 8)]  # one burst of 8, drawn as 8 events
    assert len(after.bursts) == 13 and {size for _, size in after.bursts} == {1}
    # Every event's send time, the ones not delayed at all (delay 0) included.
    assert len(before.sent) == 8 and len(after.sent) == 13
    assert before.sent[-1] == pytest.approx(3.5) and after.sent[0] == pytest.approx(0.0)
    assert (before.cut_at, after.cut_at) == (6.5, None)
    assert [tuple(round(t, 2) for t in s) for s in before.silences] == [(3.5, 6.5)]
    assert [tuple(round(t, 2) for t in s) for s in after.silences] == [(3.5, 7.5)]


def test_the_plot_labels_what_it_draws(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    figure = plot(demo_result(), tmp_path / "demo.png")
    assert (tmp_path / "demo.png").stat().st_size > 0
    (axis,) = figure.axes
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert legend == ["reached the client", "sent by the backend", "connection cut"]
    texts = [text.get_text() for text in axis.texts]
    assert "8 at once" in texts
    assert "backend silent 3.0 s" in texts and "backend silent 4.0 s" in texts
    assert [label.get_text() for label in axis.get_yticklabels()] == [
        "before: buffered, then cut",
        "after: live",
    ]
