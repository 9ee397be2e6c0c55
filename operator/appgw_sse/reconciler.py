"""The gateway reconciler: route events mark gateways dirty; one worker per gateway coalesces a
burst, reads the gateway once, plans, and PUTs at most once. Gateways run in parallel, each one
strictly serially, because every PUT to a gateway can cut its live streams.
"""

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from appgw_sse import logs, metrics
from appgw_sse.adapters.azure_gateway import ArmSettings, Snapshot
from appgw_sse.adapters.errors import GatewayError, TerminalGatewayError, TransientGatewayError
from appgw_sse.core import conditions as cond
from appgw_sse.core.contract import FINALIZER
from appgw_sse.core.document import gateway_name, response_buffering_enabled
from appgw_sse.core.drift import DriftTracker
from appgw_sse.core.ledger import Ledger, recover, recreated
from appgw_sse.core.planner import Plan, Reason, RouteIntent, RouteOutcome, plan_gateway
from appgw_sse.core.policy import gateway_allowed
from appgw_sse.models.route import SpecError, SseRoute, SseRouteSpec, parse_spec
from appgw_sse.models.status import (
    BackendSettingStatus,
    BackendsStatus,
    Condition,
    GatewayStatus,
    SseRouteStatus,
)
from appgw_sse.workers import DebouncedWorkers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorConfig:
    allowed_gateways: tuple[str, ...]
    namespace: str = "appgw-sse-system"
    debounce: float = 2.0
    resync: float = 300.0
    dry_run: bool = False
    probe_interval: float = 60.0
    probe: bool = True
    arm: ArmSettings = field(default_factory=ArmSettings)


class GatewayPort(Protocol):
    async def wait_until_settled(self, gateway_id: str) -> Snapshot: ...
    async def apply(self, plan: Plan) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class KubePort(Protocol):
    async def patch_route_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None: ...
    async def post_event(
        self, route: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None: ...
    async def load_ledger(self, gateway_id: str) -> tuple[Ledger, Ledger | None]: ...
    async def save_ledger(self, confirmed: Ledger, intent: Ledger | None = None) -> None: ...
    async def delete_ledger(self, gateway_id: str) -> None: ...


@dataclass
class RouteRecord:
    """What the reconciler knows of one SseRoute."""

    namespace: str
    name: str
    uid: str
    generation: int
    deleting: bool
    intent: RouteIntent | None  # the last valid, allowed requirements (None: none to apply)
    spec: SseRouteSpec | None = None  # the last valid, allowed spec
    intent_generation: int = 0  # the generation `intent` was taken from
    # The requirements the GatewayConfigured condition was computed for: when they are not the
    # current ones, it says nothing about the current generation.
    configured_for: RouteIntent | None = None
    restore_on_delete: bool = True
    gateway_status: GatewayStatus | None = None
    backends_status: BackendsStatus | None = None
    conditions: tuple[Condition, ...] = ()
    written: dict[str, Any] | None = None  # the status last written (skip identical writes)
    notices: set[str] = field(default_factory=set)
    # The gateway and pod sides both write status: one at a time, each from the other's result.
    status_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ref(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid}

    @property
    def gateway_key(self) -> str | None:
        return self.intent.gateway_id.lower() if self.intent else None


def _known_conditions(body: Mapping[str, Any]) -> tuple[Condition, ...]:
    """The route's conditions as last written; one that does not parse (e.g. an older
    operator's empty message) is rewritten rather than trusted."""
    known = []
    for raw in (body.get("status") or {}).get("conditions") or ():
        with contextlib.suppress(ValidationError):
            known.append(Condition.model_validate(raw))
    return tuple(known)


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(type_: str, ok: bool | None, reason: str, message: str) -> Condition:
    status = "Unknown" if ok is None else "True" if ok else "False"
    return Condition(type=type_, status=status, reason=reason, message=message)


_ACCEPTED = _condition(cond.ACCEPTED, True, Reason.ACCEPTED, "spec is valid; gateway allowed")


class Reconciler:
    def __init__(self, config: OperatorConfig, gateways: GatewayPort, kube: KubePort) -> None:
        self.config, self.gateways, self.kube = config, gateways, kube
        self.routes: dict[str, RouteRecord] = {}
        self._workers = DebouncedWorkers(self._pass, config.debounce, "gateway", error_delay=30)
        self._released: dict[str, asyncio.Event] = {}
        self._drift: dict[str, DriftTracker] = {}
        self.on_route_change: Callable[[str], None] | None = None  # the pods' side listens

    # -- events from kopf -----------------------------------------------------------------

    async def observe(self, body: Mapping[str, Any]) -> None:
        """Take in the current state of a route; mark the gateways it affects dirty."""
        meta = body["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        generation, deleting = int(meta.get("generation") or 0), bool(meta.get("deletionTimestamp"))
        if FINALIZER not in (meta.get("finalizers") or ()) and not deleting:
            # kopf adds our finalizer first, guarded by the resourceVersion: a status write now
            # would make its patch fail (422). Its patch brings the route back here.
            return
        record = self.routes.get(key)
        if record is None:
            record = self.routes[key] = RouteRecord(
                namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""),
                generation=generation, deleting=deleting, intent=None,
                conditions=_known_conditions(body),
            )  # fmt: skip
            previous_gateway = None
        elif (record.generation, record.deleting) == (generation, deleting):
            return  # our own status writes and metadata-only edits need no work
        else:
            # Updated in place: a status write in flight must not land on a stale copy.
            record.generation, record.deleting = generation, deleting
            previous_gateway = record.gateway_key
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError as exc:
            # Invalid input changes nothing: the last valid requirements stay in force.
            await self._write_status(record, [
                _condition(cond.ACCEPTED, False, Reason.INVALID_SPEC, str(exc)),
            ])  # fmt: skip
            await self.kube.post_event(record.ref, "Warning", Reason.INVALID_SPEC, str(exc))
            if record.deleting:
                self._mark_or_release(record)
            return
        route = SseRoute(namespace=record.namespace, name=record.name, spec=spec,
                         generation=record.generation)  # fmt: skip
        record.restore_on_delete = spec.restore_on_delete
        record.intent_generation = record.generation
        if gateway_allowed(spec.gateway.id, self.config.allowed_gateways):
            record.intent, record.spec = RouteIntent.of(route), spec
        else:
            record.intent, record.spec = None, None
            message = (f"gateway {spec.gateway.id} matches no --allowed-gateway pattern; "
                       "the operator never writes it")  # fmt: skip
            await self._write_status(record, [
                _condition(cond.ACCEPTED, False, Reason.GATEWAY_NOT_ALLOWED, message),
            ])  # fmt: skip
            await self.kube.post_event(record.ref, "Warning", Reason.GATEWAY_NOT_ALLOWED, message)
        if previous_gateway and previous_gateway != record.gateway_key:
            self._mark(previous_gateway)
        self._mark_or_release(record)
        if self.on_route_change is not None:
            self.on_route_change(record.namespace)

    def forget(self, namespace: str, name: str) -> None:
        record = self.routes.pop(f"{namespace}/{name}", None)
        self._released.pop(f"{namespace}/{name}", None)
        if record and record.gateway_key:
            self._mark(record.gateway_key)

    async def released(self, namespace: str, name: str) -> None:
        """Return once the gateway is settled without this route (so its finalizer may go)."""
        await self._released.setdefault(f"{namespace}/{name}", asyncio.Event()).wait()

    def _mark_or_release(self, record: RouteRecord) -> None:
        if record.gateway_key:
            self._mark(record.gateway_key)
        elif record.deleting:
            self._release(record)

    def _release(self, record: RouteRecord) -> None:
        self._released.setdefault(record.key, asyncio.Event()).set()

    def _mark(self, gateway_key: str) -> None:
        self._workers.mark(gateway_key)

    # -- workers --------------------------------------------------------------------------

    async def resync(self) -> None:
        """Every --resync, read each gateway that has routes once (drift check)."""
        while True:
            await asyncio.sleep(self.config.resync)
            for gateway_key in {r.gateway_key for r in self.routes.values() if r.gateway_key}:
                self._mark(gateway_key)

    async def close(self) -> None:
        await self._workers.close()
        await self.gateways.close()

    async def _pass(self, gateway_key: str) -> float | None:
        """reconcile(), timed, with every line it logs naming the gateway and its routes."""
        records = [r for r in self.routes.values() if r.gateway_key == gateway_key]
        gateway_id = next((r.intent.gateway_id for r in records if r.intent), gateway_key)
        with (
            logs.context(gateway=gateway_id, routes=sorted(r.key for r in records)),
            metrics.RECONCILE_SECONDS.time(),
        ):
            return await self.reconcile(gateway_key)

    async def reconcile(self, gateway_key: str) -> float | None:
        """One pass over one gateway; the delay before a retry, or None when settled."""
        records = [r for r in self.routes.values() if r.gateway_key == gateway_key]
        gateway_id = next((r.intent.gateway_id for r in records if r.intent), gateway_key)
        confirmed, intent = await self.kube.load_ledger(gateway_id)
        active = [r for r in records if not r.deleting]
        if not active and confirmed.is_empty and intent is None:
            for record in records:
                self._release(record)
            return None
        name = gateway_id.rsplit("/", 1)[-1]
        # The requirements this pass plans: outcomes are reported for these, and a route whose
        # requirements change meanwhile is reported Pending until the next pass.
        planned = {r.key: r.intent for r in records if r.intent}
        try:
            snapshot = await self.gateways.wait_until_settled(gateway_id)
            ledger = recover(confirmed, intent, snapshot.document)
            if recreated(confirmed, intent, snapshot.document):
                await self._recreated(gateway_key, name, snapshot, records)
            elif intent is not None:
                log.info("gateway %s (routes %s): recovered the ledger of an interrupted update",
                         name, ", ".join(r.key for r in active))  # fmt: skip
            if intent is not None or ledger != confirmed:
                await self._store_ledger(ledger)
            plan = plan_gateway(
                gateway_id,
                [planned[r.key] for r in active if r.key in planned],
                snapshot.document,
                ledger,
                released=[planned[r.key] for r in records
                          if r.deleting and not r.restore_on_delete and r.key in planned],
            )  # fmt: skip
            plan, conflicts = await self._hold_drift_conflicts(gateway_key, plan, ledger, records)
            document = snapshot.document
            if plan.has_changes and self.config.dry_run:
                await self._report(records, plan, document, conflicts, planned, dry_run=True)
                return None
            if plan.has_changes:
                document = await self._apply(name, plan, ledger, active, planned)
            elif plan.ledger != ledger:
                await self._store_ledger(plan.ledger)
            await self._report(records, plan, document, conflicts, planned)
        except TransientGatewayError as exc:
            log.warning("gateway %s (routes %s): %s; retrying in %.0fs", name,
                        ", ".join(r.key for r in active), exc, exc.delay or 0)  # fmt: skip
            await self._fail(active, exc, planned)
            return float(exc.delay or 1.0)
        except TerminalGatewayError as exc:
            log.error("gateway %s (routes %s): %s", name, ", ".join(r.key for r in active), exc)
            await self._fail(active, exc, planned)
            if exc.reason is Reason.GATEWAY_NOT_FOUND:
                if not active:
                    # Gone, and no route needs it: a gateway made again under its id is a new
                    # instance that this ledger says nothing about.
                    await self.kube.delete_ledger(gateway_id)
                    log.info("gateway %s is gone and no route needs it: ledger deleted", name)
                for record in records:
                    if record.deleting:
                        self._release(record)
            return None
        for record in records:
            if record.deleting:
                self._release(record)
        return None

    async def _store_ledger(self, ledger: Ledger) -> None:
        """Save a confirmed ledger; one that owns nothing is deleted instead of kept."""
        if ledger.is_empty:
            await self.kube.delete_ledger(ledger.gateway_id)
        else:
            await self.kube.save_ledger(ledger)

    async def _recreated(
        self, gateway_key: str, name: str, snapshot: Snapshot, records: list[RouteRecord]
    ) -> None:
        log.warning("gateway %s (routes %s): gateway was recreated; original values read afresh "
                    "(resourceGuid now %s)", name, ", ".join(r.key for r in records) or "none",
                    snapshot.resource_guid)  # fmt: skip
        message = (f"gateway {name} was recreated (resourceGuid now {snapshot.resource_guid}); "
                   "original values read afresh: what the operator recorded for the deleted "
                   "gateway is discarded and never restored")  # fmt: skip
        for record in records:
            await self.kube.post_event(record.ref, "Normal", Reason.GATEWAY_RECREATED, message)
        # Corrections counted against the old instance say nothing about the new one.
        self._drift.pop(gateway_key, None)

    async def _apply(
        self, name: str, plan: Plan, ledger: Ledger, active: list[RouteRecord],
        planned: Mapping[str, RouteIntent],
    ) -> dict[str, Any]:  # fmt: skip
        summary = plan.summary
        routes = ", ".join(sorted({r for c in plan.changes for r in c.routes})) or "none (restore)"
        log.info("gateway %s: applying %s for routes %s", name, summary, routes)
        for record in active:
            await self._write_status(record, [
                *self._accepted(record),
                _condition(cond.GATEWAY_CONFIGURED, False, Reason.APPLYING,
                           f"updating gateway {name}: {summary}"),
            ], computed_for=planned.get(record.key))  # fmt: skip
        # Intent first: a crash during the PUT can then never lose an original value.
        await self.kube.save_ledger(ledger, intent=plan.ledger)
        document = await self.gateways.apply(plan)  # logs the PUT and its outcome
        await self._store_ledger(plan.ledger)
        metrics.DRIFT_CORRECTIONS.labels(plan.gateway_id).inc(
            sum(1 for change in plan.changes if change.kind == "drift")
        )
        affected = {route for change in plan.changes for route in change.routes}
        for record in active:
            if record.key in affected or not affected:
                await self.kube.post_event(record.ref, "Normal", Reason.APPLIED,
                                           f"gateway {name}: {summary}")  # fmt: skip
        return document

    async def _hold_drift_conflicts(
        self, gateway_key: str, plan: Plan, ledger: Ledger, records: list[RouteRecord]
    ) -> tuple[Plan, dict[str, str]]:
        tracker = self._drift.setdefault(gateway_key, DriftTracker())
        generations = {r.key: r.generation for r in records}
        held: set[str] = set()
        conflicts: dict[str, str] = {}
        for change in plan.changes:
            if change.kind != "drift":
                continue
            routes = {key: generations.get(key, 0) for key in change.routes}
            message = (f"{change.label} was changed to {change.before} by someone else "
                       f"repeatedly (the operator set {change.after}); stopped correcting it "
                       "because every update cuts live streams. Change the route to retry.")  # fmt: skip
            if tracker.in_conflict(change.path, routes):
                held.add(change.path)
            elif tracker.record(change.path, routes, time.monotonic()):
                held.add(change.path)
                for record in records:
                    if record.key in routes:
                        await self.kube.post_event(
                            record.ref, "Warning", Reason.DRIFT_CONFLICT, message
                        )
            else:
                continue
            conflicts.update(dict.fromkeys(routes, message))
        metrics.DRIFT_CONFLICTS.labels(plan.gateway_id).set(len(held))
        return plan.without(held, ledger), conflicts

    async def _report(
        self, records: list[RouteRecord], plan: Plan, document: Mapping[str, Any],
        conflicts: dict[str, str], planned: Mapping[str, RouteIntent], dry_run: bool = False,
    ) -> None:  # fmt: skip
        for notice in plan.notices:
            targets = [r for r in records if notice.route in (None, r.key)]
            for record in targets:
                if notice.message not in record.notices:
                    record.notices.add(notice.message)
                    await self.kube.post_event(record.ref, notice.level, "Notice", notice.message)
        for record in records:
            if record.deleting or record.intent is None:
                continue
            outcome = plan.outcomes.get(record.key)
            if outcome is None:
                continue
            if dry_run:
                configured = _condition(cond.GATEWAY_CONFIGURED, False, Reason.DRY_RUN,
                                        f"dry run: would change {plan.summary}")  # fmt: skip
            elif record.key in conflicts:
                configured = _condition(cond.GATEWAY_CONFIGURED, False, Reason.DRIFT_CONFLICT,
                                        conflicts[record.key])  # fmt: skip
            else:
                ok = outcome.reason is Reason.APPLIED
                configured = _condition(
                    cond.GATEWAY_CONFIGURED, ok, outcome.reason, outcome.message
                )
            await self._write_status(
                record,
                [*self._accepted(record),
                 configured],
                gateway=self._gateway_status(outcome, document),
                computed_for=planned.get(record.key),
            )  # fmt: skip

    @staticmethod
    def _gateway_status(outcome: RouteOutcome, document: Mapping[str, Any]) -> GatewayStatus:
        return GatewayStatus(
            name=gateway_name(document),
            response_buffering="Enabled" if response_buffering_enabled(document) else "Disabled",
            backend_settings=tuple(
                BackendSettingStatus(name=s, request_timeout=t)
                for s, t in outcome.request_timeouts.items()
            ),
        )

    async def _fail(
        self, records: list[RouteRecord], error: GatewayError, planned: Mapping[str, RouteIntent]
    ) -> None:
        message = str(error)
        if isinstance(error, TransientGatewayError):  # say when, e.g. while awaiting a role
            message += f"; retrying in {error.delay or 1:g}s"
        for record in records:
            if record.intent is None:
                continue
            await self._write_status(record, [
                *self._accepted(record),
                _condition(cond.GATEWAY_CONFIGURED, False, error.reason, message),
            ], computed_for=planned.get(record.key))  # fmt: skip
            if error.message not in record.notices:
                record.notices.add(error.message)
                await self.kube.post_event(record.ref, "Warning", error.reason, str(error))

    async def write_backends_status(
        self, record: RouteRecord, updates: list[Condition], backends: BackendsStatus
    ) -> None:
        await self._write_status(record, updates, backends=backends)

    @staticmethod
    def _accepted(record: RouteRecord) -> list[Condition]:
        """Accepted=True when the current generation was accepted; when it was rejected, its
        InvalidSpec stands (the last valid requirements stay in force meanwhile)."""
        return [_ACCEPTED] if record.intent_generation == record.generation else []

    async def _write_status(
        self, record: RouteRecord, updates: list[Condition], gateway: GatewayStatus | None = None,
        backends: BackendsStatus | None = None, computed_for: RouteIntent | None = None,
    ) -> None:  # fmt: skip
        """`computed_for`: the requirements a GatewayConfigured update was computed for."""
        async with record.status_lock:
            if computed_for is not None:
                record.configured_for = computed_for
            if record.intent is not None and record.configured_for != record.intent:
                # Ready=True must mean the gateway holds what this generation needs: an outcome
                # for other requirements (an earlier generation) is replaced by Pending.
                pending = _condition(
                    cond.GATEWAY_CONFIGURED, False, Reason.PENDING,
                    f"the requirements of generation {record.intent_generation} are not "
                    "applied to the gateway yet",
                )  # fmt: skip
                updates = [u for u in updates if u.type != cond.GATEWAY_CONFIGURED] + [pending]
            if gateway is not None:
                record.gateway_status = gateway
            if backends is not None:
                record.backends_status = backends
            serves_pods = record.spec is not None and record.spec.backend is not None
            if not serves_pods:
                record.backends_status = None
            conditions = cond.merge_conditions(
                record.conditions, updates, record.generation, _now(),
                drop=frozenset() if serves_pods else frozenset({cond.BACKENDS_ANNOTATED, cond.BACKENDS_CONFORMANT}),
            )  # fmt: skip
            status = SseRouteStatus(
                observed_generation=record.generation,
                request_timeout_seconds=record.intent.request_timeout if record.intent else None,
                gateway=record.gateway_status,
                backends=record.backends_status,
                conditions=conditions,
            ).model_dump(mode="json", by_alias=True, exclude_none=True)
            comparable = {**status, "conditions": [
                {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
            ]}  # fmt: skip
            if comparable == record.written:
                return
            await self.kube.patch_route_status(record.namespace, record.name, status)
            record.conditions, record.written = conditions, comparable
