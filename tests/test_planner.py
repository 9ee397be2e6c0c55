"""The planner: table-driven cases for each rule of the contract, then properties."""

import copy
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appgw_sse import EXAMPLES
from appgw_sse.core import document as doc
from appgw_sse.core.conditions import Reason
from appgw_sse.core.fields import (
    CONNECTION_DRAINING,
    REQUEST_TIMEOUT,
    RESPONSE_BUFFERING,
    gateway_status,
)
from appgw_sse.core.ledger import Ledger, Owned, recover
from appgw_sse.core.planner import Plan, plan_gateway
from tests.support.gateways import (
    gateway_document,
    gateway_id,
    intent,
    owning,
    without_owned_fields,
)

GID = gateway_id()


route = intent
A, BUFFERING = REQUEST_TIMEOUT.at("a"), RESPONSE_BUFFERING.at()


def changes(plan: Plan) -> list[tuple[str | None, object, object, str]]:
    return [(c.setting, c.before, c.after, c.kind) for c in plan.changes]


def test_first_route_disables_buffering_and_raises_timeout() -> None:
    plan = plan_gateway(GID, [route("r")], gateway_document({"a": 30, "b": 30}))
    assert changes(plan) == [(None, True, False, "apply"), ("a", 30, 68, "apply")]
    assert plan.ledger.owned == {BUFFERING: Owned(True, False), A: Owned(30, 68)}
    assert plan.outcomes["ns/r"].reason is Reason.APPLIED
    assert plan.outcomes["ns/r"].values[A] == 68


def test_nothing_to_do_means_no_changes_and_no_ownership() -> None:
    plan = plan_gateway(GID, [route("r")], gateway_document({"a": 300}, buffering=False))
    assert plan.changes == ()
    assert plan.ledger.is_empty
    assert plan.outcomes["ns/r"].values[A] == 300


def test_largest_requirement_wins_on_a_shared_setting() -> None:
    plan = plan_gateway(
        GID,
        [route("small", idle=10), route("big", idle=100), route("x", timeout=90)],
        gateway_document({"a": 30}),
    )
    assert ("a", 30, 150, "apply") in changes(plan)
    assert plan.changes[1].routes == ("ns/big", "ns/small", "ns/x")


def test_explicit_request_timeout_is_used() -> None:
    plan = plan_gateway(GID, [route("r", timeout=600)], gateway_document({"a": 30}))
    assert ("a", 30, 600, "apply") in changes(plan)


def test_never_lowers_a_user_configured_timeout() -> None:
    plan = plan_gateway(GID, [route("r", buffering=False)], gateway_document({"a": 300}))
    assert plan.changes == ()


def test_raises_above_original_and_restores_it_on_delete() -> None:
    first = plan_gateway(
        GID, [route("r", timeout=400, buffering=False)], gateway_document({"a": 300})
    )
    assert changes(first) == [("a", 300, 400, "apply")]
    after = first.apply_to(gateway_document({"a": 300}))
    gone = plan_gateway(GID, [], after, first.ledger)
    assert changes(gone) == [("a", 400, 300, "restore")]
    assert gone.ledger.is_empty


def test_deleting_the_last_route_restores_both_fields() -> None:
    ledger = owning(buffering=(True, False), a=(30, 68))
    plan = plan_gateway(GID, [], gateway_document({"a": 68}, buffering=False), ledger)
    assert changes(plan) == [(None, False, True, "restore"), ("a", 68, 30, "restore")]
    assert plan.ledger.is_empty


def test_someone_elses_later_change_survives_deletion() -> None:
    ledger = owning(a=(30, 68))
    plan = plan_gateway(GID, [], gateway_document({"a": 100}), ledger)
    assert plan.changes == ()
    assert plan.ledger.is_empty
    assert any("100s" in n.message and "not restored" in n.message for n in plan.notices)


def test_deleting_one_of_two_routes_lowers_to_the_remaining_requirement() -> None:
    ledger = owning(a=(30, 150))
    plan = plan_gateway(
        GID, [route("small", buffering=False)], gateway_document({"a": 150}), ledger
    )
    assert changes(plan) == [("a", 150, 68, "apply")]
    assert plan.ledger.owned[A] == Owned(30, 68)


def test_lowered_owned_value_is_drift_and_is_corrected() -> None:
    ledger = owning(a=(30, 68))
    plan = plan_gateway(GID, [route("r", buffering=False)], gateway_document({"a": 40}), ledger)
    assert changes(plan) == [("a", 40, 68, "drift")]


def test_buffering_turned_back_on_is_drift() -> None:
    ledger = owning(buffering=(True, False))
    plan = plan_gateway(GID, [route("r", settings=("a",))], gateway_document({"a": 68}), ledger)
    assert changes(plan) == [(None, True, False, "drift")]


def test_a_foreign_raise_that_satisfies_the_route_is_adopted_not_fought() -> None:
    ledger = owning(a=(30, 68))
    plan = plan_gateway(GID, [route("r", buffering=False)], gateway_document({"a": 400}), ledger)
    assert plan.changes == ()
    assert plan.ledger.is_empty
    assert any("no longer owns" in n.message for n in plan.notices)


def test_missing_setting_blocks_the_whole_route_and_only_it() -> None:
    plan = plan_gateway(
        GID,
        [route("bad", settings=("a", "nope")), route("good", settings=("b",), idle=40)],
        gateway_document({"a": 30, "b": 30}),
    )
    assert plan.outcomes["ns/bad"].reason is Reason.BACKEND_SETTINGS_NOT_FOUND
    assert "nope" in plan.outcomes["ns/bad"].message
    assert changes(plan) == [(None, True, False, "apply"), ("b", 30, 60, "apply")]


def test_v1_sku_cannot_disable_buffering() -> None:
    document = gateway_document({"a": 30}, tier="WAF", buffering=None)
    plan = plan_gateway(
        GID, [route("r"), route("u", settings=("a",), idle=100, buffering=False)], document
    )
    assert plan.outcomes["ns/r"].reason is Reason.UNSUPPORTED_SKU
    assert "Unmanaged" in plan.outcomes["ns/r"].message
    assert plan.outcomes["ns/u"].reason is Reason.APPLIED
    assert changes(plan) == [("a", 30, 150, "apply")]
    assert "globalConfiguration" not in plan.apply_to(document)["properties"]


def test_agic_managed_gateway_is_never_written() -> None:
    ledger = owning(a=(30, 68))
    document = gateway_document({"a": 30}, tags={"managed-by-k8s-ingress": "1.7.2"})
    plan = plan_gateway(GID, [route("r")], document, ledger)
    assert plan.changes == ()
    assert plan.ledger == ledger
    assert plan.outcomes["ns/r"].reason is Reason.MANAGED_BY_AGIC
    assert "request-timeout" in plan.outcomes["ns/r"].message


def test_released_route_leaves_its_values_and_forgets_them() -> None:
    ledger = owning(buffering=(True, False), a=(30, 68))
    plan = plan_gateway(
        GID, [], gateway_document({"a": 68}, buffering=False), ledger, released=[route("r")]
    )
    assert plan.changes == ()
    assert plan.ledger.is_empty


def test_unmanaged_buffering_is_never_touched() -> None:
    plan = plan_gateway(GID, [route("r", buffering=False)], gateway_document({"a": 30}))
    assert changes(plan) == [("a", 30, 68, "apply")]
    assert plan.outcomes["ns/r"].values[BUFFERING] is True


def test_missing_request_timeout_counts_as_arm_default() -> None:
    plan = plan_gateway(GID, [route("r", idle=10, buffering=False)], gateway_document({"a": None}))
    assert plan.changes == ()
    plan = plan_gateway(GID, [route("r", idle=45, buffering=False)], gateway_document({"a": None}))
    assert changes(plan) == [("a", 30, 68, "apply")]


def test_http2_idle_warning() -> None:
    plan = plan_gateway(
        GID, [route("long", idle=171), route("short", idle=170)], gateway_document({"a": 30})
    )
    warned = {n.route for n in plan.notices if "HTTP/2" in n.message}
    assert warned == {"ns/long"}
    assert {n.reason for n in plan.notices if "HTTP/2" in n.message} == {Reason.HTTP2_IDLE_TIMEOUT}


def test_timeout_above_240s_warns_only_for_internet_backends() -> None:
    document = gateway_document(
        {"ext": 30, "int": 30},
        pools={
            "public": [{"fqdn": "api.partner.example.com"}],
            "private": [{"ipAddress": "10.0.0.4"}],
        },
        rules=[("ext", "public"), ("int", "private")],
    )
    plan = plan_gateway(
        GID, [route("e", ("ext",), timeout=300), route("i", ("int",), timeout=300)], document
    )
    warned = {n.route for n in plan.notices if "240s" in n.message}
    assert warned == {"ns/e"}
    assert {n.reason for n in plan.notices if "240s" in n.message} == {
        Reason.INTERNET_BACKEND_TIMEOUT_CAP
    }


def test_flattened_az_output_plans_like_arm_json() -> None:
    arm = json.loads((EXAMPLES / "gateway.json").read_text())
    flat = {k: v for k, v in arm.items() if k != "properties"} | {"resourceGroup": "rg"}
    flat |= {
        key: [{k: v for k, v in c.items() if k != "properties"} | c["properties"] for c in value]
        if isinstance(value, list)
        and value
        and isinstance(value[0], dict)
        and "properties" in value[0]
        else value
        for key, value in arm["properties"].items()
    }
    assert doc.to_arm_document(flat) == arm


# ---- properties -------------------------------------------------------------------------

SETTINGS = ("s0", "s1", "s2", "s3")

routes_strategy = st.lists(
    st.builds(
        lambda i, names, idle, override, buffering: route(
            f"r{i}", tuple(sorted(set(names))), idle=idle, timeout=override, buffering=buffering
        ),
        st.integers(0, 5),
        st.lists(st.sampled_from(SETTINGS), min_size=1, max_size=3),
        st.integers(1, 400),
        st.one_of(st.none(), st.integers(401, 1000)),
        st.booleans(),
    ),
    max_size=5,
    unique_by=lambda r: r.key,
)
documents = st.builds(
    lambda timeouts, buffering: gateway_document(
        dict(zip(SETTINGS, timeouts, strict=True)), buffering=buffering
    ),
    st.lists(st.integers(1, 700), min_size=len(SETTINGS), max_size=len(SETTINGS)),
    st.booleans(),
)


@given(documents, routes_strategy)
def test_applying_a_plan_then_replanning_changes_nothing(document: dict, routes: list) -> None:
    plan = plan_gateway(GID, routes, document)
    replan = plan_gateway(GID, routes, plan.apply_to(document), plan.ledger)
    assert replan.changes == ()
    assert replan.ledger == plan.ledger


@given(documents, st.lists(routes_strategy, min_size=1, max_size=4))
def test_never_below_original_and_full_restore(document: dict, steps: list) -> None:
    original = doc.backend_setting_timeouts(document)
    current, ledger = document, None
    for routes in steps:
        plan = plan_gateway(GID, routes, current, ledger)
        current, ledger = plan.apply_to(current), plan.ledger
        for setting, timeout in doc.backend_setting_timeouts(current).items():
            assert timeout >= original[setting]
            required = [r.request_timeout for r in routes if setting in r.backend_settings]
            assert timeout >= max(required, default=0)
        assert without_owned_fields(current) == without_owned_fields(document)
    final = plan_gateway(GID, [], current, ledger)
    restored = final.apply_to(current)
    assert doc.backend_setting_timeouts(restored) == original
    assert doc.response_buffering_enabled(restored) == doc.response_buffering_enabled(document)
    assert final.ledger.is_empty


@given(documents, routes_strategy, st.sampled_from(SETTINGS), st.integers(1, 2000))
def test_restore_leaves_a_foreign_change_alone(
    document: dict, routes: list, setting: str, foreign: int
) -> None:
    plan = plan_gateway(GID, routes, document)
    applied = plan.apply_to(document)
    if foreign == doc.backend_setting_timeouts(applied)[setting]:
        return
    tampered = doc.with_request_timeouts(applied, {setting: foreign})
    final = plan_gateway(GID, [], tampered, plan.ledger)
    assert doc.backend_setting_timeouts(final.apply_to(tampered))[setting] == foreign


@given(documents, routes_strategy, st.randoms(use_true_random=False))
def test_route_order_does_not_matter(document: dict, routes: list, rnd: random.Random) -> None:
    shuffled = list(routes)
    rnd.shuffle(shuffled)
    assert plan_gateway(GID, shuffled, document) == plan_gateway(GID, routes, document)


def test_a_ledger_of_another_gateway_instance_counts_as_none() -> None:
    document = gateway_document({"a": 68}, buffering=False)
    document["properties"]["resourceGuid"] = "new-instance"
    ledger = owning(guid="old-instance", buffering=(True, False), a=(30, 68))
    plan = plan_gateway(GID, [route("r", idle=5)], document, ledger)
    assert plan.changes == ()  # the old instance's 30 is never "restored" onto this one
    assert plan.ledger == Ledger(gateway_id=GID, resource_guid="new-instance")


def test_a_plan_holds_only_in_the_instance_it_was_made_for() -> None:
    document = gateway_document({"a": 30})
    document["properties"]["resourceGuid"] = "first"
    plan = plan_gateway(GID, [route("r")], document)
    assert plan.ledger.resource_guid == "first"
    assert plan.holds_in(document)
    twin = json.loads(json.dumps(document))
    twin["properties"]["resourceGuid"] = "second"  # recreated with the very same values
    assert not plan.holds_in(twin)


# -- connection draining (spec.drainTimeout) ------------------------------------------------

DRAIN_A = CONNECTION_DRAINING.at("a")


def draining(document: dict, setting: str, seconds: int, enabled: bool = True) -> dict:
    for item in document["properties"]["backendHttpSettingsCollection"]:
        if item["name"] == setting:
            item["properties"]["connectionDraining"] = {
                "enabled": enabled,
                "drainTimeoutInSec": seconds,
            }
    return document


def test_drain_timeout_enables_draining_and_is_recorded() -> None:
    plan = plan_gateway(GID, [route("r", drain=120)], gateway_document({"a": 300}, buffering=False))
    assert changes(plan) == [("a", 0, 120, "apply")]
    # The setting had no connectionDraining at all: recorded, to restore it so.
    assert plan.ledger.owned == {DRAIN_A: Owned(0, 120, original_absent=True)}
    written = plan.apply_to(gateway_document({"a": 300}, buffering=False))
    setting = written["properties"]["backendHttpSettingsCollection"][0]["properties"]
    assert setting["connectionDraining"] == {"enabled": True, "drainTimeoutInSec": 120}
    assert "a connection draining 120s" in plan.outcomes["ns/r"].message


def test_drain_timeout_is_raised_never_lowered() -> None:
    document = draining(gateway_document({"a": 300}, buffering=False), "a", 60)
    assert changes(plan_gateway(GID, [route("r", drain=120)], document)) == [
        ("a", 60, 120, "apply")
    ]
    higher = draining(gateway_document({"a": 300}, buffering=False), "a", 600)
    plan = plan_gateway(GID, [route("r", drain=120)], higher)
    assert plan.changes == () and plan.ledger.is_empty
    assert plan.outcomes["ns/r"].values[DRAIN_A] == 600


def test_largest_drain_requirement_wins() -> None:
    plan = plan_gateway(
        GID,
        [route("r", drain=30), route("s", drain=90)],
        gateway_document({"a": 300}, buffering=False),
    )
    assert changes(plan) == [("a", 0, 90, "apply")]


def test_drain_is_restored_only_while_it_holds_our_value() -> None:
    # Off with no seconds recorded (as earlier versions recorded every disabled setting): ARM
    # needs some, so the restore keeps ours stored, and the change says what the gateway reads.
    ledger = Ledger(gateway_id=GID).with_owned({DRAIN_A: Owned(0, 120)})
    ours = draining(gateway_document({"a": 300}, buffering=False), "a", 120)
    plan = plan_gateway(GID, [], ours, ledger)
    assert changes(plan) == [("a", 120, -120, "restore")]
    restored = plan.apply_to(ours)["properties"]["backendHttpSettingsCollection"][0]
    assert restored["properties"]["connectionDraining"] == {
        "enabled": False,
        "drainTimeoutInSec": 120,
    }
    assert plan.summary.endswith("drainTimeoutInSec 120 -> off (120s stored)")
    # A crash after the intent (pending, without the place) was written: that restore landed.
    assert recover(ledger, plan.ledger, plan.apply_to(ours)).is_empty
    assert recover(ledger, plan.ledger, ours) == ledger  # it did not
    assert plan.ledger.is_empty
    theirs = draining(gateway_document({"a": 300}, buffering=False), "a", 900)
    plan = plan_gateway(GID, [], theirs, ledger)
    assert plan.changes == () and plan.ledger.is_empty
    assert any("900s" in n.message and "not restored" in n.message for n in plan.notices)


def test_a_third_partys_higher_drain_is_kept_and_no_longer_owned() -> None:
    ledger = Ledger(gateway_id=GID).with_owned({DRAIN_A: Owned(0, 120)})
    raised = draining(gateway_document({"a": 300}, buffering=False), "a", 1800)
    plan = plan_gateway(GID, [route("r", drain=120)], raised, ledger)
    assert plan.changes == () and plan.ledger.is_empty


def test_draining_off_without_a_drain_timeout_is_warned_about() -> None:
    plan = plan_gateway(GID, [route("r")], gateway_document({"a": 300}, buffering=False))
    [notice] = [n for n in plan.notices if n.reason is Reason.DRAINING_OFF]
    assert notice.route == "ns/r" and notice.level == "Warning"
    assert "connection draining is off on a" in notice.message
    assert "any update of the gateway" in notice.message
    drained = draining(gateway_document({"a": 300}, buffering=False), "a", 60)
    assert not [n for n in plan_gateway(GID, [route("r")], drained).notices]
    asked = plan_gateway(GID, [route("r", drain=60)], gateway_document({"a": 300}))
    assert not [n for n in asked.notices if n.reason is Reason.DRAINING_OFF]


def test_a_ledger_owning_draining_round_trips_and_omits_it_when_empty() -> None:
    ledger = Ledger(gateway_id=GID).with_owned({DRAIN_A: Owned(0, 120)})
    assert Ledger.from_json(ledger.to_json()) == ledger
    assert "connectionDraining" not in Ledger(gateway_id=GID).to_data()


def test_draining_absent_at_first_is_restored_absent() -> None:
    original = gateway_document({"a": 300}, buffering=False)
    applied = plan_gateway(GID, [route("r", drain=45)], original)
    stored = Ledger.from_json(applied.ledger.to_json())  # through the ConfigMap
    assert stored == applied.ledger
    assert json.loads(applied.ledger.to_json())["connectionDraining"]["a"] == {
        "original": 0,
        "applied": 45,
        "originalAbsent": True,
    }
    document = applied.apply_to(original)
    raised = plan_gateway(GID, [route("r", drain=90)], document, stored)  # still absent first
    assert raised.ledger.owned[DRAIN_A] == Owned(0, 90, original_absent=True)
    restore = plan_gateway(GID, [], document, stored)
    assert [c.absent_after for c in restore.changes if c.field is CONNECTION_DRAINING] == [True]
    assert restore.apply_to(document) == original  # the original shape, not enabled: false
    # A disabled block that was there stays a block, disabled.
    disabled = draining(original, "a", 30, enabled=False)
    kept = plan_gateway(GID, [route("r", drain=45)], disabled)
    assert not kept.ledger.owned[DRAIN_A].original_absent
    applied_there = kept.apply_to(disabled)
    back = plan_gateway(GID, [], applied_there, kept.ledger).apply_to(applied_there)
    setting = back["properties"]["backendHttpSettingsCollection"][0]["properties"]
    assert setting["connectionDraining"]["enabled"] is False


# -- draining off with seconds stored: ARM keeps drainTimeoutInSec while disabled ------------


def off_with_45() -> dict:
    return draining(gateway_document({"a": 300}, buffering=False), "a", 45, enabled=False)


def drain_block(document: dict) -> object:
    return document["properties"]["backendHttpSettingsCollection"][0]["properties"].get(
        "connectionDraining"
    )


def test_disabled_draining_keeps_its_stored_seconds_through_apply_and_restore() -> None:
    original = off_with_45()
    assert CONNECTION_DRAINING.read(original) == {"a": -45}
    applied = plan_gateway(GID, [route("r", drain=120)], original)
    assert changes(applied) == [("a", -45, 120, "apply")]
    assert applied.ledger.owned == {DRAIN_A: Owned(-45, 120)}
    assert json.loads(applied.ledger.to_json())["connectionDraining"]["a"] == {
        "original": -45,
        "applied": 120,
    }
    stored = Ledger.from_json(applied.ledger.to_json())  # through the ConfigMap
    assert stored == applied.ledger
    document = applied.apply_to(original)
    assert drain_block(document) == {"enabled": True, "drainTimeoutInSec": 120}
    restore = plan_gateway(GID, [], document, stored)
    assert changes(restore) == [("a", 120, -45, "restore")]
    assert restore.summary.endswith("drainTimeoutInSec 120 -> off (45s stored)")
    back = restore.apply_to(document)
    assert drain_block(back) == {"enabled": False, "drainTimeoutInSec": 45}
    assert back == original and restore.ledger.is_empty


def test_disabled_draining_with_seconds_stored_counts_as_off_everywhere() -> None:
    original = off_with_45()
    [notice] = plan_gateway(GID, [route("r")], original).notices
    assert notice.reason is Reason.DRAINING_OFF
    assert gateway_status(original, [DRAIN_A])["backendSettings"] == [
        {"name": "a", "requestTimeout": 300, "connectionDraining": 0}
    ]
    assert CONNECTION_DRAINING.show(-45) == "off (45s stored)"
    assert CONNECTION_DRAINING.show(0) == "off" and CONNECTION_DRAINING.show(45) == "45s"
    # A route that needs draining is not satisfied by stored seconds, however many.
    more = draining(gateway_document({"a": 300}, buffering=False), "a", 600, enabled=False)
    assert changes(plan_gateway(GID, [route("r", drain=120)], more)) == [("a", -600, 120, "apply")]


def test_two_routes_raise_and_lower_over_a_disabled_original() -> None:
    original = off_with_45()
    first = plan_gateway(GID, [route("r", drain=120)], original)
    document = first.apply_to(original)
    both = plan_gateway(GID, [route("r", drain=120), route("s", drain=300)], document, first.ledger)
    assert changes(both) == [("a", 120, 300, "apply")]
    assert both.ledger.owned[DRAIN_A] == Owned(-45, 300)
    document = both.apply_to(document)
    one = plan_gateway(GID, [route("r", drain=120)], document, both.ledger)
    assert changes(one) == [("a", 300, 120, "apply")]
    document = one.apply_to(document)
    none = plan_gateway(GID, [], document, one.ledger)
    assert drain_block(none.apply_to(document)) == {"enabled": False, "drainTimeoutInSec": 45}


def test_a_third_party_change_over_a_disabled_original_is_left_alone() -> None:
    original = off_with_45()
    applied = plan_gateway(GID, [route("r", drain=120)], original)
    document = applied.apply_to(original)
    # Someone turns draining off again, storing 60: theirs now, never "restored" to 45.
    turned_off = draining(copy.deepcopy(document), "a", 60, enabled=False)
    plan = plan_gateway(GID, [], turned_off, applied.ledger)
    assert plan.changes == () and plan.ledger.is_empty
    [notice] = plan.notices
    assert "left a connection draining at off (60s stored)" in notice.message
    assert "original off (45s stored) is not restored" in notice.message
    # Someone raises it: kept while a route needs less, and not restored after.
    raised = draining(copy.deepcopy(document), "a", 1800)
    kept = plan_gateway(GID, [route("r", drain=120)], raised, applied.ledger)
    assert kept.changes == () and kept.ledger.is_empty
    assert plan_gateway(GID, [], raised, kept.ledger).changes == ()


def test_draining_values_parse_within_arms_range_either_sign() -> None:
    assert CONNECTION_DRAINING.parse(-3600) == -3600 and CONNECTION_DRAINING.parse(0) == 0
    assert CONNECTION_DRAINING.from_tag(CONNECTION_DRAINING.tag_text(-45)) == -45
    for bad in (-3601, 3601, True, "45"):
        with pytest.raises(ValueError, match="not a number of seconds up to 3600"):
            CONNECTION_DRAINING.parse(bad)
    with pytest.raises(ValueError, match="up to 86400"):
        REQUEST_TIMEOUT.parse(-1)  # the sign is draining's alone
