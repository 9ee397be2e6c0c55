"""Leader election on a Lease, against the stand-in API with short timings (the real API server
and two operator processes are in test_operability_e2e.py)."""

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

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


async def test_one_leads_the_other_waits_then_takes_over(kubeconfig: Path) -> None:
    a, b = elector("a", kubeconfig), elector("b", kubeconfig)
    await asyncio.wait_for(a.acquire(), 5)
    holding = asyncio.create_task(a.hold())
    standby = asyncio.create_task(b.acquire())
    await asyncio.sleep(3)  # longer than the Lease lasts: renewals keep it
    assert not standby.done()

    holding.cancel()  # a dies without a word
    loop = asyncio.get_running_loop()
    died = loop.time()
    await asyncio.wait_for(standby, 5)
    # The Lease's duration from its last renewal (at most a retry period before the death).
    assert 1.8 <= loop.time() - died < 2.5
    assert b._lease is not None and b._lease.spec is not None
    assert b._lease.spec.holder_identity == "b" and b._lease.spec.lease_transitions == 1

    # a comes back: b's renewals keep it standing by; a's old holding now finds b's record.
    with pytest.raises(LeadershipLost, match="taken over"):
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
    await asyncio.sleep(0.3)
    assert not holding.done()
    holding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await holding
