"""The claim tags' limits end to end (issue 26): a gateway with no room for a claim, or with a
tag under the claims' prefix that is no claim, gets nothing written and its routes say why;
once the user mends their tags, the next resync applies. The operator runs as a process against
the real API server and the emulator over HTTPS; the user changes the gateway's tags as another
writer (the emulator's admin API, as the other e2e tests do)."""

from typing import Any

from appgw_sse.core import claims as cl
from tests.support.e2e import Rig, route_manifest, wait_for

ROUTE = "notifications"
# What the route's claim records: buffering off, notifications-http at 68 s (45 s idle).
CLAIM = ("appgw-sse.claim.blue", "buffering=off;timeout:notifications-http=68")


def set_tags(rig: Rig, tags: dict[str, str]) -> None:
    def change(document: dict[str, Any]) -> None:
        document["tags"] = dict(tags)

    rig.emulator.third_party_put(change)


def blocked(rig: Rig, reason: str) -> str:
    """The route held at GatewayConfigured=False `reason` by passes that keep writing nothing;
    the condition's message."""
    configured = rig.wait_condition(
        "shop", ROUTE, "False", reason, type_="GatewayConfigured", timeout=60
    )
    assert rig.condition("shop", ROUTE)["status"] == "False"
    [event] = wait_for(
        f"a Warning Event {reason}",
        lambda: [e for e in rig.events("shop", reason) if e["type"] == "Warning"],
    )
    assert event["involvedObject"]["name"] == ROUTE
    assert event["message"].endswith(configured["message"])
    # Three more reads of the gateway (resync passes, 1 s apart) and still no PUT.
    reads = len(rig.emulator.requests("GET"))
    wait_for("three more passes", lambda: len(rig.emulator.requests("GET")) >= reads + 3)
    assert rig.emulator.requests("PUT") == []
    assert rig.condition("shop", ROUTE, "GatewayConfigured")["reason"] == reason
    return str(configured["message"])


def applied_once(rig: Rig, user: dict[str, str]) -> None:
    """Ready after one PUT: the claim and the originals written, the user's tags as they left
    them."""
    rig.wait_condition("shop", ROUTE, "True", "Applied", timeout=60)
    assert len(rig.emulator.requests("PUT")) == 1
    tags = rig.emulator.gateway()["tags"]
    assert cl.user_tags(tags) == user
    claims = {k: v for k, v in tags.items() if cl.ours(k)}
    assert claims.keys() == {"appgw-sse.originals", CLAIM[0]}
    assert claims["appgw-sse.originals"].endswith(";buffering=on;timeout:notifications-http=30")
    assert claims[CLAIM[0]] == CLAIM[1]


def test_no_room_for_the_claim_writes_nothing_until_the_user_makes_room(rig: Rig) -> None:
    # A first claim needs two tags (its own and the originals'): 49 of the user's leave one.
    user = rig.emulator.gateway()["tags"] | {f"cost-centre-{i:02d}": "x" for i in range(47)}
    assert len(user) == cl.MAX_TAGS - 1
    set_tags(rig, user)
    rig.operator("--owner-id", "blue", "--resync", "1s")
    rig.apply(route_manifest(ROUTE))

    message = blocked(rig, "GatewayTagLimit")
    assert "room for 1 more tag (ARM allows 50 per resource; 49 are the gateway's own)" in message
    assert "the claims of blue need 2: nothing is written" in message
    assert rig.emulator.gateway()["tags"] == user

    del user["cost-centre-46"]
    set_tags(rig, user)
    applied_once(rig, user)
    assert len(rig.emulator.gateway()["tags"]) == cl.MAX_TAGS


def test_a_malformed_tag_under_the_prefix_writes_nothing_until_it_is_removed(rig: Rig) -> None:
    user = rig.emulator.gateway()["tags"]
    set_tags(rig, user | {"appgw-sse.claim.x": "timeout=soon"})
    rig.operator("--owner-id", "blue", "--resync", "1s")
    rig.apply(route_manifest(ROUTE))

    message = blocked(rig, "GatewayTagsInvalid")
    assert "tag appgw-sse.claim.x: 'timeout=soon' is not <field>[:<setting>]=<value>" in message
    assert rig.emulator.gateway()["tags"] == user | {"appgw-sse.claim.x": "timeout=soon"}

    set_tags(rig, user)
    applied_once(rig, user)
