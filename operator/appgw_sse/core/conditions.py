"""metav1.Condition bookkeeping: lastTransitionTime moves only when a status flips."""

from collections.abc import Sequence

from appgw_sse.models.status import Condition

ACCEPTED = "Accepted"
GATEWAY_CONFIGURED = "GatewayConfigured"
BACKENDS_ANNOTATED = "BackendsAnnotated"
BACKENDS_CONFORMANT = "BackendsConformant"  # advisory: not part of Ready
READY = "Ready"
_ORDER = (ACCEPTED, GATEWAY_CONFIGURED, BACKENDS_ANNOTATED, READY)


def merge_conditions(
    previous: Sequence[Condition],
    updates: Sequence[Condition],
    generation: int,
    now: str,
    drop: frozenset[str] = frozenset(),
) -> tuple[Condition, ...]:
    """Apply `updates` over `previous` (without the `drop` types), then derive Ready: True when
    Accepted, GatewayConfigured and (for routes with a backend) BackendsAnnotated all are."""
    by_type = {c.type: c for c in previous if c.type not in drop}
    for update in updates:
        old = by_type.get(update.type)
        moved = old is None or old.status != update.status
        by_type[update.type] = update.model_copy(
            update={
                "observed_generation": generation,
                "last_transition_time": now if moved or old is None else old.last_transition_time,
            }
        )
    others = [by_type[t] for t in (ACCEPTED, GATEWAY_CONFIGURED) if t in by_type]
    failing = next((c for c in others if c.status != "True"), None)
    ready = Condition(
        type=READY,
        status="True"
        if failing is None and len(others) == 2
        else failing.status
        if failing
        else "Unknown",
        reason=failing.reason if failing else others[-1].reason if others else "Pending",
        message=failing.message
        if failing
        else others[-1].message
        if others
        else "waiting for the gateway to be reconciled",
    )
    old_ready = by_type.get(READY)
    moved = old_ready is None or old_ready.status != ready.status
    by_type[READY] = ready.model_copy(
        update={
            "observed_generation": generation,
            "last_transition_time": now if moved else old_ready.last_transition_time,  # type: ignore[union-attr]
        }
    )
    ordered = [by_type[t] for t in _ORDER if t in by_type]
    return tuple(ordered + [c for t, c in sorted(by_type.items()) if t not in _ORDER])
