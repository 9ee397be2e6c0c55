"""Which conditions a route gets, decided here and only here, and the one list of reasons.

Every function is pure: the workers call them with what they observed and write the result.
Ready, and from it Reconciling and Stalled, are derived by `merge_conditions`
(lastTransitionTime moves only when a status flips).
"""

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Literal

from pydantic import Field

from appgw_sse.core.camel import CamelModel

ACCEPTED = "Accepted"
GATEWAY_CONFIGURED = "GatewayConfigured"
BACKENDS_ANNOTATED = "BackendsAnnotated"
BACKENDS_CONFORMANT = "BackendsConformant"  # advisory: not part of Ready
STREAM_VERIFIED = "StreamVerified"  # advisory: not part of Ready
READY = "Ready"
# kstatus (Flux's health check) reads these two, not Ready: see `_progress`.
RECONCILING = "Reconciling"
STALLED = "Stalled"
_ORDER = (ACCEPTED, GATEWAY_CONFIGURED, BACKENDS_ANNOTATED, READY, RECONCILING, STALLED)
BACKEND_CONDITIONS = frozenset({BACKENDS_ANNOTATED, BACKENDS_CONFORMANT})


class Reason(StrEnum):
    """Reasons of conditions and Events (CamelCase constants, as in metav1.Condition)."""

    # Accepted
    ACCEPTED = "Accepted"
    INVALID_SPEC = "InvalidSpec"
    GATEWAY_NOT_ALLOWED = "GatewayNotAllowed"
    # GatewayConfigured: what the plan or the gateway said
    APPLIED = "Applied"
    APPLYING = "Applying"
    PENDING = "Pending"
    DRY_RUN = "DryRun"
    DRIFT_CONFLICT = "DriftConflict"
    GATEWAY_NOT_FOUND = "GatewayNotFound"
    BACKEND_SETTINGS_NOT_FOUND = "BackendSettingsNotFound"
    UNSUPPORTED_SKU = "UnsupportedSku"
    MANAGED_BY_AGIC = "ManagedByAGIC"
    GATEWAY_TAG_LIMIT = "GatewayTagLimit"  # no room for the claim tags (ARM: 50 per resource)
    GATEWAY_TAGS_INVALID = "GatewayTagsInvalid"  # tags under appgw-sse.'s prefix not its own
    INGRESSES_ANNOTATED = "IngressesAnnotated"  # AGIC mode
    INGRESS_NOT_FOUND = "IngressNotFound"  # AGIC mode
    INGRESS_SHARED = "IngressShared"  # AGIC mode, Events: the values reach other Services too
    INGRESSES_UNAVAILABLE = "IngressesUnavailable"  # AGIC mode: they could not be listed
    RESPONSE_BUFFERING_ENABLED = "ResponseBufferingEnabled"  # AGIC mode
    THROTTLED = "Throttled"
    AZURE_AUTH_FAILED = "AzureAuthFailed"
    AZURE_ERROR = "AzureError"
    # BackendsAnnotated
    ANNOTATED = "Annotated"
    NO_PODS_SELECTED = "NoPodsSelected"
    SERVICE_NOT_FOUND = "ServiceNotFound"
    HEADER_CONFLICT = "HeaderConflict"
    # BackendsConformant
    CONFORMANT = "Conformant"
    NON_CONFORMANT = "NonConformant"
    PROBING = "Probing"
    # StreamVerified: the stream check's verdict
    LIVE = "Live"
    BUFFERED = "Buffered"
    CUT = "Cut"
    COMPRESSED = "Compressed"
    UNREACHABLE = "Unreachable"
    NO_RESPONSE = "NoResponse"
    HTTP_ERROR = "HttpError"
    NOT_EVENT_STREAM = "NotEventStream"
    SILENT = "Silent"
    NOT_LIVE = "NotLive"  # a problem without a verdict of its own
    # Events only
    GATEWAY_RECREATED = "GatewayRecreated"
    NOTICE = "Notice"
    DRAINING_OFF = "DrainingOff"
    HTTP2_IDLE_TIMEOUT = "Http2IdleTimeout"  # idleInterval beyond the fixed 180 s HTTP/2 limit
    INTERNET_BACKEND_TIMEOUT_CAP = "InternetBackendTimeoutCap"  # above 240 s to an internet backend


# Ready's reasons that waiting does not cure: the route, the gateway or the operator's own
# settings must change first (the operator still re-reads the gateway every --resync, and
# clears Stalled when that happened). Every other reason of a Ready that is not True is work
# in progress or retried on its own: Pending, Applying, Throttled, AzureError,
# AzureAuthFailed (a role assignment takes minutes to propagate), IngressNotFound (the Ingress
# is often applied with the route).
STALLED_REASONS = frozenset(
    {
        Reason.INVALID_SPEC,
        Reason.GATEWAY_NOT_ALLOWED,
        Reason.GATEWAY_NOT_FOUND,
        Reason.BACKEND_SETTINGS_NOT_FOUND,
        Reason.UNSUPPORTED_SKU,
        Reason.MANAGED_BY_AGIC,
        Reason.GATEWAY_TAG_LIMIT,
        Reason.GATEWAY_TAGS_INVALID,
        Reason.DRIFT_CONFLICT,
        Reason.DRY_RUN,
        Reason.RESPONSE_BUFFERING_ENABLED,
    }
)

Status = Literal["True", "False", "Unknown"]


class Condition(CamelModel):
    type: str
    status: Status
    reason: str
    # Never empty: a 1.20 API server turns "" in a merge patch into null and rejects the status.
    message: str = Field(min_length=1)
    observed_generation: int = 0
    last_transition_time: str = ""


def _condition(type_: str, ok: bool | None, reason: Reason, message: str) -> Condition:
    status: Status = "Unknown" if ok is None else "True" if ok else "False"
    return Condition(type=type_, status=status, reason=reason, message=message)


# -- Accepted -------------------------------------------------------------------------------


def accepted(intent_generation: int, generation: int) -> list[Condition]:
    """Accepted=True when the current generation was accepted; when it was rejected, its
    InvalidSpec stands (the last valid requirements stay in force meanwhile)."""
    if intent_generation != generation:
        return []
    return [_condition(ACCEPTED, True, Reason.ACCEPTED, "spec is valid; gateway allowed")]


def invalid_spec(problems: str) -> Condition:
    return _condition(ACCEPTED, False, Reason.INVALID_SPEC, problems)


def gateway_not_allowed(why: str) -> Condition:
    """Accepted=False: `why` (core.policy.refusal) names the rules that refuse it."""
    return _condition(ACCEPTED, False, Reason.GATEWAY_NOT_ALLOWED, why)


# -- GatewayConfigured ----------------------------------------------------------------------


def applying(gateway_name: str, summary: str) -> Condition:
    return _condition(
        GATEWAY_CONFIGURED, False, Reason.APPLYING, f"updating gateway {gateway_name}: {summary}"
    )


def planned(
    reason: Reason, message: str, *, dry_run: str | None = None, drift_conflict: str | None = None
) -> Condition:
    """GatewayConfigured from a route's outcome in the plan. `dry_run`: the changes a dry run
    withheld; `drift_conflict`: why the operator stopped correcting a field the route needs."""
    if dry_run is not None:
        return _condition(
            GATEWAY_CONFIGURED, False, Reason.DRY_RUN, f"dry run: would change {dry_run}"
        )
    if drift_conflict is not None:
        return _condition(GATEWAY_CONFIGURED, False, Reason.DRIFT_CONFLICT, drift_conflict)
    return _condition(GATEWAY_CONFIGURED, reason is Reason.APPLIED, reason, message)


def agic_mode(
    gateway_name: str,
    service: str | None,
    ingresses: Sequence[str],
    values: str,
    buffering_fix: str | None,
    managed_message: str,
    shared: str = "",
) -> Condition:
    """GatewayConfigured of a route on a gateway AGIC manages. `buffering_fix`: the command
    that turns the gateway's response buffering off, when it is on and the route needs it off;
    `shared`: the other Services of those Ingresses, which AGIC gives the same values."""
    if service is None:
        return _condition(GATEWAY_CONFIGURED, False, Reason.MANAGED_BY_AGIC, managed_message)
    if not ingresses:
        return _condition(
            GATEWAY_CONFIGURED,
            False,
            Reason.INGRESS_NOT_FOUND,
            f"gateway {gateway_name} is managed by AGIC and no Ingress of its class "
            f"(ingressClassName azure-application-gateway) in this namespace routes to Service "
            f"{service}: nothing carries the stream's timeout",
        )
    carried = f"Ingress {', '.join(ingresses)} carries {values}"
    if shared:
        carried += f" (AGIC applies them to every Service of the Ingress: {shared})"
    if buffering_fix is not None:
        return _condition(
            GATEWAY_CONFIGURED,
            False,
            Reason.RESPONSE_BUFFERING_ENABLED,
            f"{carried}; but response buffering is on on gateway {gateway_name}, so events are "
            "held back, and AGIC has no setting for it. Turn it off with: "
            f"{buffering_fix} (AGIC's own updates may turn it on again)",
        )
    return _condition(
        GATEWAY_CONFIGURED, True, Reason.INGRESSES_ANNOTATED, f"{carried} (for AGIC to apply)"
    )


def gateway_failed(reason: Reason, message: str) -> Condition:
    return _condition(GATEWAY_CONFIGURED, False, reason, message)


def true_to_generation(
    updates: Sequence[Condition], *, applied: bool, generation: int
) -> list[Condition]:
    """Ready=True must mean the gateway holds what this generation needs: unless the current
    requirements are the ones GatewayConfigured was computed for (`applied`), it is Pending."""
    if applied:
        return list(updates)
    pending = _condition(
        GATEWAY_CONFIGURED,
        False,
        Reason.PENDING,
        f"the requirements of generation {generation} are not applied to the gateway yet",
    )
    return [u for u in updates if u.type != GATEWAY_CONFIGURED] + [pending]


def configured_for_generation(conditions: Sequence[Condition], generation: int) -> bool:
    """Whether a stored GatewayConfigured was computed for this generation's requirements
    (Pending is the one reason that says it was not): a restarted operator can trust it."""
    return any(
        c.type == GATEWAY_CONFIGURED
        and c.observed_generation == generation
        and c.reason != Reason.PENDING
        for c in conditions
    )


# -- BackendsAnnotated and BackendsConformant -----------------------------------------------


def backends_annotated(
    selected: int, annotated: int, *, missing_service: str | None, header_conflict: str | None
) -> Condition:
    if missing_service:
        return _condition(BACKENDS_ANNOTATED, False, Reason.SERVICE_NOT_FOUND, missing_service)
    if header_conflict:
        return _condition(BACKENDS_ANNOTATED, False, Reason.HEADER_CONFLICT, header_conflict)
    if not selected:
        return _condition(
            BACKENDS_ANNOTATED, True, Reason.NO_PODS_SELECTED, "no pods match spec.backend yet"
        )
    return _condition(
        BACKENDS_ANNOTATED, True, Reason.ANNOTATED, f"{annotated} pod(s) carry the SSE contract"
    )


def backends_conformant(verdicts: Mapping[str, str | None], conformant: str) -> Condition:
    """From each selected pod's last probe verdict (None: not probed yet); `conformant` is the
    verdict of a pod that passes."""
    failing = [f"{pod}: {v}" for pod, v in verdicts.items() if v not in (None, conformant)]
    if failing:
        return _condition(BACKENDS_CONFORMANT, False, Reason.NON_CONFORMANT, "; ".join(failing))
    if None in verdicts.values() or not verdicts:
        return _condition(
            BACKENDS_CONFORMANT, None, Reason.PROBING, "not every pod has been probed yet"
        )
    return _condition(
        BACKENDS_CONFORMANT,
        True,
        Reason.CONFORMANT,
        f"{len(verdicts)} pod(s) send the SSE headers",
    )


# -- StreamVerified ------------------------------------------------------------------------

# The problem codes of `appgw-sse doctor`'s analysis, the most telling first, and the verdict
# each one gives. Compression before buffering: compressed output is why events were held.
_STREAM_VERDICTS = (
    ("unreachable", Reason.UNREACHABLE),
    ("no-response", Reason.NO_RESPONSE),
    ("status", Reason.HTTP_ERROR),
    ("cut", Reason.CUT),
    ("content-encoding", Reason.COMPRESSED),
    ("buffered", Reason.BUFFERED),
    ("content-length", Reason.BUFFERED),
    ("content-type", Reason.NOT_EVENT_STREAM),
    ("silent", Reason.SILENT),
)


def stream_verified(problems: Sequence[str], evidence: str) -> Condition:
    """The stream check's verdict from the problem codes the doctor found (none: Live), with
    its evidence as the message."""
    verdict = (
        next((reason for code, reason in _STREAM_VERDICTS if code in problems), Reason.NOT_LIVE)
        if problems
        else Reason.LIVE
    )
    return _condition(STREAM_VERIFIED, verdict is Reason.LIVE, verdict, evidence)


# -- merging --------------------------------------------------------------------------------


def merge_conditions(
    previous: Sequence[Condition],
    updates: Sequence[Condition],
    generation: int,
    now: str,
    drop: frozenset[str] = frozenset(),
) -> tuple[Condition, ...]:
    """Apply `updates` over `previous` (without the `drop` types), then derive Ready: True when
    Accepted and GatewayConfigured both are; and from Ready, Reconciling and Stalled."""
    by_type = {c.type: c for c in previous if c.type not in drop}
    for update in updates:
        by_type[update.type] = _stamped(update, by_type.get(update.type), generation, now)
    by_type[READY] = _stamped(_ready(by_type), by_type.get(READY), generation, now)
    for derived in _progress(by_type[READY]):
        by_type[derived.type] = _stamped(derived, by_type.get(derived.type), generation, now)
    ordered = [by_type[t] for t in _ORDER if t in by_type]
    return tuple(ordered + [c for t, c in sorted(by_type.items()) if t not in _ORDER])


def _ready(by_type: Mapping[str, Condition]) -> Condition:
    others = [by_type[t] for t in (ACCEPTED, GATEWAY_CONFIGURED) if t in by_type]
    failing = next((c for c in others if c.status != "True"), None)
    if failing is not None:
        return failing.model_copy(update={"type": READY})
    if len(others) == 2:
        return others[-1].model_copy(update={"type": READY})
    if others:
        return others[-1].model_copy(update={"type": READY, "status": "Unknown"})
    return Condition(
        type=READY,
        status="Unknown",
        reason=Reason.PENDING,
        message="waiting for the gateway to be reconciled",
    )


def _progress(ready: Condition) -> tuple[Condition, Condition]:
    """Reconciling and Stalled, the abnormal-true pair of kstatus, which Flux's health checks
    read (with status.observedGeneration) instead of Ready: a route is Current there exactly
    when Ready is True for its generation, Failed when Ready's reason is in STALLED_REASONS,
    InProgress otherwise. Both carry Ready's reason and message."""
    done = ready.status == "True"
    stalled = not done and ready.reason in STALLED_REASONS
    reconciling = "False" if done or stalled else "True"
    return (
        ready.model_copy(update={"type": RECONCILING, "status": reconciling}),
        ready.model_copy(update={"type": STALLED, "status": "True" if stalled else "False"}),
    )


def _stamped(condition: Condition, old: Condition | None, generation: int, now: str) -> Condition:
    moved = old is None or old.status != condition.status
    return condition.model_copy(
        update={
            "observed_generation": generation,
            "last_transition_time": now if moved else old.last_transition_time,  # type: ignore[union-attr]
        }
    )
