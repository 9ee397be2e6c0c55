"""AGIC mode: on a gateway that AGIC manages (tagged by it), the routes' values go into AGIC's
Ingress annotations instead of the gateway, which is only read: a PUT would be reverted by AGIC,
and each revert ends streams.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appgw_sse.core import agic
from appgw_sse.core import conditions as cond
from appgw_sse.core.conditions import Reason
from appgw_sse.core.document import name_from_id, response_buffering_enabled
from appgw_sse.core.fields import gateway_status
from appgw_sse.core.intent import RouteIntent
from appgw_sse.core.planner import Plan
from appgw_sse.ports import IngressesUnavailable, IngressPort
from appgw_sse.routebook import RouteBook, RouteRecord

log = logging.getLogger(__name__)

# An Ingress listing that failed (no networking API, no RBAC yet) is tried again after this.
INGRESS_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class AgicPass:
    # The namespaces whose Ingresses could not be listed, with why: nothing is restored there.
    unlisted: Mapping[str, str]
    retry: float | None  # the delay before the gateway's next pass, None when settled


class AgicMode:
    """Carries the routes of AGIC gateways in Ingress annotations and reports on them.
    `enabled` False (--no-agic): Ingresses are never read, the routes that need them say so."""

    def __init__(self, book: RouteBook, kube: IngressPort, enabled: bool) -> None:
        self.book, self.kube, self.enabled = book, kube, enabled
        self._gateways: set[str] = set()  # gateway keys last seen tagged by AGIC

    def gateways_in(self, namespace: str) -> set[str]:
        """The AGIC gateways of the namespace's routes: an Ingress change there re-plans them."""
        return {
            r.gateway_key
            for r in self.book.in_namespace(namespace)
            if r.gateway_key in self._gateways
        }

    def left(self, gateway_key: str) -> None:
        """The gateway was read without AGIC's tags."""
        self._gateways.discard(gateway_key)

    async def reconcile(
        self,
        gateway_key: str,
        records: list[RouteRecord],
        plan: Plan,
        document: Mapping[str, Any],
        planned: Mapping[str, RouteIntent],
    ) -> AgicPass:
        """Carry the routes' values in AGIC's Ingress annotations, namespace by namespace, and
        report (the gateway is only read)."""
        self._gateways.add(gateway_key)
        name = name_from_id(plan.gateway_id)
        served: dict[str, list[str]] = {}
        shared: dict[str, str] = {}  # route key -> the other Services its values reach
        failed: dict[str, str] = {}
        for namespace in sorted({r.namespace for r in records}):
            # Every route of the namespace on an AGIC gateway: they share its Ingresses.
            routes = [
                r.intent
                for r in self.book.in_namespace(namespace)
                if r.intent and not r.deleting and r.gateway_key in self._gateways
            ]
            release = any(
                r.deleting and not r.restore_on_delete for r in records if r.namespace == namespace
            )
            ledger = await self.kube.load_ingress_ledger(namespace)
            if ledger.is_empty and not any(r.backend_service for r in routes):
                continue  # no route there names a Service: no Ingress carries anything
            if not self.enabled:
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
        await self._report(name, records, plan, document, planned, served, shared, failed)
        return AgicPass(failed, INGRESS_RETRY_SECONDS if failed and self.enabled else None)

    async def _report(
        self,
        name: str,
        records: list[RouteRecord],
        plan: Plan,
        document: Mapping[str, Any],
        planned: Mapping[str, RouteIntent],
        served: Mapping[str, list[str]],
        shared: Mapping[str, str],
        failed: Mapping[str, str],
    ) -> None:
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
                            + (f"; retrying in {INGRESS_RETRY_SECONDS:g}s" if self.enabled else ""),
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
