"""Claims on the gateway: the tag format (core/claims.py), and planning by two owners."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appgw_sse.core import claims as cl
from appgw_sse.core import document as doc
from appgw_sse.core.claims import Claims, Original
from appgw_sse.core.conditions import Reason
from appgw_sse.core.fields import CONNECTION_DRAINING, REQUEST_TIMEOUT, RESPONSE_BUFFERING
from appgw_sse.core.intent import RouteIntent
from appgw_sse.core.planner import Plan, plan_gateway, release_claims
from tests.support.gateways import gateway_document, gateway_id, intent, owning

GID = gateway_id()
N = REQUEST_TIMEOUT.at("n")
BUFFERING = RESPONSE_BUFFERING.at()
DRAIN = CONNECTION_DRAINING.at("n")


# ---- the tag format -------------------------------------------------------------------


def test_render_and_parse_round_trip() -> None:
    claims = Claims(
        originals={BUFFERING: Original(True), N: Original(30), DRAIN: Original(0, absent=True)},
        needs={"blue": {BUFFERING: False, N: 135, DRAIN: 30}, "green": {N: 68}},
    )
    tags = claims.tags()
    assert tags == {
        "appgw-sse.originals": "buffering=on;timeout:n=30;draining:n=-",
        "appgw-sse.claim.blue": "buffering=off;timeout:n=135;draining:n=30",
        "appgw-sse.claim.green": "timeout:n=68",
    }
    assert cl.parse(tags) == (claims, [])
    assert claims.implied(N) == 135 and claims.implied(BUFFERING) is False


def test_a_long_claim_continues_in_numbered_tags_within_arms_limit() -> None:
    needs = {REQUEST_TIMEOUT.at(f"backend-setting-number-{i:02d}"): 135 for i in range(20)}
    claims = Claims(originals={p: Original(30) for p in needs}, needs={"blue": needs})
    tags = claims.tags()
    assert {"appgw-sse.claim.blue", "appgw-sse.claim.blue.1"} <= set(tags)
    assert all(len(value) <= cl.MAX_VALUE for value in tags.values())
    assert cl.parse(tags) == (claims, [])


def test_removing_the_last_claim_removes_the_originals() -> None:
    claims = Claims(originals={N: Original(30)}, needs={"blue": {N: 135}, "green": {N: 68}})
    assert claims.with_needs("blue", {}).originals == {N: Original(30)}
    assert claims.with_needs("blue", {}).with_needs("green", {}).tags() == {}


def test_originals_are_never_overwritten() -> None:
    claims = Claims(originals={N: Original(30)}, needs={"blue": {N: 135}})
    assert claims.with_originals({N: Original(135)}).originals[N] == Original(30)


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ({"appgw-sse.owner": "me"}, "not a tag of appgw-sse"),
        ({"appgw-sse.claim.b_c": "timeout:n=1"}, "not a tag of appgw-sse"),
        ({"appgw-sse.claim.blue": "timeout=135"}, "is not <field>"),
        ({"appgw-sse.claim.blue": "speed:n=3"}, "is not <field>"),
        ({"appgw-sse.claim.blue": "timeout:n=soon"}, "not a number of seconds"),
        ({"appgw-sse.claim.blue": "timeout:n=99999"}, "not a number of seconds up to"),
        ({"appgw-sse.claim.blue": "buffering=maybe"}, "not on or off"),
        ({"appgw-sse.claim.blue": "draining:n=-"}, "not a number of seconds"),
        ({"appgw-sse.originals": "draining:n=-3601"}, "not a number of seconds up to 3600"),
        ({"appgw-sse.claim.blue": "timeout:n=-5"}, "not a number of seconds up to 86400"),
        ({"appgw-sse.claim.blue": "timeout:n=1;timeout:n=2"}, "appears twice"),
        ({"appgw-sse.claim.blue.2": "timeout:n=1"}, "continuation without"),
        ({"appgw-sse.originals": ""}, "is not <field>"),
    ],
)
def test_malformed_tags_are_problems_not_crashes(tags: dict[str, str], problem: str) -> None:
    _, problems = cl.parse(tags | {"owner": "team-a"})
    assert len(problems) == 1 and problem in problems[0]


@given(st.dictionaries(st.text(max_size=30), st.text(max_size=40), max_size=6))
def test_any_tags_parse_without_raising(tags: dict[str, str]) -> None:
    cl.parse({f"appgw-sse.{k}": v for k, v in tags.items()} | tags)


def test_owner_ids() -> None:
    assert cl.check_owner("blue-1a2b3c4d") == "blue-1a2b3c4d"
    for bad in ("", "Blue", "a.b", "-a", "a" * 64, "a_b"):
        with pytest.raises(ValueError, match="not an owner id"):
            cl.check_owner(bad)


# ---- planning by two owners ------------------------------------------------------------


def route(name: str, idle: int, **kwargs: object) -> RouteIntent:
    return intent(name, settings=("n",), idle=idle, **kwargs)  # type: ignore[arg-type]


def step(owner: str, routes: list[RouteIntent], document: dict) -> tuple[Plan, dict]:
    plan = plan_gateway(GID, routes, document, owner=owner)
    return plan, plan.apply_to(document)


def values(document: dict) -> tuple[int, bool]:
    return doc.backend_setting_timeouts(document)["n"], doc.response_buffering_enabled(document)


ORIGINAL = gateway_document({"n": 30}, tags={"team": "payments"})


@pytest.mark.parametrize("first_deleted", ["blue", "green"])
def test_two_owners_any_order_of_deletes(first_deleted: str) -> None:
    """The issue's two scenarios: blue needs 90 s idle (135), green 45 s (68)."""
    needs = {"blue": [route("a", 90)], "green": [route("b", 45)]}
    _, document = step("blue", needs["blue"], ORIGINAL)
    _, document = step("green", needs["green"], document)
    assert values(document) == (135, False)
    assert cl.parse(document["tags"])[0].originals == {N: Original(30), BUFFERING: Original(True)}
    plan, document = step(first_deleted, [], document)
    remaining = "green" if first_deleted == "blue" else "blue"
    assert values(document) == ({"green": 68, "blue": 135}[remaining], False)
    assert plan.claims.owners() == [remaining]
    _, document = step(remaining, [], document)
    assert values(document) == (30, True)
    assert document["tags"] == {"team": "payments"}


def test_the_other_owners_pass_sees_no_drift_after_a_lowering() -> None:
    _, document = step("blue", [route("a", 90)], ORIGINAL)
    _, document = step("green", [route("b", 45)], document)
    _, document = step("blue", [], document)
    again = plan_gateway(GID, [route("b", 45)], document, owner="green")
    assert not again.has_changes
    assert [n.reason for n in again.notices] == [Reason.DRAINING_OFF]


def test_a_lowered_need_updates_its_own_claim_only() -> None:
    _, document = step("blue", [route("a", 90)], ORIGINAL)
    _, document = step("green", [route("b", 120)], document)
    plan, document = step("blue", [route("a", 10, buffering=False)], document)
    assert plan.changes == ()  # green's 180 s still rules
    assert cl.parse(document["tags"])[0].needs == {
        "blue": {N: 15},
        "green": {BUFFERING: False, N: 180},
    }


def test_a_first_claim_below_the_value_is_recorded_when_others_claim() -> None:
    _, document = step("blue", [route("a", 90)], ORIGINAL)
    plan, document = step("green", [route("b", 45)], document)
    assert plan.changes == () and plan.claims.needs["green"] == {BUFFERING: False, N: 68}


def test_a_writer_outside_the_claims_is_drift() -> None:
    _, document = step("blue", [route("a", 90)], ORIGINAL)
    _, document = step("green", [route("b", 45)], document)
    lowered = doc.with_request_timeouts(document, {"n": 40})
    plan = plan_gateway(GID, [route("b", 45)], lowered, owner="green")
    assert [(c.before, c.after, c.kind) for c in plan.changes] == [(40, 135, "drift")]


def test_adoption_takes_the_originals_from_the_ledger_in_one_pass() -> None:
    ledger = owning(buffering=(True, False), a=(30, 68))
    document = gateway_document({"a": 68}, buffering=False)
    plan = plan_gateway(GID, [intent("r")], document, ledger, owner="blue")
    assert plan.changes == () and plan.has_changes
    assert plan.claims.originals == {
        REQUEST_TIMEOUT.at("a"): Original(30),
        BUFFERING: Original(True),
    }
    assert "claim of blue written" in plan.claims_summary
    adopted = plan.apply_to(document)
    assert not plan_gateway(GID, [intent("r")], adopted, plan.ledger, owner="blue").has_changes


def test_a_vanished_claim_is_written_again() -> None:
    plan, document = step("blue", [route("a", 90)], ORIGINAL)
    stripped = document | {"tags": {"team": "payments"}}
    again = plan_gateway(GID, [route("a", 90)], stripped, plan.ledger, owner="blue")
    assert again.changes == () and again.apply_to(stripped)["tags"] == document["tags"]


def test_no_room_for_the_tags_blocks_every_route_and_writes_nothing() -> None:
    full = gateway_document({"n": 30}, tags={f"t{i}": "x" for i in range(49)})
    plan = plan_gateway(GID, [route("a", 90)], full, owner="blue")
    assert not plan.has_changes
    assert plan.outcomes["ns/a"].reason is Reason.GATEWAY_TAG_LIMIT
    assert "room for 1 more tag" in plan.outcomes["ns/a"].message
    roomy = gateway_document({"n": 30}, tags={f"t{i}": "x" for i in range(48)})
    assert plan_gateway(GID, [route("a", 90)], roomy, owner="blue").has_changes


def test_garbage_under_the_prefix_blocks_without_writing() -> None:
    _, document = step("blue", [route("a", 90)], ORIGINAL)
    document["tags"]["appgw-sse.claim.green"] = "timeout:n=lots"
    plan = plan_gateway(GID, [], document, owner="blue")
    assert not plan.has_changes
    assert any("appgw-sse.claim.green" in n.message for n in plan.notices)
    planned = plan_gateway(GID, [route("a", 90)], document, owner="blue")
    assert planned.outcomes["ns/a"].reason is Reason.GATEWAY_TAGS_INVALID


def test_user_tags_are_never_touched() -> None:
    _, document = step("blue", [route("a", 90)], ORIGINAL)
    assert cl.user_tags(document["tags"]) == {"team": "payments"}
    _, document = step("blue", [], document)
    assert document["tags"] == {"team": "payments"}


def test_draining_absent_original_is_restored_absent_by_the_last_claimant() -> None:
    _, document = step("blue", [route("a", 45, drain=30)], ORIGINAL)
    _, document = step("green", [route("b", 45, drain=60)], document)
    _, document = step("green", [], document)
    assert doc.backend_setting_draining(document)["n"] == 30
    _, document = step("blue", [], document)
    assert doc.connection_draining_absent(document, "n")


def with_draining_off(document: dict, stored: int) -> dict:
    return doc.with_connection_draining(document, {"n": -stored})


def test_an_original_of_draining_off_keeps_its_stored_seconds_in_the_tags() -> None:
    claims = Claims(originals={DRAIN: Original(-45)}, needs={"blue": {DRAIN: 120}})
    assert claims.tags()["appgw-sse.originals"] == "draining:n=-45"
    assert cl.parse(claims.tags()) == (claims, [])
    assert claims.implied(DRAIN) == 120
    assert claims.with_needs("blue", {}).implied(DRAIN) is None
    assert claims.describe("blue") == "n connection draining 120s"


def test_draining_off_with_stored_seconds_is_restored_so_by_the_last_claimant() -> None:
    original = with_draining_off(ORIGINAL, 45)
    _, document = step("blue", [route("a", 45, drain=120)], original)
    assert document["tags"]["appgw-sse.originals"].endswith("draining:n=-45")
    _, document = step("green", [route("b", 45, drain=300)], document)
    _, document = step("blue", [], document)
    assert doc.backend_setting_draining(document)["n"] == 300
    _, document = step("green", [], document)
    setting = document["properties"]["backendHttpSettingsCollection"][0]["properties"]
    assert setting["connectionDraining"] == {"enabled": False, "drainTimeoutInSec": 45}
    assert document == original


def test_draining_someone_turned_off_meanwhile_is_not_restored_by_claims() -> None:
    _, document = step("blue", [route("a", 45, drain=120)], with_draining_off(ORIGINAL, 45))
    turned_off = with_draining_off(document, 60)
    plan = plan_gateway(GID, [], turned_off, owner="blue")
    assert all(c.field is not CONNECTION_DRAINING for c in plan.changes)
    assert doc.backend_setting_draining(plan.apply_to(turned_off))["n"] == -60


def test_releasing_a_claim_restores_draining_off_with_its_stored_seconds() -> None:
    original = with_draining_off(ORIGINAL, 45)
    _, document = step("blue", [route("a", 45, drain=120)], original)
    plan = release_claims(GID, document, "blue")
    assert [(c.before, c.after) for c in plan.changes if c.field is CONNECTION_DRAINING] == [
        (120, -45)
    ]
    assert plan.apply_to(document) == original


def test_a_lowering_for_another_clusters_claim_names_it() -> None:
    _, document = step("blue", [route("a", 90)], ORIGINAL)
    _, document = step("green", [route("b", 45)], document)
    plan = plan_gateway(GID, [], document, owner="blue")
    assert plan.attributed.endswith("135 -> 68 for the claims of green")
    assert plan.claims_summary == "claim of blue removed; claims of green kept"


def test_claim_tags_of_an_earlier_instance_are_disregarded() -> None:
    first = ORIGINAL | {"properties": ORIGINAL["properties"] | {"resourceGuid": "aaaaaaaa-1"}}
    plan, document = step("blue", [route("a", 90)], first)
    assert document["tags"]["appgw-sse.originals"].startswith("instance=aaaaaaaa;")
    # Created again from the exported document: its tags, another instance, 45 s of its own.
    again = doc.with_request_timeouts(document, {"n": 45})
    again["properties"] = again["properties"] | {"resourceGuid": "bbbbbbbb-2"}
    replan = plan_gateway(GID, [route("a", 90)], again, plan.ledger, owner="blue")
    assert replan.claims.originals[N] == Original(45)  # not the old instance's 30
    assert any("earlier instance" in n.message for n in replan.notices)
    satisfied = plan_gateway(GID, [route("a", 20)], again, owner="blue")
    assert not satisfied.has_changes  # the stale tags alone are not worth a PUT


def test_a_released_claim_costs_no_put_and_goes_with_the_next_write() -> None:
    two = gateway_document({"n": 30, "m": 30})
    plan, document = step("blue", [route("a", 90), intent("c", settings=("m",))], two)
    gone = plan_gateway(
        GID,
        [intent("c", settings=("m",))],
        document,
        plan.ledger,
        released=[route("a", 90)],
        owner="blue",
    )
    assert not gone.has_changes and N not in gone.ledger.owned
    assert values(document) == (135, False)
    # Its claim stays until blue writes anyway; then it goes, and 135 stays (left as it is).
    later = plan_gateway(
        GID, [intent("c", settings=("m",), idle=100)], document, gone.ledger, owner="blue"
    )
    assert [c.setting for c in later.changes] == ["m"]
    assert N not in later.claims.needs["blue"] and N not in later.claims.originals
    assert doc.backend_setting_timeouts(later.apply_to(document))["n"] == 135


def test_the_default_owner_id_names_the_namespace_and_the_cluster() -> None:
    owner = cl.default_owner("appgw-sse-system", "4f1c6a52-0000-4000-8000-000000000000")
    assert owner.startswith("appgw-sse-system-") and len(owner) == len("appgw-sse-system-") + 8
    assert owner != cl.default_owner("appgw-sse-system", "another-cluster")
    assert len(cl.default_owner("n" * 63, "uid")) == 63
