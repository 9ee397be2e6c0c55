"""Desired state -> plan: the exact changes to one gateway's two owned fields.

plan_gateway() is pure. It sees every route that targets the gateway, the gateway document as
it is now, and the ownership ledger, and returns the changes (possibly none), the ledger to
persist, an outcome per route and notices for users. Deleting a route is planning without it.
"""

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from appgw_sse.core import document as doc
from appgw_sse.core.contract import (
    EXTERNAL_BACKEND_TIMEOUT_CAP,
    HTTP2_SAFE_IDLE_SECONDS,
    RESPONSE_BUFFERING_DISABLED,
)
from appgw_sse.core.duration import format_duration
from appgw_sse.core.ledger import Ledger, OwnedBuffering, OwnedTimeout
from appgw_sse.models.route import SseRoute


class Reason(StrEnum):
    """Condition reasons (CamelCase constants, as in metav1.Condition)."""

    APPLIED = "Applied"
    APPLYING = "Applying"
    PENDING = "Pending"
    INVALID_SPEC = "InvalidSpec"
    GATEWAY_NOT_ALLOWED = "GatewayNotAllowed"
    GATEWAY_NOT_FOUND = "GatewayNotFound"
    BACKEND_SETTINGS_NOT_FOUND = "BackendSettingsNotFound"
    UNSUPPORTED_SKU = "UnsupportedSku"
    MANAGED_BY_AGIC = "ManagedByAGIC"
    THROTTLED = "Throttled"
    AZURE_AUTH_FAILED = "AzureAuthFailed"
    AZURE_ERROR = "AzureError"
    DRIFT_CONFLICT = "DriftConflict"
    GATEWAY_RECREATED = "GatewayRecreated"
    DRY_RUN = "DryRun"
    ACCEPTED = "Accepted"
    NO_PODS_SELECTED = "NoPodsSelected"
    ANNOTATED = "Annotated"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class RouteIntent(_Frozen):
    """What one valid route requires of its gateway."""

    key: str
    gateway_id: str
    backend_settings: tuple[str, ...]
    request_timeout: int
    idle_seconds: int
    disable_buffering: bool

    @classmethod
    def of(cls, route: SseRoute) -> "RouteIntent":
        spec = route.spec
        return cls(
            key=route.key,
            gateway_id=spec.gateway.id,
            backend_settings=spec.gateway.backend_settings,
            request_timeout=spec.request_timeout_seconds,
            idle_seconds=spec.idle_seconds,
            disable_buffering=spec.response_buffering == RESPONSE_BUFFERING_DISABLED,
        )


ChangeKind = Literal["apply", "drift", "restore"]


class Change(_Frozen):
    """One owned field going from `before` to `after`; setting is None for buffering."""

    setting: str | None
    before: int | bool
    after: int | bool
    kind: ChangeKind
    routes: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        if self.setting is None:
            return "properties.globalConfiguration.enableResponseBuffering"
        return f"properties.backendHttpSettingsCollection[{self.setting}].properties.requestTimeout"

    @property
    def label(self) -> str:
        if self.setting is None:
            return "globalConfiguration.enableResponseBuffering"
        return f"backendHttpSettingsCollection[{self.setting}].requestTimeout"


class RouteOutcome(_Frozen):
    reason: Reason
    message: str
    request_timeouts: dict[str, int] = {}
    response_buffering: bool | None = None


class Notice(_Frozen):
    level: Literal["Normal", "Warning"]
    message: str
    route: str | None = None


class Plan(_Frozen):
    gateway_id: str
    changes: tuple[Change, ...]
    ledger: Ledger
    outcomes: dict[str, RouteOutcome]
    notices: tuple[Notice, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def summary(self) -> str:
        """One line for logs, Events and conditions: each change as `field before -> after`."""
        return "; ".join(f"{c.label} {c.before} -> {c.after}" for c in self.changes)

    def without(self, paths: set[str], previous: Ledger) -> "Plan":
        """This plan minus the changes to `paths`; their ownership stays as it was."""
        if not paths:
            return self
        kept = tuple(c for c in self.changes if c.path not in paths)
        dropped = {c.setting for c in self.changes if c.path in paths}
        settings = dict(self.ledger.backend_settings)
        for setting in dropped - {None}:
            assert setting is not None
            settings.pop(setting, None)
            if setting in previous.backend_settings:
                settings[setting] = previous.backend_settings[setting]
        buffering = (
            previous.response_buffering if None in dropped else self.ledger.response_buffering
        )
        ledger = self.ledger.model_copy(
            update={"backend_settings": settings, "response_buffering": buffering}
        )
        return self.model_copy(update={"changes": kept, "ledger": ledger})

    def holds_in(self, document: doc.Document) -> bool:
        """Whether the document is the instance the plan was made for and every change still
        starts from the value the plan saw."""
        return self.ledger.belongs_to(document) and all(
            _current(document, change.setting) == change.before for change in self.changes
        )

    def apply_to(self, document: doc.Document) -> dict[str, Any]:
        """The document with exactly this plan's changes made (nothing else differs)."""
        result = dict(document)
        timeouts = {c.setting: int(c.after) for c in self.changes if c.setting is not None}
        if timeouts:
            result = doc.with_request_timeouts(result, timeouts)
        for change in self.changes:
            if change.setting is None:
                result = doc.with_response_buffering(result, bool(change.after))
        return result


def _current(document: doc.Document, setting: str | None) -> int | bool | None:
    if setting is None:
        return doc.response_buffering_enabled(document)
    return doc.backend_setting_timeouts(document).get(setting)


class _Decision(_Frozen):
    desired: int | bool
    owned: OwnedTimeout | OwnedBuffering | None
    kind: ChangeKind | None = None
    notice: str | None = None


def _decide_timeout(
    setting: str, current: int, requirement: int | None, entry: OwnedTimeout | None, released: bool
) -> _Decision:
    foreign = entry is not None and current != entry.applied
    if requirement is None:
        if entry is None:
            return _Decision(desired=current, owned=None)
        if foreign and not released:
            return _Decision(
                desired=current,
                owned=None,
                notice=f"left {setting} requestTimeout at {current}s: someone changed it after "
                f"the operator set {entry.applied}s, so the original {entry.original}s is not "
                "restored",
            )
        if released:
            return _Decision(desired=current, owned=None)
        return _Decision(desired=entry.original, owned=None, kind="restore")
    if entry is None or foreign:
        if current >= requirement:
            notice = None
            if entry is not None:
                notice = (
                    f"{setting} requestTimeout was changed by someone else to {current}s; it "
                    f"satisfies the {requirement}s needed, so the operator no longer owns it"
                )
            return _Decision(desired=current, owned=None, notice=notice)
        original = entry.original if entry is not None else current
        desired = max(original, requirement)
        return _Decision(
            desired=desired,
            owned=OwnedTimeout(original=original, applied=desired),
            kind="drift" if foreign else "apply",
        )
    desired = max(entry.original, requirement)
    if desired == entry.original:
        return _Decision(desired=desired, owned=None, kind="restore")
    return _Decision(
        desired=desired, owned=OwnedTimeout(original=entry.original, applied=desired), kind="apply"
    )


def _decide_buffering(
    enabled: bool, needs_off: bool, entry: OwnedBuffering | None, released: bool
) -> _Decision:
    if needs_off:
        if entry is None:
            if not enabled:
                return _Decision(desired=False, owned=None)
            return _Decision(
                desired=False, owned=OwnedBuffering(original=True, applied=False), kind="apply"
            )
        return _Decision(desired=False, owned=entry, kind="drift" if enabled else None)
    if entry is None or released:
        return _Decision(desired=enabled, owned=None)
    if enabled != entry.applied:
        return _Decision(
            desired=enabled,
            owned=None,
            notice="left response buffering as it is: someone changed it after the operator "
            "disabled it",
        )
    return _Decision(desired=entry.original, owned=None, kind="restore")


def _blocked_outcomes(
    routes: Sequence[RouteIntent], document: doc.Document
) -> dict[str, RouteOutcome]:
    """Routes that cannot be applied at all (nothing of theirs is written: no partial writes)."""
    blocked = {}
    tags = doc.agic_tags(document)
    for route in routes:
        missing = doc.missing_settings(document, route.backend_settings)
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
        elif route.disable_buffering and doc.is_v1_sku(document):
            blocked[route.key] = RouteOutcome(
                reason=Reason.UNSUPPORTED_SKU,
                message=f"SKU tier {doc.sku_tier(document)} cannot disable response buffering; "
                "upgrade to Standard_v2 or WAF_v2, or set spec.responseBuffering: Unmanaged",
            )
    return blocked


def _route_notices(
    routes: Iterable[RouteIntent], timeouts: Mapping[str, int], external: set[str]
) -> list[Notice]:
    notices = []
    for route in routes:
        if route.idle_seconds > HTTP2_SAFE_IDLE_SECONDS:
            notices.append(
                Notice(
                    level="Warning",
                    route=route.key,
                    message=f"idleInterval {format_duration(route.idle_seconds)} is longer than "
                    "HTTP/2 clients survive (the gateway's HTTP/2 frontend idle timeout is a "
                    "fixed 180s): send heartbeat comments at least every 170s",
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

    requirements: dict[str, int] = {}
    contributors: dict[str | None, list[str]] = {}
    for route in active:
        for setting in route.backend_settings:
            requirements[setting] = max(requirements.get(setting, 0), route.request_timeout)
            contributors.setdefault(setting, []).append(route.key)
        if route.disable_buffering:
            contributors.setdefault(None, []).append(route.key)
    released_settings = {s for r in released for s in r.backend_settings}
    released_buffering = any(r.disable_buffering for r in released)

    changes: list[Change] = []
    notices: list[Notice] = []
    owned_timeouts: dict[str, OwnedTimeout] = {}
    current_timeouts = doc.backend_setting_timeouts(document)
    final_timeouts = dict(current_timeouts)
    for setting in sorted(set(requirements) | set(ledger.backend_settings)):
        if setting not in current_timeouts:
            continue  # a setting we owned was removed from the gateway: nothing left to restore
        decision = _decide_timeout(
            setting,
            current_timeouts[setting],
            requirements.get(setting),
            ledger.backend_settings.get(setting),
            released=setting in released_settings,
        )
        final_timeouts[setting] = int(decision.desired)
        if isinstance(decision.owned, OwnedTimeout):
            owned_timeouts[setting] = decision.owned
        if decision.notice:
            notices.append(Notice(level="Warning", message=decision.notice))
        if decision.desired != current_timeouts[setting] and decision.kind is not None:
            changes.append(
                Change(
                    setting=setting,
                    before=current_timeouts[setting],
                    after=decision.desired,
                    kind=decision.kind,
                    routes=tuple(contributors.get(setting, ())),
                )
            )

    enabled = doc.response_buffering_enabled(document)
    buffering = _decide_buffering(
        enabled, None in contributors, ledger.response_buffering, released_buffering
    )
    if buffering.notice:
        notices.append(Notice(level="Warning", message=buffering.notice))
    if buffering.desired != enabled and buffering.kind is not None:
        changes.insert(
            0,
            Change(
                setting=None,
                before=enabled,
                after=buffering.desired,
                kind=buffering.kind,
                routes=tuple(contributors.get(None, ())),
            ),
        )

    external = doc.settings_with_internet_backends(document)
    notices.extend(_route_notices(active, final_timeouts, external))
    outcomes = dict(blocked)
    for route in active:
        timeouts = {s: final_timeouts[s] for s in route.backend_settings}
        parts = [f"{s} requestTimeout {t}s" for s, t in timeouts.items()]
        if route.disable_buffering:
            parts.insert(0, "response buffering disabled")
        outcomes[route.key] = RouteOutcome(
            reason=Reason.APPLIED,
            message="; ".join(parts),
            request_timeouts=timeouts,
            response_buffering=bool(buffering.desired),
        )
    new_ledger = Ledger(
        gateway_id=ledger.gateway_id,
        resource_guid=ledger.resource_guid,
        response_buffering=buffering.owned if isinstance(buffering.owned, OwnedBuffering) else None,
        backend_settings=owned_timeouts,
    )
    return Plan(
        gateway_id=gateway_id,
        changes=tuple(changes),
        ledger=new_ledger,
        outcomes=dict(sorted(outcomes.items())),
        notices=tuple(notices),
    )
