"""Desired state -> plan: the exact changes to one gateway's owned fields.

plan_gateway() is pure. It sees every route that targets the gateway, the gateway document as
it is now, and the ownership ledger, and returns the changes (possibly none), the ledger to
persist, an outcome per route and notices for users. Deleting a route is planning without it.
Every owned field (core/fields.py) is planned by the same rules.
"""

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from appgw_sse.core import document as doc
from appgw_sse.core.conditions import Reason
from appgw_sse.core.contract import (
    DEFAULT_UPDATE_DRAIN_SECONDS,
    EXTERNAL_BACKEND_TIMEOUT_CAP,
    HTTP2_SAFE_IDLE_SECONDS,
)
from appgw_sse.core.duration import format_duration
from appgw_sse.core.fields import (
    CONNECTION_DRAINING,
    FIELDS,
    REQUEST_TIMEOUT,
    OwnedField,
    Place,
    Value,
    places,
)
from appgw_sse.core.intent import RouteIntent
from appgw_sse.core.ledger import Ledger, Owned

ChangeKind = Literal["apply", "drift", "restore"]


@dataclass(frozen=True)
class Change:
    """One owned value going from `before` to `after`."""

    place: Place
    before: Value
    after: Value
    kind: ChangeKind
    routes: tuple[str, ...] = ()
    absent_after: bool = False  # a restore to no property at all (its original shape)

    @property
    def field(self) -> OwnedField:
        return self.place.field

    @property
    def setting(self) -> str | None:
        return self.place.setting

    @property
    def label(self) -> str:
        return self.place.label


@dataclass(frozen=True)
class RouteOutcome:
    reason: Reason
    message: str
    values: Mapping[Place, Value] = dataclasses.field(default_factory=dict)  # as planned


@dataclass(frozen=True)
class Notice:
    level: Literal["Normal", "Warning"]
    message: str
    route: str | None = None
    reason: Reason = Reason.NOTICE


@dataclass(frozen=True)
class Plan:
    gateway_id: str
    changes: tuple[Change, ...]
    ledger: Ledger
    outcomes: Mapping[str, RouteOutcome]
    notices: tuple[Notice, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def summary(self) -> str:
        """One line for logs, Events and conditions: each change as `field before -> after`."""
        return "; ".join(f"{c.label} {c.before} -> {c.after}" for c in self.changes)

    def summary_for(self, route: str) -> str:
        """The changes `route` needs, the others left out: a route that leaves a field to
        others (responseBuffering Unmanaged) is not credited with changing it."""
        return "; ".join(
            f"{c.label} {c.before} -> {c.after}" for c in self.changes if route in c.routes
        )

    @property
    def attributed(self) -> str:
        """Each change with the routes that need it, for the log."""
        return "; ".join(
            f"{c.label} {c.before} -> {c.after} for "
            + (f"routes {', '.join(c.routes)}" if c.routes else "no route (restored)")
            for c in self.changes
        )

    def without(self, held: set[Place], previous: Ledger) -> "Plan":
        """This plan minus the changes to `held`; their ownership stays as it was."""
        if not held:
            return self
        owned = dict(self.ledger.owned)
        for place in held:
            owned.pop(place, None)
            if place in previous.owned:
                owned[place] = previous.owned[place]
        return dataclasses.replace(
            self,
            changes=tuple(c for c in self.changes if c.place not in held),
            ledger=self.ledger.with_owned(owned),
        )

    def holds_in(self, document: doc.Document) -> bool:
        """Whether the document is the instance the plan was made for and every change still
        starts from the value the plan saw."""
        return self.ledger.belongs_to(document) and all(
            change.place.read(document) == change.before for change in self.changes
        )

    def apply_to(self, document: doc.Document) -> dict[str, Any]:
        """The document with exactly this plan's changes made (nothing else differs)."""
        result = dict(document)
        for field in FIELDS:
            values = {c.setting: c.after for c in self.changes if c.field is field}
            if values:
                result = field.write(result, values)
            absent = [c.setting for c in self.changes if c.field is field and c.absent_after]
            if absent:
                result = field.remove(result, absent)
        return result


@dataclass(frozen=True)
class _Decision:
    desired: Value
    owned: Owned | None = None
    kind: ChangeKind | None = None
    notice: str | None = None


def _decide(
    place: Place, current: Value, required: Value | None, entry: Owned | None, released: bool
) -> _Decision:
    """One place: what to set, whether the operator owns it afterwards, and why."""
    field, what = place.field, place.field.describe(place.setting)
    foreign = entry is not None and current != entry.applied
    if required is None:
        if entry is None or released:
            return _Decision(desired=current)
        if foreign:
            return _Decision(
                desired=current,
                notice=f"left {what} at {field.show(current)}: someone changed it after the "
                f"operator set it to {field.show(entry.applied)}, so the original "
                f"{field.show(entry.original)} is not restored",
            )
        return _Decision(desired=entry.original, kind="restore")
    if entry is None or foreign:
        if field.satisfies(current, required):
            notice = None
            if entry is not None:
                notice = (
                    f"{what} was changed by someone else to {field.show(current)}; it satisfies "
                    f"the {field.show(required)} needed, so the operator no longer owns it"
                )
            return _Decision(desired=current, notice=notice)
        original = entry.original if entry is not None else current
        desired = field.settle(original, required)
        return _Decision(
            desired=desired,
            owned=Owned(original=original, applied=desired),
            kind="drift" if foreign else "apply",
        )
    desired = field.settle(entry.original, required)
    if desired == entry.original:
        return _Decision(desired=desired, kind="restore")
    return _Decision(
        desired=desired, owned=Owned(original=entry.original, applied=desired), kind="apply"
    )


def _blocked_outcomes(
    routes: Sequence[RouteIntent], document: doc.Document
) -> dict[str, RouteOutcome]:
    """Routes that cannot be applied at all (nothing of theirs is written: no partial writes)."""
    blocked = {}
    tags = doc.agic_tags(document)
    for route in routes:
        missing = doc.missing_settings(document, route.backend_settings)
        unsupported = [
            f.unsupported_on_v1
            for f in FIELDS
            if f.unsupported_on_v1 and f.required_by(route) is not None
        ]
        if tags:
            blocked[route.key] = RouteOutcome(
                reason=Reason.MANAGED_BY_AGIC,
                message=f"gateway carries AGIC's tag {tags[0]}: AGIC rebuilds backend settings "
                "and resets globalConfiguration on every sync, so the operator never writes it; "
                "set the Ingress annotation appgw.ingress.kubernetes.io/request-timeout instead "
                "and exclude this gateway from AGIC to manage buffering",
            )
        elif missing:
            blocked[route.key] = RouteOutcome(
                reason=Reason.BACKEND_SETTINGS_NOT_FOUND,
                message=f"gateway {doc.gateway_name(document)} has no backend settings named "
                f"{', '.join(missing)} (spec.gateway.backendSettings)",
            )
        elif unsupported and doc.is_v1_sku(document):
            blocked[route.key] = RouteOutcome(
                reason=Reason.UNSUPPORTED_SKU,
                message=f"SKU tier {doc.sku_tier(document)} {unsupported[0]}",
            )
    return blocked


def draining_off_message(settings: Sequence[str]) -> str:
    return (
        f"connection draining is off on {', '.join(settings)}: any update of the gateway (by "
        f"anyone) ends the streams of {'these settings' if len(settings) > 1 else 'this setting'}"
        f" within {DEFAULT_UPDATE_DRAIN_SECONDS}s, without a drain; set spec.drainTimeout to give "
        "them time to reconnect elsewhere"
    )


def _route_notices(
    routes: Iterable[RouteIntent],
    timeouts: Mapping[str | None, Value],
    external: set[str],
    drains: Mapping[str | None, Value],
) -> list[Notice]:
    notices = []
    for route in routes:
        undrained = [s for s in route.backend_settings if not drains.get(s)]
        if route.drain_timeout is None and undrained:
            notices.append(
                Notice(
                    level="Warning",
                    route=route.key,
                    message=draining_off_message(undrained),
                    reason=Reason.DRAINING_OFF,
                )
            )
        if route.idle_seconds > HTTP2_SAFE_IDLE_SECONDS:
            notices.append(
                Notice(
                    level="Warning",
                    route=route.key,
                    message=f"idleInterval {format_duration(route.idle_seconds)} is longer than "
                    "HTTP/2 clients survive (the gateway's HTTP/2 frontend idle timeout is a "
                    "fixed 180s): send heartbeat comments at least every 170s",
                    reason=Reason.HTTP2_IDLE_TIMEOUT,
                )
            )
        for setting in route.backend_settings:
            if setting in external and timeouts[setting] > EXTERNAL_BACKEND_TIMEOUT_CAP:
                notices.append(
                    Notice(
                        level="Warning",
                        route=route.key,
                        message=f"{setting} requestTimeout {timeouts[setting]}s exceeds the 240s "
                        "that holds towards internet-facing backends in its pool",
                        reason=Reason.INTERNET_BACKEND_TIMEOUT_CAP,
                    )
                )
    return notices


def plan_gateway(
    gateway_id: str,
    routes: Sequence[RouteIntent],
    document: doc.Document,
    ledger: Ledger | None = None,
    released: Sequence[RouteIntent] = (),
) -> Plan:
    """Plan one gateway. `released` are routes deleted with restoreOnDelete false: what only
    they needed is left as it is and forgotten instead of restored. A ledger of another
    instance of the gateway counts as none."""
    ledger = (ledger or Ledger(gateway_id=gateway_id)).bound_to(document)
    blocked = _blocked_outcomes(routes, document)
    if doc.agic_tags(document):
        return Plan(gateway_id=gateway_id, changes=(), ledger=ledger, outcomes=blocked)
    active = sorted((r for r in routes if r.key not in blocked), key=lambda r: r.key)

    changes: list[Change] = []
    notices: list[Notice] = []
    owned: dict[Place, Owned] = {}
    settled: dict[OwnedField, dict[str | None, Value]] = {}
    for field in FIELDS:
        required: dict[Place, Value] = {}
        contributors: dict[Place, list[str]] = {}
        for route in active:
            need = field.required_by(route)
            if need is None:
                continue
            for place in places(route, field):
                known = required.get(place)
                required[place] = need if known is None else field.combine(known, need)
                contributors.setdefault(place, []).append(route.key)
        let_go = {p for r in released if field.required_by(r) is not None for p in places(r, field)}
        current = field.read(document)
        settled[field] = final = dict(current)
        candidates = set(required) | {p for p in ledger.owned if p.field is field}
        for place in sorted(candidates, key=lambda p: p.setting or ""):
            if place.setting not in current:
                continue  # a setting we owned was removed from the gateway: nothing to restore
            before = current[place.setting]
            decision = _decide(
                place, before, required.get(place), ledger.owned.get(place), place in let_go
            )
            final[place.setting] = decision.desired
            entry = ledger.owned.get(place)
            if decision.owned is not None:
                # Whether the original was no property at all: seen when first owned, kept.
                absent = (
                    entry.original_absent
                    if entry is not None and decision.owned.original == entry.original
                    else field.absent(document, place.setting)
                )
                owned[place] = dataclasses.replace(decision.owned, original_absent=absent)
            if decision.notice:
                notices.append(Notice(level="Warning", message=decision.notice))
            if decision.desired != before and decision.kind is not None:
                changes.append(
                    Change(
                        place=place,
                        before=before,
                        after=decision.desired,
                        kind=decision.kind,
                        routes=tuple(contributors.get(place, ())),
                        absent_after=decision.kind == "restore"
                        and entry is not None
                        and entry.original_absent
                        and decision.desired == entry.original,
                    )
                )

    external = doc.settings_with_internet_backends(document)
    notices.extend(
        _route_notices(active, settled[REQUEST_TIMEOUT], external, settled[CONNECTION_DRAINING])
    )
    outcomes = dict(blocked)
    for route in active:
        values = {p: settled[f][p.setting] for f in FIELDS for p in places(route, f)}
        parts = [
            f"{f.describe(p.setting)} {f.show(values[p])}"
            for f in FIELDS
            if f.required_by(route) is not None
            for p in places(route, f)
        ]
        outcomes[route.key] = RouteOutcome(
            reason=Reason.APPLIED, message="; ".join(parts), values=values
        )
    return Plan(
        gateway_id=gateway_id,
        changes=tuple(changes),
        ledger=Ledger(gateway_id=ledger.gateway_id, resource_guid=ledger.resource_guid).with_owned(
            owned
        ),
        outcomes=dict(sorted(outcomes.items())),
        notices=tuple(notices),
    )
