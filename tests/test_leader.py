"""Leader election on a Lease, against the stand-in API with short timings (the real API server
and two operator processes are in test_operability_e2e.py)."""

import asyncio
import contextlib
import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from appgw_sse.fence import Fence
from appgw_sse.leader import LeaderElector, LeadershipLost, LeaseSettings
from appgw_sse.sandbox.kube_api import CORE, KubeApi

NAMESPACE = "appgw-sse-system"


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Iterator[Path]:
    with KubeApi(CORE, tmp_path) as api:
        yield api.kubeconfig


def elector(identity: str, kubeconfig: Path) -> LeaderElector:
    settings = LeaseSettings(
        namespace=NAMESPACE, identity=identity, duration=2, renew_deadline=1.2, retry_period=0.1
    )
    return LeaderElector(settings, kubernetes.config.new_client_from_config(str(kubeconfig)))


async def renewals(leader: LeaderElector, enough: Callable[[list[float]], bool]) -> list[float]:
    """The times (monotonic) the renewals `leader` made from now were sent, once `enough` of
    them; fails after 15 s."""
    sent: list[float] = []
    last = leader.fence._renewed_at

    async def observe() -> None:
        nonlocal last
        while not enough(sent):
            await asyncio.sleep(0.01)
            if leader.fence._renewed_at != last:
                last = leader.fence._renewed_at
                assert last is not None
                sent.append(last)

    await asyncio.wait_for(observe(), 15)
    return sent


async def test_one_leads_the_other_waits_then_takes_over(kubeconfig: Path) -> None:
    a, b = elector("a", kubeconfig), elector("b", kubeconfig)
    await asyncio.wait_for(a.acquire(), 5)
    holding = asyncio.create_task(a.hold())
    standby = asyncio.create_task(b.acquire())
    # Renewals over longer than the Lease lasts: without them the standby would have taken over.
    duration = a.settings.duration
    await renewals(a, lambda sent: len(sent) >= 2 and sent[-1] - sent[0] > duration)
    assert not standby.done()

    holding.cancel()  # a dies without a word
    await asyncio.wait_for(standby, 10)
    # Not before the Lease's duration had passed since a's last renewal.
    last_sent = a.fence._renewed_at
    assert last_sent is not None and time.monotonic() - last_sent >= duration
    assert b._lease is not None and b._lease.spec is not None
    assert b._lease.spec.holder_identity == "b" and b._lease.spec.lease_transitions == 1

    # a comes back after longer than its renew deadline: it stops by its own clock at once,
    # before any request (one would find b's record).
    with pytest.raises(LeadershipLost, match="not renewed"):
        await asyncio.wait_for(a.hold(), 5)


async def test_release_hands_over_at_once_and_a_restart_takes_its_own_lease_back(
    kubeconfig: Path,
) -> None:
    a = elector("a", kubeconfig)
    await a.acquire()
    again = elector("a", kubeconfig)  # the same pod's next container
    await asyncio.wait_for(again.acquire(), 0.5)
    await again.release()
    b = elector("b", kubeconfig)
    await asyncio.wait_for(b.acquire(), 0.5)
    holding = asyncio.create_task(b.hold())
    await renewals(b, lambda sent: len(sent) >= 3)  # b holds it: its renewals succeed
    assert not holding.done()
    holding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await holding


# -- no renewal outlives the lease -----------------------------------------------------------


class ScriptedLeaseServer(http.server.ThreadingHTTPServer):
    """An API server serving one Lease that stops answering (accepts, never replies) once
    `hang` is set: a paused or partitioned API server, as the client sees it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _LeaseHandler)
        self.hang, self.closing = threading.Event(), threading.Event()
        self.lease: dict[str, Any] | None = None
        self.version = 0


class _LeaseHandler(http.server.BaseHTTPRequestHandler):
    server: ScriptedLeaseServer

    def log_message(self, *args: Any) -> None:
        return None

    def _answer(self) -> None:
        if self.server.hang.is_set():
            self.server.closing.wait(30)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if self.command in ("POST", "PUT"):
            self.server.version += 1
            lease = json.loads(self.rfile.read(length))
            lease["metadata"]["resourceVersion"] = str(self.server.version)
            self.server.lease = lease
            body: dict[str, Any] = lease
        else:
            body = {"kind": "LeaseList", "metadata": {}, "items": [self.server.lease or {}]}
            if self.server.lease is None:
                body["items"] = []
        data = json.dumps(body).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _answer


# A 3 s Lease renewed every 0.3 s, to be given up 2 s after the last renewal sent.
SHORT_LEASE = LeaseSettings(
    namespace=NAMESPACE, identity="a", duration=3, renew_deadline=2.0, retry_period=0.3
)


@pytest.fixture
async def held() -> AsyncIterator[tuple[ScriptedLeaseServer, LeaderElector, asyncio.Task[None]]]:
    """A scripted API server, and a leader holding SHORT_LEASE on it."""
    server = ScriptedLeaseServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        configuration = kubernetes.client.Configuration(
            host=f"http://127.0.0.1:{server.server_port}"
        )
        a = LeaderElector(SHORT_LEASE, kubernetes.client.ApiClient(configuration))
        await asyncio.wait_for(a.acquire(), 5)
        holding = asyncio.create_task(a.hold())
        yield server, a, holding
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
            await holding
    finally:
        server.closing.set()
        server.shutdown()


async def test_no_renewal_outlives_the_renew_deadline_when_the_api_server_hangs(
    held: tuple[ScriptedLeaseServer, LeaderElector, asyncio.Task[None]],
) -> None:
    server, a, holding = held
    await renewals(a, lambda sent: len(sent) >= 3)
    assert not holding.done()
    server.hang.set()  # every request from now on hangs
    with pytest.raises(LeadershipLost, match="not renewed for 2s"):
        await asyncio.wait_for(holding, 10)
    stopped = time.monotonic()
    last_sent = a.fence._renewed_at
    assert last_sent is not None
    # Stopped at the renew deadline, before the 3 s Lease ends (urllib3's retries of a hung
    # request took 4 s at the old 1 s timeout).
    assert 2.0 <= stopped - last_sent < SHORT_LEASE.duration
    with pytest.raises(LeadershipLost):
        a.fence.check()  # and no writer may write any more
    # The renewal in flight ended on its own timeout, at the deadline: the renewal thread is
    # free before the Lease ends, so no request of it renews a Lease someone else holds.
    loop = asyncio.get_running_loop()
    left = SHORT_LEASE.duration - (time.monotonic() - last_sent)
    await asyncio.wait_for(loop.run_in_executor(a._holder, lambda: None), left)


async def test_an_event_loop_busy_past_the_renew_deadline_keeps_the_lease(
    held: tuple[ScriptedLeaseServer, LeaderElector, asyncio.Task[None]],
) -> None:
    _, a, holding = held
    await renewals(a, lambda sent: len(sent) >= 1)  # the renewal thread runs
    time.sleep(3)  # noqa: ASYNC251  (the loop blocked, as by a slow start, past the deadline)
    a.fence.check()  # renewed meanwhile, by the renewal thread
    assert not holding.done()


def test_the_fence_closes_at_the_renew_deadline_measured_from_the_renewal_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr("appgw_sse.fence.time.monotonic", lambda: now[0])
    fence = Fence("a", renew_deadline=10)
    with pytest.raises(LeadershipLost, match="never acquired"):
        fence.check()
    fence.renewed(sent_at=95.0, epoch=3)
    fence.check()
    assert (fence.remaining(), fence.epoch) == (5.0, 3)
    now[0] = 105.0  # e.g. a process resumed after SIGSTOP: closed without any renewal tried
    with pytest.raises(LeadershipLost, match=r"not renewed for 10\.0s"):
        fence.check()
    fence.renewed(sent_at=105.0, epoch=3)
    fence.lose("lease was taken over")
    fence.renewed(sent_at=106.0, epoch=3)  # a late answer never reopens it
    with pytest.raises(LeadershipLost, match="taken over"):
        fence.check()
