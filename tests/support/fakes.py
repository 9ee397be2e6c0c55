"""In-memory fakes of the ports the route book and both workers declare."""

import asyncio
import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

from appgw_sse.core import agic
from appgw_sse.core import document as doc
from appgw_sse.core.conditions import Reason
from appgw_sse.core.contract import FINALIZER
from appgw_sse.core.ledger import Ledger
from appgw_sse.core.planner import Plan
from appgw_sse.ports import (
    GatewayError,
    IngressesUnavailable,
    Snapshot,
    TerminalGatewayError,
)
from tests.support.gateways import gateway_id


class FakeGateways:
    """One gateway; apply() can be held open like a long-running PUT."""

    def __init__(self, document: dict[str, Any] | None) -> None:
        self.document = document
        self.hold: asyncio.Event | None = None
        self.failure: GatewayError | None = None  # every PUT fails with it while set
        self.in_flight = asyncio.Event()
        self.puts = 0
        self.reads = 0

    def timeout(self, setting: str = "a") -> int:
        assert self.document is not None
        return doc.backend_setting_timeouts(self.document)[setting]

    def set_timeout(self, value: int, setting: str = "a") -> None:
        """Someone else changes the gateway."""
        assert self.document is not None
        self.document = doc.with_request_timeouts(self.document, {setting: value})

    async def wait_until_settled(self, gateway_id: str) -> Snapshot:
        self.reads += 1
        if self.document is None:
            raise TerminalGatewayError(Reason.GATEWAY_NOT_FOUND, "ResourceNotFound", "gone")
        return Snapshot(document=copy.deepcopy(self.document), etag="e")

    async def apply(self, plan: Plan, snapshot: Snapshot | None = None) -> dict[str, Any]:
        assert self.document is not None and plan.holds_in(self.document)
        self.puts += 1
        if self.failure is not None:
            raise self.failure
        self.in_flight.set()
        if self.hold is not None:
            await self.hold.wait()
        self.in_flight.clear()
        self.document = plan.apply_to(self.document)
        return copy.deepcopy(self.document)

    async def close(self) -> None:
        return None


class FakeKube:
    """Route status, Events, ledgers, finalizers and pod annotations in memory; `changed` is
    notified on every status write, finalizer write and pod patch."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.written: list[tuple[str, dict[str, Any]]] = []  # (route name, status)
        self.events: list[tuple[str, str, str]] = []  # (route, reason, message)
        self.ledgers: dict[str, tuple[Ledger, Ledger | None]] = {}
        self.pod_patches: list[tuple[str, dict[str, str | None]]] = []  # (pod, patch)
        self.ingresses: dict[str, list[agic.Ingress]] = {}  # by namespace
        self.ingress_patches: list[tuple[str, dict[str, str | None]]] = []  # (Ingress, patch)
        self.ingress_ledgers: dict[str, agic.IngressLedger] = {}
        self.ingress_failure: str | None = None  # listing Ingresses fails with it while set
        # (route, finalizers, resourceVersion) per finalizer write; the versions in `stale`
        # answer as the API server does when the route changed since (False).
        self.finalizer_writes: list[tuple[str, list[str], str]] = []
        self.annotations_dropped: list[tuple[str, tuple[str, ...]]] = []
        self.stale: set[str] = set()
        self.changed = asyncio.Condition()

    async def patch_route_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        async with self.changed:
            self.statuses.append(copy.deepcopy(status))
            self.written.append((name, copy.deepcopy(status)))
            self.changed.notify_all()

    async def post_event(
        self, route: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        self.events.append((route["name"], reason, message))

    async def load_ledger(self, gateway_id: str) -> tuple[Ledger, Ledger | None]:
        return self.ledgers.get(gateway_id.lower(), (Ledger(gateway_id=gateway_id), None))

    async def save_ledger(self, confirmed: Ledger, pending: Ledger | None = None) -> None:
        self.ledgers[confirmed.gateway_id.lower()] = (confirmed, pending)

    async def delete_ledger(self, gateway_id: str) -> None:
        self.ledgers.pop(gateway_id.lower(), None)

    async def patch_route_finalizers(
        self,
        namespace: str,
        name: str,
        finalizers: list[str],
        resource_version: str,
        drop_annotations: Sequence[str] = (),
    ) -> bool:
        async with self.changed:
            self.finalizer_writes.append((name, list(finalizers), resource_version))
            if drop_annotations:
                self.annotations_dropped.append((name, tuple(drop_annotations)))
            self.changed.notify_all()
        return resource_version not in self.stale

    async def patch_pod_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None:
        async with self.changed:
            self.pod_patches.append((name, dict(patch)))
            self.changed.notify_all()

    async def list_agic_ingresses(self, namespace: str) -> list[agic.Ingress]:
        if self.ingress_failure is not None:
            raise IngressesUnavailable(self.ingress_failure)
        return list(self.ingresses.get(namespace, []))

    async def patch_ingress_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None:
        self.ingress_patches.append((name, dict(patch)))
        found = self.ingresses.get(namespace, [])
        for index, ingress in enumerate(found):
            if ingress.name == name:
                annotations = {**ingress.annotations, **patch}
                found[index] = dataclasses.replace(
                    ingress, annotations={k: v for k, v in annotations.items() if v is not None}
                )

    async def load_ingress_ledger(self, namespace: str) -> agic.IngressLedger:
        return self.ingress_ledgers.get(namespace, agic.IngressLedger(namespace=namespace))

    async def save_ingress_ledger(self, ledger: agic.IngressLedger) -> None:
        self.ingress_ledgers[ledger.namespace] = ledger

    def last_status(self, route: str) -> dict[str, Any]:
        return next(status for name, status in reversed(self.written) if name == route)

    async def wait_until(self, holds: Any) -> None:
        """Until `holds()` is true after some status write, finalizer write or pod patch."""
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(holds)


def route_body(
    name: str = "r",
    generation: int = 1,
    idle: str = "45s",
    settings: tuple[str, ...] = ("a",),
    metadata: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """An SseRoute in namespace ns as the route watch hands it over (our finalizer added)."""
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": f"uid-{name}",
            "generation": generation,
            "finalizers": [FINALIZER],
        }
        | (metadata or {}),
        "spec": {
            "gateway": {"id": gateway_id(), "backendSettings": list(settings)},
            "idleInterval": idle,
        }
        | spec,
    }


def deleting(body: dict[str, Any]) -> dict[str, Any]:
    deleted = copy.deepcopy(body)
    deleted["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return deleted


def condition(status: dict[str, Any], type_: str = "Ready") -> tuple[str, str, int]:
    found = next(c for c in status["conditions"] if c["type"] == type_)
    return found["status"], found["reason"], found["observedGeneration"]
