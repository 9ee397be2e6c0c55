"""Backend pods: the SSE header contract as annotations on every pod a route selects.

Pods and Services arrive as watch events into per-namespace caches (one watch for the whole
cluster, never a list per route event). Each dirty namespace is settled after a debounce: one
merge-patch per pod whose annotations differ from what it should carry, none otherwise; only our
own annotation keys are ever written or removed.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from appgw_sse.core import backends as bk
from appgw_sse.core.conditions import BACKENDS_ANNOTATED
from appgw_sse.models.status import BackendsStatus, Condition

log = logging.getLogger(__name__)


class PodsPort(Protocol):
    async def patch_pod_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None: ...


@dataclass
class PodView:
    labels: dict[str, str]
    annotations: dict[str, str]
    ip: str | None
    ready: bool


def _view(body: Mapping[str, Any]) -> PodView:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return PodView(
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        ip=status.get("podIP"),
        ready=conditions.get("Ready") == "True",
    )


StatusWriter = Callable[[Any, list[Condition], BackendsStatus], Awaitable[None]]


@dataclass
class PodReconciler:
    routes: Mapping[str, Any]  # the Reconciler's RouteRecords by key
    kube: PodsPort
    write_status: StatusWriter
    debounce: float = 2.0
    pods: dict[str, dict[str, PodView]] = field(default_factory=dict)
    services: dict[str, dict[str, dict[str, str] | None]] = field(default_factory=dict)
    patches: int = 0
    _dirty: dict[str, asyncio.Event] = field(default_factory=dict)
    _workers: dict[str, "asyncio.Task[None]"] = field(default_factory=dict)
    _released: dict[str, asyncio.Event] = field(default_factory=dict)

    # -- events ---------------------------------------------------------------------------

    def observe_pod(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        pods = self.pods.setdefault(namespace, {})
        if event_type == "DELETED":
            pods.pop(name, None)
            self.mark(namespace)
            return
        view, old = _view(body), pods.get(name)
        pods[name] = view
        owned = {k: v for k, v in view.annotations.items() if k in bk.OWNED_ANNOTATIONS}
        if (
            old is None
            or old.labels != view.labels
            or (old.ip, old.ready) != (view.ip, view.ready)
            or owned != {k: v for k, v in old.annotations.items() if k in bk.OWNED_ANNOTATIONS}
        ):
            self.mark(namespace)

    def observe_service(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        services = self.services.setdefault(meta["namespace"], {})
        selector = None if event_type == "DELETED" else (body.get("spec") or {}).get("selector")
        if event_type == "DELETED":
            services.pop(meta["name"], None)
        else:
            services[meta["name"]] = selector
        self.mark(meta["namespace"])

    def mark(self, namespace: str) -> None:
        self._dirty.setdefault(namespace, asyncio.Event()).set()
        if namespace not in self._workers:
            self._workers[namespace] = asyncio.create_task(
                self._worker(namespace), name=f"pods {namespace}"
            )

    async def released(self, namespace: str, name: str) -> None:
        """Return once no pod carries this route's annotations any more."""
        self.mark(namespace)
        await self._released.setdefault(f"{namespace}/{name}", asyncio.Event()).wait()

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    # -- work -----------------------------------------------------------------------------

    async def _worker(self, namespace: str) -> None:
        dirty = self._dirty[namespace]
        while True:
            await dirty.wait()
            await asyncio.sleep(self.debounce)
            dirty.clear()
            try:
                await self.reconcile(namespace)
            except Exception:
                log.exception("namespace %s: annotating pods failed; retrying", namespace)
                await asyncio.sleep(10)
                dirty.set()

    def _selected(self, record: Any) -> tuple[set[str], str | None]:
        """Pods the route's backend selects, and why there are none when the Service is missing."""
        backend = record.spec.backend
        pods = self.pods.get(record.namespace, {})
        if backend.service_name is not None:
            services = self.services.get(record.namespace, {})
            if backend.service_name not in services:
                return set(), f"Service {backend.service_name} not found in {record.namespace}"
            selector = services[backend.service_name]
            return {n for n, p in pods.items() if bk.service_selects(selector, p.labels)}, None
        return {n for n, p in pods.items() if bk.selects(backend.selector, p.labels)}, None

    async def reconcile(self, namespace: str) -> None:
        records = [r for r in self.routes.values() if r.namespace == namespace]
        serving = [r for r in records if not r.deleting and r.spec is not None and r.spec.backend]
        selections = {r.key: self._selected(r) for r in serving}
        by_pod: dict[str, list[bk.BackendRoute]] = {}
        for record in serving:
            for pod in selections[record.key][0]:
                by_pod.setdefault(pod, []).append(bk.BackendRoute(
                    key=record.key, name=record.name, headers=record.spec.headers,
                    idle_seconds=record.spec.idle_seconds,
                ))  # fmt: skip
        conflicts: dict[str, str] = {}
        for name, view in sorted(self.pods.get(namespace, {}).items()):
            contract = bk.pod_contract(by_pod[name]) if name in by_pod else None
            if contract is not None:
                conflicts.update(contract.conflicts)
            patch = bk.annotation_patch(
                view.annotations, contract.annotations if contract else None
            )
            if patch is None:
                continue
            await self.kube.patch_pod_annotations(namespace, name, patch)
            self.patches += 1
            for key, value in patch.items():  # until the watch confirms it
                if value is None:
                    view.annotations.pop(key, None)
                else:
                    view.annotations[key] = value
        for record in serving:
            await self._report(record, selections[record.key], conflicts.get(record.key))
        carried = {
            route
            for view in self.pods.get(namespace, {}).values()
            for route in view.annotations.get(bk.ROUTES_ANNOTATION, "").split(",")
            if route
        }
        for record in records:
            if record.deleting and record.name not in carried:
                self._released.setdefault(record.key, asyncio.Event()).set()

    async def _report(
        self, record: Any, selection: tuple[set[str], str | None], conflict: str | None
    ) -> None:
        pods, missing_service = selection
        views = self.pods.get(record.namespace, {})
        annotated = sum(
            1
            for p in pods
            if record.name in views[p].annotations.get(bk.ROUTES_ANNOTATION, "").split(",")
        )
        if missing_service:
            condition = Condition(type=BACKENDS_ANNOTATED, status="False", reason="ServiceNotFound",
                                  message=missing_service)  # fmt: skip
        elif conflict:
            condition = Condition(type=BACKENDS_ANNOTATED, status="False", reason="HeaderConflict",
                                  message=conflict)  # fmt: skip
        elif not pods:
            condition = Condition(type=BACKENDS_ANNOTATED, status="True", reason="NoPodsSelected",
                                  message="no pods match spec.backend yet")  # fmt: skip
        else:
            condition = Condition(type=BACKENDS_ANNOTATED, status="True", reason="Annotated",
                                  message=f"{annotated} pod(s) carry the SSE contract")  # fmt: skip
        await self.write_status(
            record, [condition], BackendsStatus(selected=len(pods), annotated=annotated)
        )
