"""Desired state -> plan: the exact changes to one gateway's owned fields.

plan_gateway() is pure. It sees every route of this operator (`owner`) that targets the
gateway, the gateway document as it is now (with the claims of every operator in its tags,
core/claims.py), and this operator's ledger, and returns the changes (possibly none), the claims
and ledger to persist, an outcome per route and notices for users. Deleting a route is planning
without it. Every owned field (core/fields.py) is planned by the same rules: a place is set to
its original combined with what every remaining claim needs.
"""

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from appgw_sse.core import claims as cl
from appgw_sse.core import document as doc
from appgw_sse.core.claims import Claims, Original
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

    @property
    def text(self) -> str:
        """`label before -> after`, for logs, Events and conditions."""
        return f"{self.label} {self.field.held(self.before)} -> {self.field.held(self.after)}"


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


# The owner of a plan made without naming one (`appgw-sse plan`, tests): one cluster.
DEFAULT_OWNER = "default"


@dataclass(frozen=True)
class Plan:
    gateway_id: str
    changes: tuple[Change, ...]
    ledger: Ledger
    outcomes: Mapping[str, RouteOutcome]
    notices: tuple[Notice, ...] = ()
    owner: str = DEFAULT_OWNER
    # The claims on the gateway as planned from, and as this plan leaves them.
    claims_before: Claims = dataclasses.field(default_factory=Claims)
    claims: Claims = dataclasses.field(default_factory=Claims)
    # The gateway's claim tags are an earlier instance's: replaced by the next write.
    stale_tags: bool = False

    @property
    def claims_changed(self) -> bool:
        return self.claims != self.claims_before

    @property
    def has_changes(self) -> bool:
        """Whether the plan writes the gateway: values, or only the claims (one PUT either
        way, e.g. adopting a ledger or writing again a claim that vanished)."""
        return bool(self.changes) or self.claims_changed

    @property
    def described(self) -> str:
        """The value changes and the claims' change, for logs and Events."""
        return "; ".join(part for part in (self.summary, self.claims_summary) if part)

    @property
    def claims_summary(self) -> str:
        """What the plan does to the claims, for logs and Events ("" when nothing)."""
        if not self.claims_changed:
            return ""
        before = self.claims_before.needs.get(self.owner, {})
        after = self.claims.needs.get(self.owner, {})
        if not after:
            what = f"claim of {self.owner} removed"
        elif not before:
            what = f"claim of {self.owner} written ({self.claims.describe(self.owner)})"
        elif before != after:
            what = f"claim of {self.owner} now {self.claims.describe(self.owner)}"
        else:
            what = f"claims of {self.owner} recorded again"
        others = self.claims.others(self.owner)
        if others:
            what += f"; claims of {', '.join(others)} kept"
        if self.claims.is_empty:
            what += "; no claim left: originals tag removed"
        return what

    @property
    def summary(self) -> str:
        """One line for logs, Events and conditions: each change as `field before -> after`."""
        return "; ".join(c.text for c in self.changes)

    def summary_for(self, route: str) -> str:
        """The changes `route` needs, the others left out: a route that leaves a field to
        others (responseBuffering Unmanaged) is not credited with changing it."""
        return "; ".join(c.text for c in self.changes if route in c.routes)

    @property
    def attributed(self) -> str:
        """Each change with the routes that need it, for the log."""
        return "; ".join(
            f"{c.text} for " + (f"routes {', '.join(c.routes)}" if c.routes else self._unrouted(c))
            for c in self.changes
        )

    def _unrouted(self, change: Change) -> str:
        """Why a change no route of this cluster asked for is made: a restore, or the needs of
        other clusters' claims."""
        others = [o for o in self.claims.others(self.owner) if change.place in self.claims.needs[o]]
        return f"the claims of {', '.join(others)}" if others else "no route (restored)"

    def without(self, held: set[Place], previous: Ledger) -> "Plan":
        """This plan minus the changes to `held`; their ownership and claims stay as they
        were."""
        if not held:
            return self
        owned = dict(self.ledger.owned)
        for place in held:
            owned.pop(place, None)
            if place in previous.owned:
                owned[place] = previous.owned[place]
        needs = dict(self.claims.needs.get(self.owner, {}))
        before = self.claims_before.needs.get(self.owner, {})
        for place in held:
            needs.pop(place, None)
            if place in before:
                needs[place] = before[place]
        kept = {p: o for p, o in self.claims_before.originals.items() if p in held}
        claims = self.claims.with_originals(kept).with_needs(self.owner, needs)
        return dataclasses.replace(
            self,
            changes=tuple(c for c in self.changes if c.place not in held),
            ledger=self.ledger.with_owned(owned),
            claims=claims,
        )

    def holds_in(self, document: doc.Document) -> bool:
        """Whether the document is the instance the plan was made for, its claims are those
        the plan saw, and every change still starts from the value the plan saw."""
        return (
            self.ledger.belongs_to(document)
            and cl.read(document)[0].same_as(self.claims_before)
            and all(change.place.read(document) == change.before for change in self.changes)
        )

    def apply_to(self, document: doc.Document) -> dict[str, Any]:
        """The document with exactly this plan's changes made, values and claims (nothing
        else differs; the user's tags are kept)."""
        rewrite = self.claims_changed or (self.stale_tags and bool(self.changes))
        result = cl.with_tags(document, self.claims) if rewrite else dict(document)
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
        undrained = [s for s in route.backend_settings if (drains.get(s) or 0) <= 0]
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


def _everyone_blocked(
    gateway_id: str,
    owner: str,
    routes: Sequence[RouteIntent],
    blocked: dict[str, RouteOutcome],
    ledger: Ledger,
    claims: Claims,
    reason: Reason,
    message: str,
) -> Plan:
    """A plan that writes nothing: every route not blocked already gets `reason`."""
    outcomes = dict(blocked)
    for route in routes:
        outcomes.setdefault(route.key, RouteOutcome(reason=reason, message=message))
    return Plan(
        gateway_id=gateway_id,
        changes=(),
        ledger=ledger,
        outcomes=dict(sorted(outcomes.items())),
        notices=(Notice(level="Warning", message=message, reason=reason),),
        owner=owner,
        claims_before=claims,
        claims=claims,
    )


def _in_order(place: Place) -> tuple[int, str]:
    """Places in the order of FIELDS, then of backend setting."""
    return FIELDS.index(place.field), place.setting or ""


def _requirements(
    routes: Sequence[RouteIntent],
) -> tuple[dict[Place, Value], dict[Place, list[str]]]:
    """What `routes` require of each place, combined, and which of them require something."""
    required: dict[Place, Value] = {}
    contributors: dict[Place, list[str]] = {}
    for field in FIELDS:
        for route in routes:
            need = field.required_by(route)
            if need is None:
                continue
            for place in places(route, field):
                known = required.get(place)
                required[place] = need if known is None else field.combine(known, need)
                contributors.setdefault(place, []).append(route.key)
    return required, contributors


@dataclass(frozen=True)
class _Placed:
    """The plan for one place."""

    place: Place
    after: Value  # what the place holds after the plan
    change: Change | None
    owned: Owned | None  # this owner's entry after the plan (ledger and claimed original)
    need: Value | None  # this owner's claim on the place after the plan
    dropped: bool  # a claim of ours dropped without a value change of its own
    notice: str | None


@dataclass(frozen=True)
class _Basis:
    """What each place of one gateway is planned from."""

    document: doc.Document
    claims: Claims
    ledger: Ledger
    others: Sequence[str]  # the owners of the other claims
    mine: Mapping[Place, Value]  # this owner's claim as the plan found it
    required: Mapping[Place, Value]  # by this owner's active routes
    contributors: Mapping[Place, Sequence[str]]
    let_go: set[Place]  # released routes' and forgotten claims': left as they are, not restored

    def plan(self) -> list[_Placed]:
        """Every place a route needs or a record speaks of, planned, in order."""
        recorded = {p for n in self.claims.needs.values() for p in n}
        recorded |= set(self.ledger.owned) | set(self.claims.originals)
        current = {field: field.read(self.document) for field in FIELDS}
        return [
            _plan_place(place, current[place.field][place.setting], self)
            for place in sorted(set(self.required) | recorded, key=_in_order)
            # else a setting we owned was removed from the gateway: nothing to restore
            if place.setting in current[place.field]
        ]

    def entry(self, place: Place) -> Owned | None:
        """What this owner knows of a place: the original the claim tags record and the value
        they imply."""
        tagged = self.claims.originals.get(place)
        implied = self.claims.implied(place)
        if tagged is not None and implied is not None:
            return Owned(tagged.value, implied, original_absent=tagged.absent)
        return self.ledger.owned.get(place)  # no claim recorded: adopt this ledger's


def _plan_place(place: Place, before: Value, basis: _Basis) -> _Placed:
    """One place: what this owner's routes and the other claims need of it, and what the plan
    does to it."""
    field, entry = place.field, basis.entry(place)
    own, theirs = basis.required.get(place), basis.claims.combined(place, basis.others)
    need = own if theirs is None else theirs if own is None else field.combine(own, theirs)
    decision = _decide(place, before, need, entry, place in basis.let_go)
    absent_after = (
        decision.kind == "restore"
        and entry is not None
        and entry.original_absent
        and decision.desired == entry.original
    )
    desired = decision.desired
    if decision.kind == "restore" and not absent_after and desired != before:
        desired = place.as_written(basis.document, desired)
    owned = None
    if decision.owned is not None and own is not None:
        # Whether the original was no property at all: seen when first owned, kept.
        absent = (
            entry.original_absent
            if entry is not None and decision.owned.original == entry.original
            else field.absent(basis.document, place.setting)
        )
        owned = dataclasses.replace(decision.owned, original_absent=absent)
    dropped = (
        owned is None
        and place in basis.mine
        and (place in basis.let_go or (entry is not None and before != entry.applied))
    )
    # Notices about a place only this operator's routes or records involve.
    involved = own is not None or place in basis.mine or place in basis.ledger.owned
    change = None
    if desired != before and decision.kind is not None:
        routes = tuple(basis.contributors.get(place, ()))
        change = Change(place, before, desired, decision.kind, routes, absent_after)
    return _Placed(
        place=place,
        after=desired,
        change=change,
        owned=owned,
        need=own if owned is not None else None,
        dropped=dropped,
        notice=decision.notice if involved else None,
    )


def _claims_after(claims: Claims, owner: str, placed: Sequence[_Placed]) -> Claims:
    """The claims as the plan leaves them: this owner's needs, and the originals it is the
    first to record."""
    first = {
        p.place: Original(p.owned.original, p.owned.original_absent)
        for p in placed
        if p.owned is not None
    }
    needs = {p.place: p.need for p in placed if p.need is not None}
    mine = claims.needs.get(owner, {})
    kept = needs | {p.place: mine[p.place] for p in placed if p.dropped}
    if not any(p.change for p in placed) and (
        claims.with_originals(first).with_needs(owner, kept) == claims
    ):
        # Only released claims of ours would go: not worth a PUT of their own (each can cut
        # streams); the ledger forgets them now, the next write drops them.
        return claims
    return claims.with_originals(first).with_needs(owner, needs)


def _tag_limit_exceeded(
    document: doc.Document, claims: Claims, after: Claims, owner: str
) -> str | None:
    """Why the claims after the plan cannot be written (None: they can): more tags than the
    gateway has room for, unless they are the claims it carries already."""
    room = max(cl.tag_room(document), 0)
    if after == claims or len(after.tags()) <= max(room, len(claims.tags())):
        return None
    return (
        f"gateway {doc.gateway_name(document)} has room for {room} more "
        f"tag{'' if room == 1 else 's'} (ARM allows {cl.MAX_TAGS} per resource; "
        f"{cl.MAX_TAGS - room} are the gateway's own) but the claims of "
        f"{', '.join(sorted({owner, *claims.others(owner)}))} need {len(after.tags())}: nothing "
        "is written; remove tags from the gateway, or release the claims of clusters that no "
        "longer exist (appgw-sse claims release)"
    )


def _settled(
    document: doc.Document, placed: Iterable[_Placed]
) -> dict[OwnedField, dict[str | None, Value]]:
    """Every owned value as the plan leaves the gateway."""
    settled = {field: dict(field.read(document)) for field in FIELDS}
    for p in placed:
        settled[p.place.field][p.place.setting] = p.after
    return settled


def _notices(
    document: doc.Document,
    stale: bool,
    placed: Iterable[_Placed],
    routes: Iterable[RouteIntent],
    settled: Mapping[OwnedField, Mapping[str | None, Value]],
) -> list[Notice]:
    """For users: claim tags of an earlier instance, then each place's, then each route's."""
    notices: list[Notice] = []
    if stale:
        notices.append(
            Notice(
                level="Normal",
                message=f"gateway {doc.gateway_name(document)} carries claim tags of an earlier "
                "instance of it (a gateway deleted and created again under its id): disregarded, "
                "and replaced by the next update",
            )
        )
    notices += [Notice(level="Warning", message=p.notice) for p in placed if p.notice]
    external = doc.settings_with_internet_backends(document)
    notices += _route_notices(
        routes, settled[REQUEST_TIMEOUT], external, settled[CONNECTION_DRAINING]
    )
    return notices


def _applied_outcomes(
    routes: Iterable[RouteIntent], settled: Mapping[OwnedField, Mapping[str | None, Value]]
) -> dict[str, RouteOutcome]:
    """Each route applied, with the values it depends on as the plan leaves them."""
    outcomes = {}
    for route in routes:
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
    return outcomes


def plan_gateway(
    gateway_id: str,
    routes: Sequence[RouteIntent],
    document: doc.Document,
    ledger: Ledger | None = None,
    released: Sequence[RouteIntent] = (),
    owner: str = DEFAULT_OWNER,
) -> Plan:
    """Plan one gateway for the operator `owner`. `released` are routes deleted with
    restoreOnDelete false: what only they needed is left as it is and forgotten instead of
    restored. A ledger of another instance of the gateway counts as none; the ledger supplies
    the originals of places the gateway's tags record nothing for (adoption); given, it also
    says which of this owner's claims are still its own (see `forgotten`)."""
    given_ledger = ledger
    ledger = (ledger or Ledger(gateway_id=gateway_id)).bound_to(document)
    blocked = _blocked_outcomes(routes, document)
    if doc.agic_tags(document):
        return Plan(gateway_id=gateway_id, changes=(), ledger=ledger, outcomes=blocked, owner=owner)
    name = doc.gateway_name(document)
    claims, problems, stale = cl.read(document)
    refuse = functools.partial(
        _everyone_blocked, gateway_id, owner, routes, blocked, ledger, claims
    )
    if problems:
        return refuse(
            Reason.GATEWAY_TAGS_INVALID,
            f"gateway {name} carries tags under the {cl.PREFIX} prefix that are not claims of "
            f"appgw-sse ({'; '.join(problems)}): nothing is written until they are removed or "
            "corrected, so that no claim of another cluster is lost",
        )
    mine = claims.needs.get(owner, {})
    # A claim of ours that our ledger no longer owns was released (restoreOnDelete false, or
    # a value someone else changed): left as it is, dropped by our next write (_claims_after).
    forgotten = set() if given_ledger is None else set(mine) - set(ledger.owned)
    active = sorted((r for r in routes if r.key not in blocked), key=lambda r: r.key)
    required, contributors = _requirements(active)
    let_go = set(_requirements(released)[0]) | forgotten
    others = claims.others(owner)
    placed = _Basis(document, claims, ledger, others, mine, required, contributors, let_go).plan()
    after = _claims_after(claims, owner, placed)
    exceeded = _tag_limit_exceeded(document, claims, after, owner)
    if exceeded is not None:
        return refuse(Reason.GATEWAY_TAG_LIMIT, exceeded)
    settled = _settled(document, placed)
    return Plan(
        gateway_id=gateway_id,
        changes=tuple(p.change for p in placed if p.change is not None),
        ledger=Ledger(gateway_id=ledger.gateway_id, resource_guid=ledger.resource_guid).with_owned(
            {p.place: p.owned for p in placed if p.owned is not None}
        ),
        outcomes=dict(sorted((blocked | _applied_outcomes(active, settled)).items())),
        notices=tuple(_notices(document, stale, placed, active, settled)),
        owner=owner,
        claims_before=claims,
        claims=after,
        stale_tags=stale,
    )


def release_claims(gateway_id: str, document: doc.Document, owner: str) -> Plan:
    """The claim of `owner` removed (a cluster that no longer exists): each place it claimed is
    set to what the remaining claims need, or back to its original when none remains, where
    the gateway still holds what the claims imply; a value someone changed outside the claims is
    left as it is."""
    claims, problems, _ = cl.read(document)
    if problems:
        raise ValueError(f"the gateway's claim tags are unreadable: {'; '.join(problems)}")
    if owner not in claims.owners():
        raise ValueError(
            f"no claim of {owner} on gateway {doc.gateway_name(document)} (claims: "
            f"{', '.join(claims.owners()) or 'none'})"
        )
    after = claims.with_needs(owner, {})
    changes, notices = [], []
    for place in sorted(claims.needs[owner], key=_in_order):
        before, implied = place.read(document), claims.implied(place)
        original = claims.originals.get(place)
        if before is None or original is None:
            continue
        if before != implied:
            notices.append(
                Notice(
                    level="Warning",
                    message=f"left {place.field.describe(place.setting)} at "
                    f"{place.field.show(before)}: someone changed it outside the claims",
                )
            )
            continue
        desired = after.implied(place)
        absent_after = desired is None and original.absent
        desired = original.value if desired is None else desired
        if not absent_after and desired != before:
            desired = place.as_written(document, desired)
        if desired != before:
            changes.append(
                Change(
                    place=place,
                    before=before,
                    after=desired,
                    kind="restore",
                    absent_after=absent_after,
                )
            )
    return Plan(
        gateway_id=gateway_id,
        changes=tuple(changes),
        ledger=Ledger(gateway_id=gateway_id),
        outcomes={},
        notices=tuple(notices),
        owner=owner,
        claims_before=claims,
        claims=after,
    )
