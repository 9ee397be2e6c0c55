"""Pure pieces the gateway worker relies on: conditions, ledger recovery, drift, held changes."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appgw_sse.core.conditions import (
    Condition,
    Reason,
    backends_conformant,
    merge_conditions,
    planned,
    true_to_generation,
)
from appgw_sse.core.drift import DriftTracker
from appgw_sse.core.fields import REQUEST_TIMEOUT
from appgw_sse.core.ledger import Ledger, Owned, recover, recreated
from appgw_sse.core.planner import plan_gateway
from tests.support.gateways import gateway_document, gateway_id, owning
from tests.support.gateways import intent as route

GID = gateway_id()


def c(type_: str, status: str, reason: str = "R") -> Condition:
    return Condition(type=type_, status=status, reason=reason, message=f"{type_} {reason}")  # type: ignore[arg-type]


def test_ready_is_derived_and_transition_time_moves_only_on_flips() -> None:
    first = merge_conditions(
        [], [c("Accepted", "True"), c("GatewayConfigured", "True", "Applied")], 1, "t1"
    )
    ready = {x.type: x for x in first}["Ready"]
    assert (ready.status, ready.reason, ready.last_transition_time) == ("True", "Applied", "t1")
    same = merge_conditions(first, [c("GatewayConfigured", "True", "Applied")], 2, "t2")
    assert {x.type: x for x in same}["Ready"].last_transition_time == "t1"
    assert {x.type: x for x in same}["Ready"].observed_generation == 2
    flipped = merge_conditions(same, [c("GatewayConfigured", "False", "Throttled")], 2, "t3")
    ready = {x.type: x for x in flipped}["Ready"]
    assert (ready.status, ready.reason, ready.last_transition_time) == ("False", "Throttled", "t3")
    assert {x.type: x for x in flipped}["Accepted"].last_transition_time == "t1"


def test_rejected_spec_makes_ready_false_with_its_reason_and_stalls() -> None:
    result = merge_conditions([], [c("Accepted", "False", "InvalidSpec")], 1, "t")
    assert [(x.type, x.status, x.reason, x.observed_generation) for x in result] == [
        ("Accepted", "False", "InvalidSpec", 1),
        ("Ready", "False", "InvalidSpec", 1),
        ("Reconciling", "False", "InvalidSpec", 1),
        ("Stalled", "True", "InvalidSpec", 1),
    ]


def kstatus(conditions: tuple[Condition, ...]) -> tuple[str, str, str]:
    """Ready, Reconciling and Stalled statuses."""
    by_type = {x.type: x.status for x in conditions}
    return by_type["Ready"], by_type["Reconciling"], by_type["Stalled"]


@pytest.mark.parametrize(
    ("accepted", "configured", "expected"),
    [
        (("True", "Accepted"), ("True", "Applied"), ("True", "False", "False")),
        (("True", "Accepted"), ("True", "IngressesAnnotated"), ("True", "False", "False")),
        (("True", "Accepted"), ("False", "Pending"), ("False", "True", "False")),
        (("True", "Accepted"), ("False", "Applying"), ("False", "True", "False")),
        (("True", "Accepted"), ("False", "Throttled"), ("False", "True", "False")),
        (("True", "Accepted"), ("False", "AzureError"), ("False", "True", "False")),
        (("True", "Accepted"), ("False", "AzureAuthFailed"), ("False", "True", "False")),
        (("True", "Accepted"), ("False", "IngressNotFound"), ("False", "True", "False")),
        (("True", "Accepted"), None, ("Unknown", "True", "False")),
        (("False", "InvalidSpec"), None, ("False", "False", "True")),
        (("False", "GatewayNotAllowed"), None, ("False", "False", "True")),
        (("True", "Accepted"), ("False", "BackendSettingsNotFound"), ("False", "False", "True")),
        (("True", "Accepted"), ("False", "GatewayNotFound"), ("False", "False", "True")),
        (("True", "Accepted"), ("False", "UnsupportedSku"), ("False", "False", "True")),
        (("True", "Accepted"), ("False", "ManagedByAGIC"), ("False", "False", "True")),
        (("True", "Accepted"), ("False", "DriftConflict"), ("False", "False", "True")),
        (("True", "Accepted"), ("False", "DryRun"), ("False", "False", "True")),
        (("True", "Accepted"), ("False", "ResponseBufferingEnabled"), ("False", "False", "True")),
        # A rejected generation stalls even while the previous one is applied.
        (("False", "InvalidSpec"), ("True", "Applied"), ("False", "False", "True")),
    ],
)
def test_reconciling_and_stalled_follow_ready(
    accepted: tuple[str, str], configured: tuple[str, str] | None, expected: tuple[str, ...]
) -> None:
    updates = [c("Accepted", *accepted)] + (
        [c("GatewayConfigured", *configured)] if configured else []
    )
    assert kstatus(merge_conditions([], updates, 3, "t")) == expected


@given(
    st.sampled_from(["True", "False", "Unknown"]),
    st.sampled_from([r.value for r in Reason]),
    st.sampled_from(["True", "False"]),
)
def test_exactly_one_kstatus_verdict(configured: str, reason: str, accepted: str) -> None:
    """Current (neither True) exactly when Ready is True; else InProgress or Failed, never both;
    all three speak for the generation they were derived in."""
    updates = [c("Accepted", accepted, "Accepted"), c("GatewayConfigured", configured, reason)]
    result = merge_conditions([], updates, 7, "t")
    ready, reconciling, stalled = kstatus(result)
    assert (reconciling, stalled).count("True") == (0 if ready == "True" else 1)
    derived = [x for x in result if x.type in ("Ready", "Reconciling", "Stalled")]
    assert {x.observed_generation for x in derived} == {7}
    assert len({x.reason for x in derived}) == 1


def test_reconciling_moves_its_transition_time_only_when_it_flips() -> None:
    pending = merge_conditions(
        [], [c("Accepted", "True"), c("GatewayConfigured", "False", "Pending")], 1, "t1"
    )
    applying = merge_conditions(pending, [c("GatewayConfigured", "False", "Applying")], 1, "t2")
    applied = merge_conditions(applying, [c("GatewayConfigured", "True", "Applied")], 1, "t3")
    times = [
        {x.type: x.last_transition_time for x in r}["Reconciling"]
        for r in (pending, applying, applied)
    ]
    assert times == ["t1", "t1", "t3"]
    assert {x.type: x.last_transition_time for x in applied}["Stalled"] == "t1"


CONFIRMED = owning(a=(30, 68))
PENDING = owning(buffering=(True, False), a=(30, 150))


def test_recover_takes_the_intent_when_the_put_landed() -> None:
    landed = gateway_document({"a": 150}, buffering=False)
    assert recover(CONFIRMED, PENDING, landed) == PENDING


def test_recover_keeps_the_confirmed_ledger_when_the_put_did_not_land() -> None:
    lost = gateway_document({"a": 68}, buffering=True)
    assert recover(CONFIRMED, PENDING, lost) == CONFIRMED


def test_recover_drops_a_restored_entry_once_the_restore_landed() -> None:
    restore = Ledger(gateway_id=GID)
    assert recover(CONFIRMED, restore, gateway_document({"a": 30})).is_empty
    assert recover(CONFIRMED, restore, gateway_document({"a": 68})) == CONFIRMED


@given(st.booleans(), st.booleans())
def test_recover_never_loses_an_original(buffering_landed: bool, timeout_landed: bool) -> None:
    document = gateway_document(
        {"a": 150 if timeout_landed else 68}, buffering=not buffering_landed
    )
    recovered = recover(CONFIRMED, PENDING, document)
    assert recovered.owned[REQUEST_TIMEOUT.at("a")].original == 30
    replan = plan_gateway(GID, [route("r", timeout=150)], document, recovered)
    after = replan.apply_to(document)
    restored = plan_gateway(GID, [], after, replan.ledger).apply_to(after)
    assert (
        restored["properties"]["backendHttpSettingsCollection"][0]["properties"]["requestTimeout"]
        == 30
    )


def test_drift_conflict_after_three_corrections_within_an_hour() -> None:
    tracker = DriftTracker()
    gens = {"ns/r": 1}
    assert tracker.record("f", gens, 0) is False
    assert tracker.record("f", gens, 10) is False
    assert tracker.record("f", gens, 20) is True
    assert tracker.in_conflict("f", gens)
    assert not tracker.in_conflict("f", {"ns/r": 2})  # the route changed: try again
    assert not tracker.in_conflict("f", {"ns/r": 2})


def test_corrections_older_than_an_hour_do_not_count() -> None:
    tracker = DriftTracker()
    assert not tracker.record("f", {}, 0)
    assert not tracker.record("f", {}, 1800)
    assert not tracker.record("f", {}, 3700)


def test_plan_without_keeps_the_previous_ownership_of_held_fields() -> None:
    owned = owning(buffering=(True, False), a=(30, 68))
    plan = plan_gateway(
        GID, [route("r", settings=("a", "b"))], gateway_document({"a": 40, "b": 30}), owned
    )
    drifted = next(ch for ch in plan.changes if ch.setting == "a")
    assert drifted.kind == "drift"
    held = plan.without({drifted.place}, owned)
    assert [ch.setting for ch in held.changes] == [None, "b"]
    a, b = REQUEST_TIMEOUT.at("a"), REQUEST_TIMEOUT.at("b")
    assert held.ledger.owned[a] == owned.owned[a]
    assert held.ledger.owned[b] == Owned(30, 68)


def instance(document: dict, guid: str) -> dict:
    document["properties"]["resourceGuid"] = guid
    return document


OLD, NEW = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def test_a_ledger_of_another_instance_is_discarded_with_its_intent() -> None:
    recreated_gateway = instance(gateway_document({"a": 150}, buffering=False), NEW)
    confirmed = replace(CONFIRMED, resource_guid=OLD)
    pending = replace(PENDING, resource_guid=OLD)
    # The new instance happens to hold what the pending ledger planned: that proves nothing.
    assert recover(confirmed, pending, recreated_gateway) == Ledger(
        gateway_id=GID, resource_guid=NEW
    )
    assert recreated(confirmed, pending, recreated_gateway)
    assert recreated(confirmed, None, recreated_gateway)


def test_a_ledger_of_the_live_instance_is_kept_and_legacy_ledgers_are_adopted() -> None:
    live = instance(gateway_document({"a": 150}, buffering=False), OLD.upper())  # ARM's case
    owned = replace(PENDING, resource_guid=OLD)
    assert recover(replace(CONFIRMED, resource_guid=OLD), owned, live) == owned
    # Written before instances were recorded: bound to the live instance from now on.
    assert recover(CONFIRMED, PENDING, live) == replace(PENDING, resource_guid=OLD)
    assert not recreated(CONFIRMED, PENDING, live)
    # An empty ledger of another instance lost nothing worth an Event.
    assert not recreated(Ledger(gateway_id=GID, resource_guid=NEW), None, live)


# A ledger as operators before the owned-field abstraction stored it in the ConfigMap.
STORED = (
    '{"gatewayId":"G","resourceGuid":"x","responseBuffering":{"original":true,"applied":false},'
    '"backendSettings":{"a":{"original":30,"applied":68},"b":{"original":45,"applied":150}}}'
)


def test_a_stored_ledger_reads_and_writes_back_unchanged() -> None:
    stored = Ledger.from_json(STORED)
    assert stored == owning(gateway="G", guid="x", buffering=(True, False), a=(30, 68), b=(45, 150))
    assert stored.to_json() == STORED
    assert Ledger.from_data({"gateway_id": "G", "backend_settings": {}}) == Ledger(gateway_id="G")


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"gatewayId": "G", "drainTimeouts": {}},
        {"gatewayId": 1},
        {"gatewayId": "G", "backendSettings": {"a": {"original": 30}}},
        {"gatewayId": "G", "backendSettings": {"a": {"original": True, "applied": 68}}},
        {"gatewayId": "G", "responseBuffering": {"original": 1, "applied": 0}},
    ],
)
def test_what_is_not_a_ledger_is_refused(data: object) -> None:
    with pytest.raises(ValueError):
        Ledger.from_data(data)


def test_conformance_is_unknown_until_every_pod_was_probed() -> None:
    probing = backends_conformant({"p1": "ok", "p2": None}, "ok")
    assert (probing.status, probing.reason) == ("Unknown", "Probing")
    assert backends_conformant({"p1": "ok"}, "ok").message == "1 pod(s) send the SSE headers"
    assert backends_conformant({}, "ok").status == "Unknown"


def test_an_outcome_for_other_requirements_is_pending() -> None:
    applied = planned(Reason.APPLIED, "a requestTimeout 68s")
    assert true_to_generation([applied], applied=True, generation=2) == [applied]
    [pending] = true_to_generation([applied], applied=False, generation=2)
    assert (pending.type, pending.status, pending.reason) == (
        "GatewayConfigured",
        "False",
        "Pending",
    )
    assert "generation 2" in pending.message
