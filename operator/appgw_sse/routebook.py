"""The route book: what the operator knows of each SseRoute, and the one writer of its status.

kopf's route events come in through observe() and forget() (see handlers.routes). Each returns the
RouteChange it made and hands it to the listeners: the gateway and pod workers, which subscribe
when they are constructed. Both workers report through write_status(), one at a time per route,
each update merged over the other's conditions; a write that would change nothing is skipped.
"""

import asyncio
import contextlib
import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from appgw_sse.core import conditions as cond
from appgw_sse.core.contract import FINALIZER
from appgw_sse.core.intent import RouteIntent
from appgw_sse.core.policy import parse_rules, refusal
from appgw_sse.models.route import SpecError, SseRouteSpec, parse_spec
from appgw_sse.models.status import BackendsStatus, SseRouteStatus
from appgw_sse.ports import StatusPort


@dataclass
class RouteRecord:
    """What the operator knows of one SseRoute."""

    namespace: str
    name: str
    uid: str
    generation: int
    deleting: bool
    intent: RouteIntent | None = None  # the last valid, allowed requirements (None: none)
    spec: SseRouteSpec | None = None  # the last valid, allowed spec
    intent_generation: int = 0  # the generation `intent` was taken from
    # The requirements the GatewayConfigured condition was computed for: when they are not the
    # current ones, it says nothing about the current generation.
    configured_for: RouteIntent | None = None
    restore_on_delete: bool = True
    gateway_status: dict[str, Any] | None = None
    mode: str | None = None  # Gateway or AGIC, once its gateway was read
    ingresses: tuple[str, ...] | None = None  # AGIC mode: the Ingresses that carry its values
    backends_status: BackendsStatus | None = None
    conditions: tuple[cond.Condition, ...] = ()
    written: dict[str, Any] | None = None  # the status last written (skip identical writes)
    notices: set[str] = field(default_factory=set)  # messages already posted as Events
    status_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reported: asyncio.Condition = field(default_factory=asyncio.Condition)  # after each report

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ref(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid}

    @property
    def gateway_key(self) -> str | None:
        return self.intent.gateway_id.lower() if self.intent else None

    @property
    def serves_pods(self) -> bool:
        return self.spec is not None and self.spec.backend is not None

    @property
    def checks_stream(self) -> bool:
        return self.spec is not None and self.spec.stream_check is not None


@dataclass(frozen=True)
class RouteChange:
    """What one route event changed."""

    record: RouteRecord
    gateways: frozenset[str]  # the gateways whose plan it may change (by gateway key)
    # False when the new generation was rejected: the last valid requirements stay in force.
    requirements_changed: bool
    forgotten: bool = False  # the route is gone from the API


Listener = Callable[[RouteChange], None]


def _known_conditions(body: Mapping[str, Any]) -> tuple[cond.Condition, ...]:
    """The route's conditions as last written; one that does not parse (e.g. an older
    operator's empty message) is rewritten rather than trusted."""
    known = []
    for raw in (body.get("status") or {}).get("conditions") or ():
        with contextlib.suppress(ValidationError):
            known.append(cond.Condition.model_validate(raw))
    return tuple(known)


def _comparable(status: dict[str, Any]) -> dict[str, Any]:
    """A status as written, less lastTransitionTime: equal ones need no write."""
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or ()
    ]
    return {**status, "conditions": conditions}


def _take_stored_status(record: RouteRecord, body: Mapping[str, Any]) -> None:
    """What the route's status holds is what a restarted operator would write again: start
    from it, so that only changes get written (a restart at 1,000 routes wrote 1,806 times)."""
    with contextlib.suppress(ValidationError):
        stored = SseRouteStatus.model_validate(body.get("status") or {})
        record.gateway_status, record.backends_status = stored.gateway, stored.backends
        record.mode, record.ingresses = stored.mode, stored.ingresses
        record.written = _comparable(
            stored.model_dump(mode="json", by_alias=True, exclude_none=True)
        )


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RouteBook:
    def __init__(self, kube: StatusPort, allowed_gateways: Sequence[str]) -> None:
        self.kube, self.allowed_gateways = kube, parse_rules(allowed_gateways)
        self.routes: dict[str, RouteRecord] = {}
        self._listeners: list[Listener] = []
        # The routes handled before (they carry our finalizer), listed at startup, that kopf
        # has yet to hand over: until none is left, as after a restart, a pass would plan from
        # part of the routes, and could lower a value one of the others still needs, or strip
        # and re-add pods' annotations. kopf gives no sign that its first listing is handled.
        self.unseen: set[str] = set()
        # Messages already posted as Events that still live, by route uid (read at start).
        self.posted: Mapping[str, set[str]] = {}

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def on_gateway(self, gateway_key: str) -> list[RouteRecord]:
        return [r for r in self.routes.values() if r.gateway_key == gateway_key]

    def in_namespace(self, namespace: str) -> list[RouteRecord]:
        return [r for r in self.routes.values() if r.namespace == namespace]

    def listed(self) -> bool:
        """Whether every route handled before has been seen since the start."""
        return not self.unseen

    def gateway_keys(self) -> set[str]:
        return {r.gateway_key for r in self.routes.values() if r.gateway_key}

    # -- events from kopf -----------------------------------------------------------------

    async def observe(self, body: Mapping[str, Any]) -> RouteChange | None:
        """Take in the current state of a route; None when nothing the workers act on changed."""
        meta = body["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        generation, deleting = int(meta.get("generation") or 0), bool(meta.get("deletionTimestamp"))
        if FINALIZER not in (meta.get("finalizers") or ()) and not deleting:
            # Our finalizer is added first, guarded by the resourceVersion (see finalizers): a
            # status write now would make that patch fail. Its patch brings the route back here.
            return None
        record = self.routes.get(key)
        taken_in = record is None
        if record is None:
            record = self.routes[key] = RouteRecord(
                namespace=meta["namespace"],
                name=meta["name"],
                uid=meta.get("uid", ""),
                generation=generation,
                deleting=deleting,
                conditions=_known_conditions(body),
                notices=set(self.posted.get(meta.get("uid", ""), ())),
            )
            _take_stored_status(record, body)
            previous_gateway = None
        elif (record.generation, record.deleting) == (generation, deleting):
            return None  # our own status writes and metadata-only edits need no work
        else:
            # Updated in place: a status write in flight must not land on a stale copy.
            record.generation, record.deleting = generation, deleting
            previous_gateway = record.gateway_key
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError as exc:
            # Invalid input changes nothing: the last valid requirements stay in force. A
            # deleted route gets no status: the write would race the finalizer's removal.
            if not record.deleting:
                await self.write_status(record, [cond.invalid_spec(str(exc))])
                await self.kube.post_event(
                    record.ref, "Warning", cond.Reason.INVALID_SPEC, str(exc)
                )
            kept = {record.gateway_key} if record.deleting and record.gateway_key else set()
            return self._emit(RouteChange(record, frozenset(kept), requirements_changed=False))
        record.restore_on_delete = spec.restore_on_delete
        record.intent_generation = record.generation
        refused_by = refusal(spec.gateway.id, record.namespace, self.allowed_gateways)
        if refused_by is None:
            record.intent, record.spec = spec.intent(record.key), spec
            if taken_in and cond.configured_for_generation(record.conditions, record.generation):
                # A restart: the stored GatewayConfigured speaks for these requirements, so
                # Ready is not set back to Pending before the first gateway pass.
                record.configured_for = record.intent
        else:
            record.intent, record.spec = None, None
            refused = cond.gateway_not_allowed(refused_by)
            await self.write_status(record, [refused])
            await self.kube.post_event(record.ref, "Warning", refused.reason, refused.message)
        gateways = {g for g in (previous_gateway, record.gateway_key) if g}
        return self._emit(RouteChange(record, frozenset(gateways), requirements_changed=True))

    def forget(self, namespace: str, name: str) -> RouteChange | None:
        """The route is gone from the API (its finalizer was removed)."""
        record = self.routes.pop(f"{namespace}/{name}", None)
        if record is None:
            return None
        gateways = frozenset({record.gateway_key} if record.gateway_key else ())
        return self._emit(RouteChange(record, gateways, requirements_changed=False, forgotten=True))

    def _emit(self, change: RouteChange) -> RouteChange:
        for listener in self._listeners:
            listener(change)
        return change

    # -- status ---------------------------------------------------------------------------

    async def post_once(self, record: RouteRecord, level: str, reason: str, message: str) -> None:
        """An Event for a standing condition, once per route: not again while this process
        runs, nor after a restart while the one posted before still lives (`posted`)."""
        if message in record.notices:
            return
        record.notices.add(message)
        await self.kube.post_event(record.ref, level, reason, message)

    async def write_status(
        self,
        record: RouteRecord,
        updates: Sequence[cond.Condition],
        *,
        gateway: dict[str, Any] | None = None,
        backends: BackendsStatus | None = None,
        computed_for: RouteIntent | None = None,
        mode: str | None = None,
        ingresses: Sequence[str] | None = None,
    ) -> None:
        """Merge `updates` (and the gateway or backends summary) into the route's status and
        write it, unless nothing would change. `computed_for`: the requirements a
        GatewayConfigured update was computed for."""
        async with record.status_lock:
            if computed_for is not None:
                record.configured_for = computed_for
            updates = cond.true_to_generation(
                updates,
                applied=record.intent is None or record.configured_for == record.intent,
                generation=record.intent_generation,
            )
            if gateway is not None:
                record.gateway_status = gateway
            if mode is not None:
                record.mode = mode
                record.ingresses = tuple(ingresses) if ingresses is not None else None
            if backends is not None:
                record.backends_status = backends
            if not record.serves_pods:
                record.backends_status = None
            conditions = cond.merge_conditions(
                record.conditions,
                updates,
                record.generation,
                _now(),
                drop=(frozenset() if record.serves_pods else cond.BACKEND_CONDITIONS)
                | (frozenset() if record.checks_stream else {cond.STREAM_VERIFIED}),
            )
            status = SseRouteStatus(
                observed_generation=record.generation,
                request_timeout_seconds=record.intent.request_timeout if record.intent else None,
                mode=record.mode,
                ingresses=record.ingresses,
                gateway=record.gateway_status,
                backends=record.backends_status,
                conditions=conditions,
            ).model_dump(mode="json", by_alias=True, exclude_none=True)
            comparable = _comparable(status)
            if comparable != record.written:
                await self.kube.patch_route_status(record.namespace, record.name, status)
                record.conditions, record.written = conditions, comparable
        async with record.reported:
            record.reported.notify_all()
