"""The gateway worker: route changes mark gateways dirty; one worker per gateway coalesces a
burst, reads the gateway once, plans, and PUTs at most once. Gateways run in parallel, each one
strictly serially, because every PUT to a gateway can cut its live streams.
"""

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from appgw_sse import logs, metrics
from appgw_sse.agic_mode import AgicMode
from appgw_sse.config import OperatorConfig
from appgw_sse.core import claims as cl
from appgw_sse.core import conditions as cond
from appgw_sse.core.conditions import Reason
from appgw_sse.core.document import agic_tags, name_from_id
from appgw_sse.core.drift import DriftTracker
from appgw_sse.core.fields import Place, gateway_status
from appgw_sse.core.intent import RouteIntent
from appgw_sse.core.ledger import Ledger, recover, recreated
from appgw_sse.core.planner import Plan, plan_gateway
from appgw_sse.ports import (
    GatewayError,
    GatewayPort,
    LedgerPort,
    Snapshot,
    TerminalGatewayError,
    TransientGatewayError,
)
from appgw_sse.routebook import RouteBook, RouteChange, RouteRecord
from appgw_sse.workers import DebouncedWorkers

log = logging.getLogger(__name__)

# A PUT usually settles within seconds; one still running after this long (minutes on Azure) is
# worth a status write on each route it is for, before the one that reports its result.
APPLYING_NOTICE_SECONDS = 5.0


@dataclass(frozen=True)
class _Routes:
    """A pass's routes as it began. `deleting` changes in place on a record: a route deleted
    meanwhile is planned without, and released, by the next pass (this one may just have
    applied its value); only the deleted routes this pass plans without are released by it."""

    records: list[RouteRecord]
    active: list[RouteRecord]
    deleting: list[RouteRecord]
    # The requirements this pass plans: outcomes are reported for these, and a route whose
    # requirements change meanwhile is reported Pending until the next pass.
    planned: dict[str, RouteIntent]


@dataclass(frozen=True)
class _Ended:
    """How a pass ended."""

    retry: float | None = None  # the delay before the next pass; None when settled
    released: Sequence[RouteRecord] = ()  # deleted routes whose restore is on the gateway
    restored: bool = False  # the gateway is settled: a ledger left by gone routes is restored


def _named(records: list[RouteRecord]) -> str:
    """The routes of a pass for a log line, the deleted ones marked as waiting for it."""
    return (
        ", ".join(
            f"{r.key} (deleted, waiting for the restore)" if r.deleting else r.key for r in records
        )
        or "none"
    )


class GatewayReconciler:
    def __init__(
        self, config: OperatorConfig, book: RouteBook, gateways: GatewayPort, kube: LedgerPort
    ) -> None:
        self.config, self.book, self.gateways, self.kube = config, book, gateways, kube
        self._workers = DebouncedWorkers(self._pass, config.debounce, "gateway", error_delay=30)
        self._released: dict[str, asyncio.Event] = {}
        self._drift: dict[str, DriftTracker] = {}
        self.agic = AgicMode(book, kube, enabled=config.agic)
        self._orphans: dict[str, str] = {}  # gateway key -> id: a ledger and no route
        book.listen(self.route_changed)

    # -- scheduling -----------------------------------------------------------------------

    def route_changed(self, change: RouteChange) -> None:
        record = change.record
        if change.forgotten:
            self._released.pop(record.key, None)
        for gateway_key in change.gateways:
            self.mark(gateway_key)
        if record.deleting and record.gateway_key is None and not change.forgotten:
            self._release(record)  # no gateway holds anything for it

    def mark(self, gateway_key: str) -> None:
        self._workers.mark(gateway_key)

    def ingress_changed(self, namespace: str) -> None:
        """An Ingress changed: re-plan the AGIC gateways of the namespace's routes."""
        for gateway_key in self.agic.gateways_in(namespace):
            self.mark(gateway_key)

    async def released(self, namespace: str, name: str) -> None:
        """Return once the gateway is settled without this route (so its finalizer may go)."""
        await self._released.setdefault(f"{namespace}/{name}", asyncio.Event()).wait()

    def _release(self, record: RouteRecord) -> None:
        self._released.setdefault(record.key, asyncio.Event()).set()

    def _gateway_id(self, gateway_key: str, records: list[RouteRecord]) -> str:
        """The gateway's id as spelled by its routes, or by its ledger when none is left."""
        spelled = (r.intent.gateway_id for r in records if r.intent)
        return next(spelled, self._orphans.get(gateway_key, gateway_key))

    def restore_orphans(self, ledger_gateways: list[str], routed: set[str]) -> None:
        """Give a pass to every gateway with a ledger that no route refers to (`routed`:
        gateway keys of the routes listed): after a restart nothing else would, and its
        originals would stay unrestored."""
        for gateway_id in ledger_gateways:
            key = gateway_id.lower()
            if key not in routed and not self.book.on_gateway(key):
                log.info(
                    "gateway %s has a ledger but no route: a pass restores it",
                    name_from_id(gateway_id),
                )
                self._orphans[key] = gateway_id
                self.mark(key)

    async def resync(self) -> None:
        """Every --resync, read each gateway that has routes once (drift check)."""
        while True:
            await asyncio.sleep(self.config.resync)
            for gateway_key in self.book.gateway_keys():
                self.mark(gateway_key)

    async def close(self) -> None:
        await self._workers.close()
        await self.gateways.close()

    # -- one pass -------------------------------------------------------------------------

    async def _pass(self, gateway_key: str) -> float | None:
        """reconcile(), timed, with every line it logs naming the gateway and its routes."""
        records = self.book.on_gateway(gateway_key)
        gateway_id = self._gateway_id(gateway_key, records)
        with (
            logs.context(gateway=gateway_id, routes=sorted(r.key for r in records)),
            metrics.RECONCILE_SECONDS.time(),
        ):
            return await self.reconcile(gateway_key)

    async def reconcile(self, gateway_key: str) -> float | None:
        """One pass over one gateway; the delay before a retry, or None when settled. The
        deleted routes whose restore is on the gateway are released here, and only here."""
        if not self.book.listed():
            return 1.0
        records = self.book.on_gateway(gateway_key)
        gateway_id = self._gateway_id(gateway_key, records)
        deleting = [r for r in records if r.deleting]
        confirmed, pending = await self.kube.load_ledger(gateway_id)
        routes = _Routes(
            records,
            active=[r for r in records if not r.deleting],
            deleting=deleting,
            planned={r.key: r.intent for r in records if r.intent},
        )
        try:
            ended = await self._converge(gateway_key, gateway_id, routes, confirmed, pending)
        except TransientGatewayError as exc:
            ended = await self._retry_later(gateway_id, routes, exc)
        except TerminalGatewayError as exc:
            ended = await self._give_up(gateway_id, routes, exc)
        if ended.restored:
            self._orphans.pop(gateway_key, None)
        for record in ended.released:
            self._release(record)
        return ended.retry

    async def _converge(
        self,
        gateway_key: str,
        gateway_id: str,
        routes: _Routes,
        confirmed: Ledger,
        pending: Ledger | None,
    ) -> _Ended:
        """The happy path: read the gateway, recover its ledger, plan, then carry the plan in
        Ingress annotations (AGIC) or PUT it, and report."""
        records, active, planned = routes.records, routes.active, routes.planned
        # A deleted route on an AGIC gateway may still have Ingress annotations to restore.
        on_ingresses = any(r.intent and r.intent.backend_service for r in records)
        if not active and confirmed.is_empty and pending is None and not on_ingresses:
            return _Ended(released=routes.deleting, restored=True)
        name = name_from_id(gateway_id)
        snapshot = await self.gateways.wait_until_settled(gateway_id)
        ledger = recover(confirmed, pending, snapshot.document)
        if recreated(confirmed, pending, snapshot.document):
            await self._recreated(gateway_key, name, snapshot, records)
        elif pending is not None:
            log.info(
                "gateway %s (routes %s): recovered the ledger of an interrupted update",
                name,
                ", ".join(r.key for r in active),
            )
        if pending is not None or ledger != confirmed:
            await self._store_ledger(ledger)
        plan = plan_gateway(
            gateway_id,
            [planned[r.key] for r in active if r.key in planned],
            snapshot.document,
            ledger,
            released=[
                planned[r.key]
                for r in records
                if r.deleting and not r.restore_on_delete and r.key in planned
            ],
            owner=self.config.owner_id,
        )
        if agic_tags(snapshot.document):
            # Never PUT: AGIC would revert it, and each revert ends streams.
            done = await self.agic.reconcile(gateway_key, records, plan, snapshot.document, planned)
            # A namespace whose Ingresses could not be listed has nothing restored yet.
            released = [r for r in routes.deleting if r.namespace not in done.unlisted]
            return _Ended(done.retry, released)
        self.agic.left(gateway_key)
        plan, conflicts = await self._hold_drift_conflicts(gateway_key, plan, ledger, records)
        document = snapshot.document
        if plan.has_changes and self.config.dry_run:
            await self._report(records, plan, document, conflicts, planned, dry_run=True)
            return _Ended()
        if plan.has_changes:
            document = await self._apply(name, plan, ledger, active, planned, snapshot)
        elif plan.ledger != ledger:
            await self._store_ledger(plan.ledger)
        await self._report(records, plan, document, conflicts, planned)
        # The restore of every deleted route is on the gateway: applied and verified by this
        # pass, or found there.
        return _Ended(released=routes.deleting, restored=True)

    async def _retry_later(
        self, gateway_id: str, routes: _Routes, exc: TransientGatewayError
    ) -> _Ended:
        log.warning(
            "gateway %s (routes %s): %s; retrying in %.0fs",
            name_from_id(gateway_id),
            _named(routes.records),
            exc,
            exc.delay or 0,
        )
        await self._fail(routes.active, exc, routes.planned, routes.deleting)
        return _Ended(retry=float(exc.delay or 1.0))

    async def _give_up(self, gateway_id: str, routes: _Routes, exc: TerminalGatewayError) -> _Ended:
        """Until a route changes or the next resync; a gone gateway releases its deleted routes:
        it has nothing to restore."""
        name = name_from_id(gateway_id)
        log.error("gateway %s (routes %s): %s", name, _named(routes.records), exc)
        if exc.reason is not Reason.GATEWAY_NOT_FOUND:
            await self._fail(routes.active, exc, routes.planned, routes.deleting)
            return _Ended()
        # The deleted routes are released, not told to wait (a status write then only races
        # the finalizer's removal).
        await self._fail(routes.active, exc, routes.planned, [])
        if not routes.active:
            # Gone, and no route needs it: a gateway made again under its id is a new instance
            # that this ledger says nothing about.
            await self.kube.delete_ledger(gateway_id)
            log.info("gateway %s is gone and no route needs it: ledger deleted", name)
        return _Ended(released=routes.deleting)

    async def _store_ledger(self, ledger: Ledger) -> None:
        """Save a confirmed ledger; one that owns nothing is deleted instead of kept."""
        if ledger.is_empty:
            await self.kube.delete_ledger(ledger.gateway_id)
        else:
            await self.kube.save_ledger(ledger)

    async def _recreated(
        self, gateway_key: str, name: str, snapshot: Snapshot, records: list[RouteRecord]
    ) -> None:
        log.warning(
            "gateway %s (routes %s): gateway was recreated; original values read afresh "
            "(resourceGuid now %s)",
            name,
            ", ".join(r.key for r in records) or "none",
            snapshot.resource_guid,
        )
        message = (
            f"gateway {name} was recreated (resourceGuid now {snapshot.resource_guid}); "
            "original values read afresh: what the operator recorded for the deleted "
            "gateway is discarded and never restored"
        )
        for record in records:
            await self.kube.post_event(record.ref, "Normal", Reason.GATEWAY_RECREATED, message)
        # Corrections counted against the old instance say nothing about the new one.
        self._drift.pop(gateway_key, None)

    async def _apply(
        self,
        name: str,
        plan: Plan,
        ledger: Ledger,
        active: list[RouteRecord],
        planned: Mapping[str, RouteIntent],
        snapshot: Snapshot,
    ) -> dict[str, Any]:
        summary = plan.described
        log.info("gateway %s: applying %s", name, plan.attributed or "no value change")
        if plan.claims_changed:
            log.info("gateway %s: in the same PUT, %s", name, plan.claims_summary)
        affected = {route for change in plan.changes for route in change.routes}

        def own(record: RouteRecord) -> str:
            # What this route asked for; a pure restore (no route asked) is told to all.
            return plan.summary_for(record.key) or summary

        # Pending first: a crash during the PUT can then never lose an original value.
        await self.kube.save_ledger(ledger, pending=plan.ledger)
        # Onto the document planned from (If-Match on its etag): no second read before writing.
        put = asyncio.ensure_future(self.gateways.apply(plan, snapshot))  # logs PUT and outcome
        try:
            await asyncio.wait({put}, timeout=APPLYING_NOTICE_SECONDS)
            for record in active:
                if put.done():
                    break
                if record.key in affected or not affected:
                    await self.book.write_status(
                        record,
                        [
                            *cond.accepted(record.intent_generation, record.generation),
                            cond.applying(name, own(record)),
                        ],
                        computed_for=planned.get(record.key),
                    )
            document = await put
        finally:
            put.cancel()  # only when this pass is cancelled or failed: a done PUT ignores it
        await self._store_ledger(plan.ledger)
        metrics.DRIFT_CORRECTIONS.labels(plan.gateway_id).inc(
            sum(1 for change in plan.changes if change.kind == "drift")
        )
        for record in active:
            if record.key in affected or not affected:
                await self.kube.post_event(
                    record.ref, "Normal", Reason.APPLIED, f"gateway {name}: {own(record)}"
                )
        return document

    async def _hold_drift_conflicts(
        self, gateway_key: str, plan: Plan, ledger: Ledger, records: list[RouteRecord]
    ) -> tuple[Plan, dict[str, str]]:
        """Drop corrections of values someone keeps changing back: the routes that need them
        get the conflict's message (route key -> message)."""
        tracker = self._drift.setdefault(gateway_key, DriftTracker())
        generations = {r.key: r.generation for r in records}
        held: set[Place] = set()
        conflicts: dict[str, str] = {}
        for change in plan.changes:
            if change.kind != "drift":
                continue
            routes = {key: generations.get(key, 0) for key in change.routes}
            message = (
                f"{change.label} was changed to {change.field.held(change.before)} by someone "
                f"else repeatedly (the operator set {change.field.held(change.after)}); stopped "
                "correcting it because every update cuts live streams. Change the route to retry."
            )
            if tracker.in_conflict(change.place.path, routes):
                held.add(change.place)
            elif tracker.record(change.place.path, routes, time.monotonic()):
                held.add(change.place)
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
        self,
        records: list[RouteRecord],
        plan: Plan,
        document: Mapping[str, Any],
        conflicts: dict[str, str],
        planned: Mapping[str, RouteIntent],
        dry_run: bool = False,
    ) -> None:
        for notice in plan.notices:
            for record in records:
                if notice.route in (None, record.key):
                    await self.book.post_once(record, notice.level, notice.reason, notice.message)
        for record in records:
            outcome = plan.outcomes.get(record.key)
            if record.deleting or record.intent is None or outcome is None:
                continue
            configured = cond.planned(
                outcome.reason,
                outcome.message,
                dry_run=plan.described if dry_run else None,
                drift_conflict=conflicts.get(record.key),
            )
            await self.book.write_status(
                record,
                [*cond.accepted(record.intent_generation, record.generation), configured],
                gateway=gateway_status(document, outcome.values)
                | cl.others_status(document, plan.owner),
                computed_for=planned.get(record.key),
                mode="Gateway",
            )

    async def _fail(
        self,
        records: list[RouteRecord],
        error: GatewayError,
        planned: Mapping[str, RouteIntent],
        deleting: list[RouteRecord],
    ) -> None:
        """Report a failed pass; on a deleted route, that its finalizer waits for the restore."""
        message = str(error)
        if isinstance(error, TransientGatewayError):  # say when, e.g. while awaiting a role
            message += f"; retrying in {error.delay or 1:g}s"
        waiting = "deleted: its finalizer is released once the gateway is restored without it; "
        for record in [*records, *deleting]:
            if record.intent is None:
                continue
            prefix = waiting if record.deleting else ""
            await self.book.write_status(
                record,
                [
                    *cond.accepted(record.intent_generation, record.generation),
                    cond.gateway_failed(error.reason, prefix + message),
                ],
                computed_for=planned.get(record.key),
            )
            await self.book.post_once(record, "Warning", error.reason, prefix + str(error))
