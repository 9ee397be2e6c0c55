"""The gateway worker: route changes mark gateways dirty; one worker per gateway coalesces a
burst, reads the gateway once, plans, and PUTs at most once. Gateways run in parallel, each one
strictly serially, because every PUT to a gateway can cut its live streams.
"""

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from appgw_sse import logs, metrics
from appgw_sse.adapters.azure_gateway import Snapshot
from appgw_sse.adapters.errors import (
    GatewayError,
    IngressesUnavailable,
    TerminalGatewayError,
    TransientGatewayError,
)
from appgw_sse.config import OperatorConfig
from appgw_sse.core import agic
from appgw_sse.core import claims as cl
from appgw_sse.core import conditions as cond
from appgw_sse.core.conditions import Reason
from appgw_sse.core.document import agic_tags, name_from_id, response_buffering_enabled
from appgw_sse.core.drift import DriftTracker
from appgw_sse.core.fields import Place, gateway_status
from appgw_sse.core.ledger import Ledger, recover, recreated
from appgw_sse.core.planner import Plan, RouteIntent, plan_gateway
from appgw_sse.routebook import RouteBook, RouteChange, RouteRecord
from appgw_sse.workers import DebouncedWorkers

log = logging.getLogger(__name__)

# A PUT usually settles within seconds; one still running after this long (minutes on Azure) is
# worth a status write on each route it is for, before the one that reports its result.
APPLYING_NOTICE_SECONDS = 5.0
# An Ingress listing that failed (no networking API, no RBAC yet) is tried again after this.
INGRESS_RETRY_SECONDS = 30.0


class GatewayPort(Protocol):
    async def wait_until_settled(self, gateway_id: str) -> Snapshot: ...
    async def apply(self, plan: Plan, snapshot: Snapshot | None = None) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class IngressPort(Protocol):
    async def list_agic_ingresses(self, namespace: str) -> list[agic.Ingress]: ...
    async def patch_ingress_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None: ...
    async def load_ingress_ledger(self, namespace: str) -> agic.IngressLedger: ...
    async def save_ingress_ledger(self, ledger: agic.IngressLedger) -> None: ...


class LedgerPort(IngressPort, Protocol):
    async def post_event(
        self, route: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None: ...
    async def load_ledger(self, gateway_id: str) -> tuple[Ledger, Ledger | None]: ...
    async def save_ledger(self, confirmed: Ledger, pending: Ledger | None = None) -> None: ...
    async def delete_ledger(self, gateway_id: str) -> None: ...


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
        self._agic: set[str] = set()  # gateway keys last seen tagged by AGIC
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
        for record in self.book.in_namespace(namespace):
            if record.gateway_key in self._agic:
                self.mark(record.gateway_key)

    async def released(self, namespace: str, name: str) -> None:
        """Return once the gateway is settled without this route (so its finalizer may go)."""
        await self._released.setdefault(f"{namespace}/{name}", asyncio.Event()).wait()

    def _release(self, record: RouteRecord) -> None:
        self._released.setdefault(record.key, asyncio.Event()).set()

    def _release_all(self, records: list[RouteRecord]) -> None:
        for record in records:
            self._release(record)

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
        """One pass over one gateway; the delay before a retry, or None when settled."""
        if self.book.unobserved(("gateway", gateway_key)):
            return 1.0
        records = self.book.on_gateway(gateway_key)
        gateway_id = self._gateway_id(gateway_key, records)
        # The deleted routes this pass plans without: only they are released when it ends. A
        # route deleted meanwhile (`deleting` changes in place) is planned without, and
        # released, by the next pass: this one may just have applied its value.
        deleting = [r for r in records if r.deleting]
        confirmed, pending = await self.kube.load_ledger(gateway_id)
        active = [r for r in records if not r.deleting]
        # A deleted route on an AGIC gateway may still have Ingress annotations to restore.
        on_ingresses = any(r.intent and r.intent.backend_service for r in records)
        if not active and confirmed.is_empty and pending is None and not on_ingresses:
            self._orphans.pop(gateway_key, None)
            self._release_all(deleting)
            return None
        name = name_from_id(gateway_id)
        # The requirements this pass plans: outcomes are reported for these, and a route whose
        # requirements change meanwhile is reported Pending until the next pass.
        planned = {r.key: r.intent for r in records if r.intent}
        try:
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
                self._agic.add(gateway_key)
                failed = await self._agic_mode(
                    gateway_key, records, plan, snapshot.document, planned
                )
                # A namespace whose Ingresses could not be listed has nothing restored yet.
                self._release_all([r for r in deleting if r.namespace not in failed])
                return INGRESS_RETRY_SECONDS if failed and self.config.agic else None
            self._agic.discard(gateway_key)
            plan, conflicts = await self._hold_drift_conflicts(gateway_key, plan, ledger, records)
            document = snapshot.document
            if plan.has_changes and self.config.dry_run:
                await self._report(records, plan, document, conflicts, planned, dry_run=True)
                return None
            if plan.has_changes:
                document = await self._apply(name, plan, ledger, active, planned, snapshot)
            elif plan.ledger != ledger:
                await self._store_ledger(plan.ledger)
            await self._report(records, plan, document, conflicts, planned)
        except TransientGatewayError as exc:
            log.warning(
                "gateway %s (routes %s): %s; retrying in %.0fs",
                name,
                _named(records),
                exc,
                exc.delay or 0,
            )
            await self._fail(active, exc, planned, deleting)
            return float(exc.delay or 1.0)
        except TerminalGatewayError as exc:
            log.error("gateway %s (routes %s): %s", name, _named(records), exc)
            gone = exc.reason is Reason.GATEWAY_NOT_FOUND
            # A gone gateway has nothing to restore: its deleted routes are released below,
            # not told to wait (a status write then only races kopf's finalizer patch).
            await self._fail(active, exc, planned, [] if gone else deleting)
            if gone:
                if not active:
                    # Gone, and no route needs it: a gateway made again under its id is a new
                    # instance that this ledger says nothing about.
                    await self.kube.delete_ledger(gateway_id)
                    log.info("gateway %s is gone and no route needs it: ledger deleted", name)
                self._release_all(deleting)
            return None
        # The restore of every route in `deleting` is on the gateway: applied and verified
        # by this pass, or found there.
        self._orphans.pop(gateway_key, None)
        self._release_all(deleting)
        return None

    async def _agic_mode(
        self,
        gateway_key: str,
        records: list[RouteRecord],
        plan: Plan,
        document: Mapping[str, Any],
        planned: Mapping[str, RouteIntent],
    ) -> dict[str, str]:
        """Carry the routes' values in AGIC's Ingress annotations, namespace by namespace, and
        report (the gateway is only read). The namespaces whose Ingresses could not be listed,
        with why."""
        name = name_from_id(plan.gateway_id)
        served: dict[str, list[str]] = {}
        shared: dict[str, str] = {}  # route key -> the other Services its values reach
        failed: dict[str, str] = {}
        for namespace in sorted({r.namespace for r in records}):
            # Every route of the namespace on an AGIC gateway: they share its Ingresses.
            routes = [
                r.intent
                for r in self.book.in_namespace(namespace)
                if r.intent and not r.deleting and r.gateway_key in self._agic
            ]
            release = any(
                r.deleting and not r.restore_on_delete for r in records if r.namespace == namespace
            )
            ledger = await self.kube.load_ingress_ledger(namespace)
            if ledger.is_empty and not any(r.backend_service for r in routes):
                continue  # no route there names a Service: no Ingress carries anything
            if not self.config.agic:
                failed[namespace] = "AGIC mode is off (--no-agic, agic.enabled=false)"
                continue
            try:
                ingresses = await self.kube.list_agic_ingresses(namespace)
            except IngressesUnavailable as exc:
                log.warning(
                    "gateway %s (AGIC): %s; retrying in %gs", name, exc, INGRESS_RETRY_SECONDS
                )
                failed[namespace] = str(exc)
                continue
            iplan = agic.plan_ingresses(routes, ingresses, ledger, release=release)
            if iplan.patches:
                # Recorded first: a crash after any patch still knows every original value.
                await self.kube.save_ingress_ledger(ledger.merged(iplan.ledger))
                for ingress, patch in iplan.patches.items():
                    log.info(
                        "gateway %s (AGIC): Ingress %s/%s annotations %s",
                        name,
                        namespace,
                        ingress,
                        ", ".join(f"{k}={v}" for k, v in sorted(patch.items())),
                    )
                    await self.kube.patch_ingress_annotations(namespace, ingress, dict(patch))
            if iplan.patches or iplan.ledger != ledger:
                await self.kube.save_ingress_ledger(iplan.ledger)
            for notice in iplan.notices:
                for record in records:
                    if record.namespace == namespace and notice.route in (None, record.key):
                        await self.book.post_once(
                            record, notice.level, notice.reason, notice.message
                        )
            for key, names in iplan.served.items():
                served[key] = list(names)
            for key, others in iplan.shared.items():
                shared[key] = agic.shared_words(others)
        buffering_on = response_buffering_enabled(document)
        for record in records:
            intent, outcome = record.intent, plan.outcomes.get(record.key)
            if record.deleting or intent is None:
                continue
            if intent.backend_service and record.namespace in failed:
                await self.book.write_status(
                    record,
                    [
                        *cond.accepted(record.intent_generation, record.generation),
                        cond.gateway_failed(
                            Reason.INGRESSES_UNAVAILABLE,
                            failed[record.namespace]
                            + (
                                f"; retrying in {INGRESS_RETRY_SECONDS:g}s"
                                if self.config.agic
                                else ""
                            ),
                        ),
                    ],
                    gateway=gateway_status(document),
                    computed_for=planned.get(record.key),
                    mode="AGIC",
                )
                continue
            values = f"request-timeout {intent.request_timeout}s" + (
                f", connection-draining-timeout {intent.drain_timeout}s"
                if intent.drain_timeout
                else ""
            )
            configured = cond.agic_mode(
                name,
                intent.backend_service,
                served.get(record.key, []),
                values,
                agic.buffering_command(intent.gateway_id)
                if buffering_on and intent.disable_buffering
                else None,
                outcome.message if outcome else "gateway is managed by AGIC",
                shared.get(record.key, ""),
            )
            await self.book.write_status(
                record,
                [*cond.accepted(record.intent_generation, record.generation), configured],
                gateway=gateway_status(document),
                computed_for=planned.get(record.key),
                mode="AGIC",
                ingresses=served.get(record.key, []) if intent.backend_service else None,
            )
        return failed

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
                f"{change.label} was changed to {change.before} by someone else repeatedly (the "
                f"operator set {change.after}); stopped correcting it because every update cuts "
                "live streams. Change the route to retry."
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
