"""Backend pods: the SSE header contract as annotations on every pod a route selects.

Pods and Services arrive as watch events (`adapters.watch`: one list and watch for the whole
cluster or per watched namespace, never a list per route event) into per-namespace caches that
keep only what is read. Each dirty namespace is settled after a debounce: one
merge-patch per pod whose annotations differ from what it should carry, none otherwise; only our
own annotation keys are ever written or removed.
"""

import asyncio
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from appgw_sse import metrics
from appgw_sse.core import backends as bk
from appgw_sse.core import conditions as cond
from appgw_sse.fence import LeadershipLost
from appgw_sse.models.status import BackendsStatus
from appgw_sse.ports import PodsPort
from appgw_sse.probe import probe_pod
from appgw_sse.routebook import RouteBook, RouteChange, RouteRecord
from appgw_sse.workers import DebouncedWorkers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeSettings:
    enabled: bool = True
    interval: float = 60.0
    deadline: float = 3.0  # per pod: connect, headers and first bytes
    concurrency: int = 10


@dataclass(slots=True)
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
        # Interned: thousands of pods repeat the same few label keys and values.
        labels={sys.intern(k): sys.intern(v) for k, v in (meta.get("labels") or {}).items()},
        # Only ours: the operator watches every pod, and the rest is never read.
        annotations={
            k: v for k, v in (meta.get("annotations") or {}).items() if k in bk.OWNED_ANNOTATIONS
        },
        ip=status.get("podIP"),
        ready=conditions.get("Ready") == "True",
        ports={
            port["name"]: int(port["containerPort"])
            for container in (body.get("spec") or {}).get("containers") or []
            for port in container.get("ports") or []
            if port.get("name") and port.get("containerPort")
        },
    )


class PodReconciler:
    def __init__(
        self,
        book: RouteBook,
        kube: PodsPort,
        debounce: float = 2.0,
        probe: ProbeSettings | None = None,
    ) -> None:
        self.book, self.kube, self.probe = book, kube, probe or ProbeSettings()
        self.pods: dict[str, dict[str, PodView]] = {}  # namespace -> name -> view
        self.services: dict[str, dict[str, dict[str, str] | None]] = {}  # -> their selectors
        self._workers = DebouncedWorkers(self.reconcile, debounce, "pods in", error_delay=10)
        self._released: dict[str, asyncio.Event] = {}
        self._probers: dict[str, asyncio.Task[None]] = {}
        # Whether the pod and service caches hold the first listing in full: until then a
        # namespace's pass would count backends from part of its pods (and write that status).
        self.listed: Callable[[], bool] = lambda: True
        book.listen(self.route_changed)

    # -- events ---------------------------------------------------------------------------

    def route_changed(self, change: RouteChange) -> None:
        if change.forgotten:
            self._released.pop(change.record.key, None)
        elif change.requirements_changed:
            self.mark(change.record.namespace)

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
        if (
            old is None
            or old.labels != view.labels
            or (old.ip, old.ready) != (view.ip, view.ready)
            or old.annotations != view.annotations
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

    def _selected(self, record: RouteRecord) -> tuple[set[str], str | None]:
        """Pods the route's backend selects, and why there are none when the Service is missing."""
        assert record.spec is not None and record.spec.backend is not None
        backend = record.spec.backend
        pods = self.pods.get(record.namespace, {})
        if backend.service_name is not None:
            services = self.services.get(record.namespace, {})
            if backend.service_name not in services:
                return set(), f"Service {backend.service_name} not found in {record.namespace}"
            selector = services[backend.service_name]
            return {n for n, p in pods.items() if bk.service_selects(selector, p.labels)}, None
        labels = backend.selector
        assert labels is not None  # the spec sets exactly one of serviceName and selector
        return {n for n, p in pods.items() if bk.selects(labels, p.labels)}, None

    async def reconcile(self, namespace: str) -> float | None:
        if not self.book.listed() or not self.listed():
            return 1.0
        records = self.book.in_namespace(namespace)
        serving = [r for r in records if not r.deleting and r.serves_pods]
        selections = {r.key: self._selected(r) for r in serving}
        by_pod: dict[str, list[bk.BackendRoute]] = {}
        for record in serving:
            assert record.spec is not None
            for pod in selections[record.key][0]:
                by_pod.setdefault(pod, []).append(
                    bk.BackendRoute(
                        key=record.key,
                        name=record.name,
                        headers=record.spec.headers,
                        idle_seconds=record.spec.idle_seconds,
                    )
                )
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
            and any(_port(r) is not None for r in serving)
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
        return None

    # -- probe --------------------------------------------------------------------------

    async def _prober(self, namespace: str) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            while True:
                try:
                    await self.probe_namespace(session, namespace)
                except LeadershipLost:
                    return  # the process stops and stands by again
                except Exception:
                    log.exception("namespace %s: probing failed", namespace)
                await asyncio.sleep(self.probe.interval)

    def _probe_targets(
        self, namespace: str
    ) -> dict[str, tuple[str, dict[str, str], list[RouteRecord]]]:
        """Pod -> (URL, expected headers, routes) for ready pods of routes that set a port."""
        targets: dict[str, tuple[str, dict[str, str], list[RouteRecord]]] = {}
        for record in sorted(self.book.in_namespace(namespace), key=lambda r: r.key):
            wanted = _port(record)
            if record.deleting or wanted is None:
                continue
            assert record.spec is not None and record.spec.backend is not None
            for name in sorted(self._selected(record)[0]):
                view = self.pods[namespace][name]
                port = wanted if isinstance(wanted, int) else view.ports.get(wanted)
                if not (view.ready and view.ip and port):
                    continue
                host = f"[{view.ip}]" if ":" in view.ip else view.ip
                _, _, routes = targets.setdefault(
                    name,
                    (
                        f"http://{host}:{port}{record.spec.backend.path}",
                        dict(record.spec.headers),
                        [],
                    ),
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
            metrics.POD_PATCHES.inc()
            view.annotations[bk.CONFORMANCE_ANNOTATION] = verdict
            self.mark(namespace)
            if verdict != bk.CONFORMANT and previous in (None, bk.CONFORMANT):
                for record in routes:
                    await self.kube.post_event(
                        record.ref, "Warning", cond.Reason.NON_CONFORMANT, f"pod {name}: {verdict}"
                    )

    # -- status ---------------------------------------------------------------------------

    async def _report(
        self, record: RouteRecord, selection: tuple[set[str], str | None], conflict: str | None
    ) -> None:
        pods, missing_service = selection
        views = self.pods.get(record.namespace, {})
        annotated = sum(
            1
            for p in pods
            if record.name in views[p].annotations.get(bk.ROUTES_ANNOTATION, "").split(",")
        )
        updates = [
            cond.backends_annotated(
                len(pods), annotated, missing_service=missing_service, header_conflict=conflict
            )
        ]
        conformant = None
        if self.probe.enabled and _port(record) is not None:
            verdicts = {
                p: views[p].annotations.get(bk.CONFORMANCE_ANNOTATION) for p in sorted(pods)
            }
            updates.append(cond.backends_conformant(verdicts, bk.CONFORMANT))
            conformant = sum(1 for v in verdicts.values() if v == bk.CONFORMANT)
        await self.book.write_status(
            record,
            updates,
            backends=BackendsStatus(selected=len(pods), annotated=annotated, conformant=conformant),
        )


def _port(record: RouteRecord) -> int | str | None:
    """The port the route's backend pods are probed on (None: not probed)."""
    backend = record.spec.backend if record.spec is not None else None
    return backend.port if backend is not None else None
