"""Ledger writes fenced on leadership (the stand-in API; the real API server and two operator
processes are in test_nothing_lost_e2e.py): a deposed holder's intent write fails."""

import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from appgw_sse.adapters.kube import Kube
from appgw_sse.core.ledger import Ledger
from appgw_sse.fence import Fence, LeadershipLost
from appgw_sse.leader import LEASE_NAME
from appgw_sse.sandbox.kube_api import CORE, KubeApi
from tests.support.gateways import gateway_id

NAMESPACE = "appgw-sse-system"
GID = gateway_id()


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with KubeApi(CORE, tmp_path) as api:
        path = str(api.kubeconfig)
        kubernetes.config.load_kube_config(path)
        monkeypatch.setattr(
            "appgw_sse.adapters.kube.load_config",
            lambda: kubernetes.config.load_kube_config(path),
        )
        yield api.kubeconfig


def leader(identity: str, epoch: int) -> Kube:
    # A renew deadline no test run outlasts: these tests are about holdings, not the clock.
    fence = Fence(identity, renew_deadline=3600)
    fence.renewed(time.monotonic(), epoch)
    return Kube(NAMESPACE, fence, LEASE_NAME)


def set_lease(holder: str, transitions: int) -> None:
    api = kubernetes.client.CoordinationV1Api()
    lease = {
        "metadata": {"name": LEASE_NAME, "namespace": NAMESPACE},
        "spec": {"holderIdentity": holder, "leaseTransitions": transitions},
    }
    try:
        api.create_namespaced_lease(NAMESPACE, lease)
    except kubernetes.client.exceptions.ApiException:
        current = api.read_namespaced_lease(LEASE_NAME, NAMESPACE)
        lease["metadata"]["resourceVersion"] = current.metadata.resource_version
        api.replace_namespaced_lease(LEASE_NAME, NAMESPACE, lease)


async def test_a_ledger_written_by_a_later_holder_refuses_the_earlier_ones_write(
    kubeconfig: Path,
) -> None:
    old, new = leader("a", epoch=0), leader("b", epoch=1)
    set_lease("a", 0)
    await old.load_ledger(GID)
    set_lease("b", 1)  # b takes over, and writes the ledger
    intent = Ledger(gateway_id=GID, resource_guid="g")
    await new.load_ledger(GID)
    await new.save_ledger(Ledger(gateway_id=GID, resource_guid="g"), pending=intent)
    await old.load_ledger(GID)  # a, still running on a clock it believes, reads b's ledger
    with pytest.raises(LeadershipLost, match="written by a later leader"):
        await old.save_ledger(Ledger(gateway_id=GID))
    assert (await new.load_ledger(GID))[1] == intent  # b's intent stands
    with pytest.raises(LeadershipLost):
        old.fence.check()  # and a writes nothing more


async def test_a_recreated_lease_that_still_names_the_writer_lets_it_write(
    kubeconfig: Path,
) -> None:
    set_lease("b", 3)
    await leader("b", epoch=3).save_ledger(Ledger(gateway_id=GID, resource_guid="g"))
    set_lease("c", 0)  # the Lease was deleted and made again: its count starts over
    again = leader("c", epoch=0)
    await again.load_ledger(GID)
    await again.save_ledger(Ledger(gateway_id=GID, resource_guid="h"))
    assert (await again.load_ledger(GID))[0].resource_guid == "h"


async def test_no_ledger_write_once_the_renew_deadline_has_passed(kubeconfig: Path) -> None:
    fence = Fence("a", renew_deadline=10)
    fence.renewed(time.monotonic() - 11, 0)  # e.g. resumed after SIGSTOP
    kube = Kube(NAMESPACE, fence, LEASE_NAME)
    with pytest.raises(LeadershipLost, match="not renewed"):
        await kube.save_ledger(Ledger(gateway_id=GID))
    assert await kube.load_ledger(GID) == (Ledger(gateway_id=GID), None)


async def test_no_pod_ingress_or_route_status_write_once_the_renew_deadline_has_passed(
    kubeconfig: Path,
) -> None:
    # AGIC turns Ingress annotations into gateway writes; pod annotations and route status are
    # read by everyone else as the operator's word: a resumed, deposed leader writes none.
    core = kubernetes.client.CoreV1Api()
    pod = {"metadata": {"name": "web", "annotations": {"sse.appgw.dev/route": "a"}}}
    core.create_namespaced_pod("shop", {**pod, "spec": {"containers": [{"name": "c"}]}})
    fence = Fence("a", renew_deadline=10)
    fence.renewed(time.monotonic() - 11, 0)
    kube = Kube(NAMESPACE, fence, LEASE_NAME)
    writes = [
        kube.patch_pod_annotations("shop", "web", {"sse.appgw.dev/route": "b"}),
        kube.patch_ingress_annotations("shop", "web", {"appgw.ingress.kubernetes.io/x": "1"}),
        kube.patch_route_status("shop", "api", {"observedGeneration": 1}),
    ]
    for write in writes:
        with pytest.raises(LeadershipLost, match="not renewed"):
            await write
    assert core.read_namespaced_pod("web", "shop").metadata.annotations == {
        "sse.appgw.dev/route": "a"
    }
