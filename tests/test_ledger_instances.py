"""A ledger belongs to one instance of its gateway.

The property drives the pure planner and ledger functions the way the reconciler does (recover,
plan, intent before the PUT, confirm after) through any sequence of route changes, third-party
writes, crashes, and deletion or recreation of the gateway, and checks against a model of each
instance: no owned value ever goes below what the instance held when the operator first
touched it, and once no route needs the gateway, each value is back to that instance's own.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import example, given
from hypothesis import strategies as st

from appgw_sse.core import document as doc
from appgw_sse.core.intent import RouteIntent
from appgw_sse.core.ledger import Ledger, recover
from appgw_sse.core.planner import Plan, plan_gateway
from appgw_sse.emulator.state import Emulator
from tests.support.gateways import gateway_document, gateway_id

GID = gateway_id()
SETTINGS = ("a", "b")
VALUES = (10, 30, 45, 68, 150)  # few, so that coincidences are common
Field = str | None  # a backend setting's requestTimeout, or None for response buffering
Interruption = Literal["crash-before-put", "crash-after-put", "recreated-before-put"] | None


@dataclass
class Instance:
    """One life of the gateway, and what the oracle knows of it."""

    document: dict[str, Any]
    first: dict[Field, int | bool] = field(default_factory=dict)  # held when first touched
    foreign: dict[Field, list[int | bool]] = field(default_factory=dict)  # others' later writes

    def value(self, name: Field) -> int | bool:
        if name is None:
            return doc.response_buffering_enabled(self.document)
        return doc.backend_setting_timeouts(self.document)[name]


@dataclass
class World:
    gateway: Instance | None = None
    stored: tuple[Ledger, Ledger | None] | None = None  # the ledger ConfigMap
    routes: dict[str, RouteIntent] = field(default_factory=dict)
    guids: Iterator[int] = field(default_factory=itertools.count)

    def create(self, timeouts: dict[str, int], buffering: bool) -> None:
        document = gateway_document(dict(timeouts), buffering=buffering)
        document["properties"]["resourceGuid"] = f"00000000-0000-4000-8000-{next(self.guids):012d}"
        self.gateway = Instance(document)

    def third_party(self, name: Field, value: int | bool) -> None:
        if self.gateway is None:
            return
        gateway = self.gateway
        if name is None:
            gateway.document = doc.with_response_buffering(gateway.document, bool(value))
        else:
            gateway.document = doc.with_request_timeouts(gateway.document, {name: int(value)})
        if name in gateway.first:
            gateway.foreign.setdefault(name, []).append(value)

    def store(self, ledger: Ledger) -> None:
        self.stored = None if ledger.is_empty else (ledger, None)

    def reconcile(self, interruption: Interruption) -> None:
        """One pass of the reconciler; `interruption` ends it early or races it."""
        if self.gateway is None:
            if not self.routes:
                self.stored = None  # gone, and needed by no route
            return
        confirmed, intent = self.stored or (Ledger(gateway_id=GID), None)
        ledger = recover(confirmed, intent, self.gateway.document)
        if intent is not None or ledger != confirmed:
            self.store(ledger)
        plan = plan_gateway(GID, list(self.routes.values()), self.gateway.document, ledger)
        if not plan.has_changes:
            if plan.ledger != ledger:
                self.store(plan.ledger)
            return
        self.stored = (ledger, plan.ledger)
        # The intent is where the operator takes a field over: a third party writing exactly
        # the intended value before the PUT is indistinguishable from the PUT landing.
        self.touch(plan)
        if interruption == "crash-before-put":
            return
        if interruption == "recreated-before-put":
            # Deleted and made again with the very same values between the plan and the PUT.
            self.create(
                doc.backend_setting_timeouts(self.gateway.document),
                doc.response_buffering_enabled(self.gateway.document),
            )
        if not plan.holds_in(self.gateway.document):
            return  # the adapter's fresh read refuses the PUT: StalePlan
        self.put(plan)
        if interruption == "crash-after-put":
            return
        self.store(plan.ledger)

    def touch(self, plan: Plan) -> None:
        assert self.gateway is not None
        for change in plan.changes:
            self.gateway.first.setdefault(change.setting, change.before)

    def put(self, plan: Plan) -> None:
        self.touch(plan)  # the instance written may not be the one the intent was for
        assert self.gateway is not None
        gateway = self.gateway
        for change in plan.changes:
            if change.setting is not None:
                floor = min(
                    [gateway.first[change.setting], *gateway.foreign.get(change.setting, [])]
                )
                assert int(change.after) >= floor, (
                    f"{change.setting} set to {change.after}, below {floor} that this instance "
                    "held when first touched (or someone else chose later)"
                )
        gateway.document = plan.apply_to(gateway.document)


def route(
    key: str, settings: tuple[str, ...], timeout: int, disable_buffering: bool
) -> RouteIntent:
    return RouteIntent(
        key=key,
        gateway_id=GID,
        backend_settings=settings,
        request_timeout=timeout,
        idle_seconds=max(1, timeout - 5),
        disable_buffering=disable_buffering,
    )


values = st.sampled_from(VALUES)
timeouts = st.fixed_dictionaries({s: values for s in SETTINGS})
routes = st.dictionaries(
    st.sampled_from(["ns/r1", "ns/r2", "ns/r3"]),
    st.tuples(st.sampled_from([("a",), ("b",), ("a", "b")]), values, st.booleans()),
    max_size=3,
).map(lambda drawn: {key: route(key, *spec) for key, spec in drawn.items()})
actions = st.one_of(
    st.tuples(st.just("routes"), routes),
    st.tuples(st.just("third-party"), st.sampled_from(SETTINGS), values),
    st.tuples(st.just("third-party"), st.none(), st.booleans()),
    st.tuples(st.just("delete")),
    st.tuples(st.just("create"), timeouts, st.booleans()),
)
# After each action the operator runs a pass, or misses the change ("unnoticed": the next
# action lands first), or is interrupted.
passes = st.sampled_from(
    [None, None, None, "crash-before-put", "crash-after-put", "recreated-before-put", "unnoticed"]
)


R68 = {"ns/r1": route("ns/r1", ("a",), 68, True)}
# Issue 9, A: recreated with 68 of its own; a route needing 10 must not "restore" the old 30.
RECREATED_WITH_68 = [
    (("routes", R68), None),
    (("create", {"a": 68, "b": 30}, False), "unnoticed"),
    (("routes", {"ns/r2": route("ns/r2", ("a",), 10, True)}), None),
]
# Issue 9, B: recreated under a live route with 45: raised to 68, then restored to 45, not 30.
RECREATED_WITH_45 = [
    (("routes", R68), None),
    (("delete",), None),
    (("create", {"a": 45, "b": 30}, True), None),
]
# An intent left by a crash on the old instance says nothing about the new one's 68.
INTENT_OF_THE_OLD_INSTANCE = [
    (("routes", R68), "crash-before-put"),
    (("create", {"a": 68, "b": 30}, False), None),
]


@given(timeouts, st.booleans(), st.lists(st.tuples(actions, passes), min_size=2, max_size=20))
@example({"a": 30, "b": 30}, True, RECREATED_WITH_68)
@example({"a": 30, "b": 30}, True, RECREATED_WITH_45)
@example({"a": 30, "b": 30}, True, INTENT_OF_THE_OLD_INSTANCE)
def test_owned_values_belong_to_the_live_instance(
    initial: dict[str, int], buffering: bool, script: list[tuple[tuple[Any, ...], Any]]
) -> None:
    world = World()
    world.create(initial, buffering)
    for action, interruption in script:
        match action:
            case ("routes", drawn):
                world.routes = drawn
            case ("third-party", name, value):
                world.third_party(name, value)
            case ("delete",):
                world.gateway = None
            case ("create", drawn, enabled):
                world.create(drawn, enabled)  # over a live gateway: deleted and recreated
        if interruption != "unnoticed":
            world.reconcile(interruption)
    world.routes = {}
    world.reconcile(None)
    world.reconcile(None)
    assert world.stored is None  # no route needs the gateway: no ledger is kept
    if world.gateway is None:
        return
    for name, first in world.gateway.first.items():
        foreign = world.gateway.foreign.get(name, [])
        held = world.gateway.value(name)
        # Back to what this instance held, unless someone else chose a value since.
        assert held == first if not foreign else held in [first, *foreign], (name, held, first)


def test_the_emulator_gives_each_instance_its_own_resource_guid() -> None:
    emulator = Emulator(lro_seconds=0)
    guid = emulator.seed(gateway_document({"a": 30}))["properties"]["resourceGuid"]
    body = gateway_document({"a": 68}) | {"location": "westeurope"}
    body["properties"]["resourceGuid"] = claimed = "ffffffff-ffff-4fff-8fff-ffffffffffff"
    _, updated, _ = emulator.put(GID, body, None, None)
    assert updated["properties"]["resourceGuid"] == guid  # kept by updates; read-only
    assert emulator.seed(gateway_document({"a": 90}))["properties"]["resourceGuid"] == guid
    emulator.delete(GID)
    emulator.advance()
    assert not emulator.gateways
    reseeded = emulator.seed(gateway_document({"a": 68}))["properties"]["resourceGuid"]
    assert reseeded != guid
    emulator.delete(GID)
    emulator.advance()
    _, created, _ = emulator.put(GID, body, None, None)
    assert created["properties"]["resourceGuid"] not in (guid, reseeded, claimed)
