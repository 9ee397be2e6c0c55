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

import aiohttp

from appgw_sse import metrics
from appgw_sse.core import backends as bk
from appgw_sse.core.conditions import BACKENDS_ANNOTATED, BACKENDS_CONFORMANT
from appgw_sse.models.status import BackendsStatus, Condition
from appgw_sse.probe import probe_pod
from appgw_sse.workers import DebouncedWorkers

log = logging.getLogger(__name__)


class PodsPort(Protocol):
    async def patch_pod_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None: ...

    async def post_event(
        self, route: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None: ...


@dataclass(frozen=True)
class ProbeSettings:
    enabled: bool = True
    interval: float = 60.0
    deadline: float = 3.0  # per pod: connect, headers and first bytes
    concurrency: int = 10


@dataclass
class PodView:
    labels: dict[str, str]
    annotations: dict[str, str]
    ip: str | None
    ready: bool
    ports: dict[str, int] = field(default_factory=dict)  # named container ports


def _view(body: Mapping[str, Any]) -> PodView:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return PodView(
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        ip=status.get("podIP"),
        ready=conditions.get("Ready") == "True",
        ports={
            port["name"]: int(port["containerPort"])
            for container in (body.get("spec") or {}).get("containers") or []
            for port in container.get("ports") or []
            if port.get("name") and port.get("containerPort")
        },
    )


StatusWriter = Callable[[Any, list[Condition], BackendsStatus], Awaitable[None]]


@dataclass
class PodReconciler:
    routes: Mapping[str, Any]  # the Reconciler's RouteRecords by key
    kube: PodsPort
    write_status: StatusWriter
    debounce: float = 2.0
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    pods: dict[str, dict[str, PodView]] = field(default_factory=dict)
    services: dict[str, dict[str, dict[str, str] | None]] = field(default_factory=dict)
    patches: int = 0
    _released: dict[str, asyncio.Event] = field(default_factory=dict)
    _probers: dict[str, "asyncio.Task[None]"] = field(default_factory=dict)

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
        self._workers.mark(namespace)

    async def released(self, namespace: str, name: str) -> None:
        """Return once no pod carries this route's annotations any more."""
        self.mark(namespace)
        await self._released.setdefault(f"{namespace}/{name}", asyncio.Event()).wait()

    async def close(self) -> None:
        await self._workers.close()
        for task in self._probers.values():
            task.cancel()
        await asyncio.gather(*self._probers.values(), return_exceptions=True)

    # -- work -----------------------------------------------------------------------------

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

    def __post_init__(self) -> None:
        self._workers = DebouncedWorkers(self.reconcile, self.debounce, "pods in", error_delay=10)

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
            metrics.POD_PATCHES.inc()
            for key, value in patch.items():  # until the watch confirms it
                if value is None:
                    view.annotations.pop(key, None)
                else:
                    view.annotations[key] = value
        for record in serving:
            await self._report(record, selections[record.key], conflicts.get(record.key))
        if (
            self.probe.enabled
            and namespace not in self._probers
            and any(r.spec.backend.port is not None for r in serving)
        ):
            self._probers[namespace] = asyncio.create_task(
                self._prober(namespace), name=f"probe {namespace}"
            )
        carried = {
            route
            for view in self.pods.get(namespace, {}).values()
            for route in view.annotations.get(bk.ROUTES_ANNOTATION, "").split(",")
            if route
        }
        for record in records:
            if record.deleting and record.name not in carried:
                self._released.setdefault(record.key, asyncio.Event()).set()

    # -- probe --------------------------------------------------------------------------

    async def _prober(self, namespace: str) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            while True:
                try:
                    await self.probe_namespace(session, namespace)
                except Exception:
                    log.exception("namespace %s: probing failed", namespace)
                await asyncio.sleep(self.probe.interval)

    def _probe_targets(self, namespace: str) -> dict[str, tuple[str, dict[str, str], list[Any]]]:
        """Pod -> (URL, expected headers, routes) for ready pods of routes that set a port."""
        targets: dict[str, tuple[str, dict[str, str], list[Any]]] = {}
        for record in sorted(self.routes.values(), key=lambda r: r.key):
            backend = record.spec.backend if record.spec and not record.deleting else None
            if record.namespace != namespace or backend is None or backend.port is None:
                continue
            for name in sorted(self._selected(record)[0]):
                view = self.pods[namespace][name]
                port = (
                    backend.port if isinstance(backend.port, int) else view.ports.get(backend.port)
                )
                if not (view.ready and view.ip and port):
                    continue
                host = f"[{view.ip}]" if ":" in view.ip else view.ip
                _, _, routes = targets.setdefault(
                    name, (f"http://{host}:{port}{backend.path}", dict(record.spec.headers), [])
                )
                routes.append(record)
        return targets

    async def probe_namespace(self, session: aiohttp.ClientSession, namespace: str) -> None:
        targets = self._probe_targets(namespace)
        limit = asyncio.Semaphore(self.probe.concurrency)

        async def one(url: str, expected: dict[str, str]) -> str:
            async with limit:
                verdict: str = await probe_pod(session, url, expected, self.probe.deadline)
                return verdict

        verdicts = await asyncio.gather(*(one(url, exp) for url, exp, _ in targets.values()))
        for (name, (_, _, routes)), verdict in zip(targets.items(), verdicts, strict=True):
            view = self.pods[namespace].get(name)
            previous = view.annotations.get(bk.CONFORMANCE_ANNOTATION) if view else None
            if view is None or previous == verdict:
                continue
            await self.kube.patch_pod_annotations(
                namespace, name, {bk.CONFORMANCE_ANNOTATION: verdict}
            )
            self.patches += 1
            metrics.POD_PATCHES.inc()
            view.annotations[bk.CONFORMANCE_ANNOTATION] = verdict
            self.mark(namespace)
            if verdict != bk.CONFORMANT and previous in (None, bk.CONFORMANT):
                for record in routes:
                    await self.kube.post_event(
                        record.ref, "Warning", "NonConformant", f"pod {name}: {verdict}"
                    )

    # -- status ---------------------------------------------------------------------------

    def _conformance_condition(
        self, record: Any, pods: set[str]
    ) -> tuple[list[Condition], int | None]:
        if not (self.probe.enabled and record.spec.backend.port is not None):
            return [], None
        views = self.pods.get(record.namespace, {})
        verdicts = {p: views[p].annotations.get(bk.CONFORMANCE_ANNOTATION) for p in sorted(pods)}
        conformant = sum(1 for v in verdicts.values() if v == bk.CONFORMANT)
        failing = [f"{p}: {v}" for p, v in verdicts.items() if v not in (None, bk.CONFORMANT)]
        if failing:
            status, reason, message = "False", "NonConformant", "; ".join(failing)
        elif None in verdicts.values() or not verdicts:
            status, reason, message = "Unknown", "Probing", "not every pod has been probed yet"
        else:
            status, reason, message = (
                "True",
                "Conformant",
                f"{conformant} pod(s) send the SSE headers",
            )
        condition = Condition(
            type=BACKENDS_CONFORMANT, status=status, reason=reason, message=message
        )
        return [condition], conformant

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
        probed, conformant = self._conformance_condition(record, pods)
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
            record,
            [condition, *probed],
            BackendsStatus(selected=len(pods), annotated=annotated, conformant=conformant),
        )
