"""The route book: what each route event changed, and the one status writer."""

from typing import Any

import pytest

from appgw_sse.core import conditions as cond
from appgw_sse.routebook import RouteBook, RouteChange
from tests.support.fakes import FakeKube, condition, deleting, route_body
from tests.support.gateways import gateway_id

FIRST, SECOND = gateway_id("first").lower(), gateway_id("second").lower()
ANNOTATED = cond.backends_annotated(1, 1, missing_service=None, header_conflict=None)


def on(gateway: str, generation: int = 1, **changes: Any) -> dict[str, Any]:
    body = route_body("r", generation, **changes)
    body["spec"]["gateway"]["id"] = gateway_id(gateway)
    return body


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def heard() -> list[RouteChange]:
    return []


@pytest.fixture
def book(kube: FakeKube, heard: list[RouteChange]) -> RouteBook:
    book = RouteBook(kube, ("*/applicationGateways/first", "*/applicationGateways/second"))
    book.listen(heard.append)
    return book


async def test_a_move_to_another_gateway_affects_both(
    book: RouteBook, heard: list[RouteChange]
) -> None:
    first = await book.observe(on("first"))
    assert first is not None and first.gateways == {FIRST} and first.requirements_changed
    moved = await book.observe(on("second", generation=2))
    assert moved is not None and moved.gateways == {FIRST, SECOND}
    assert heard == [first, moved]
    assert book.gateway_keys() == {SECOND} and book.on_gateway(FIRST) == []


async def test_nothing_changes_before_our_finalizer_or_without_a_new_generation(
    book: RouteBook, kube: FakeKube, heard: list[RouteChange]
) -> None:
    assert await book.observe(on("first", metadata={"finalizers": []})) is None
    assert book.routes == {}
    assert await book.observe(on("first")) is not None
    assert await book.observe(on("first")) is None  # e.g. our own status write coming back
    assert (len(heard), kube.statuses) == (1, [])


async def test_an_invalid_generation_is_reported_and_keeps_the_last_valid_requirements(
    book: RouteBook, kube: FakeKube
) -> None:
    await book.observe(on("first"))
    change = await book.observe(on("first", generation=2, idleInterval="soon"))
    assert change is not None and not change.requirements_changed and change.gateways == set()
    record = book.routes["ns/r"]
    assert record.intent is not None and record.intent.request_timeout == 68
    assert condition(kube.statuses[-1], "Accepted") == ("False", "InvalidSpec", 2)
    assert [e[1] for e in kube.events] == [cond.Reason.INVALID_SPEC]
    written = len(kube.statuses)
    deleted = await book.observe(deleting(on("first", generation=2, idleInterval="soon")))
    assert deleted is not None and deleted.gateways == {FIRST}  # its values must be restored
    # No status on a deleted route: the write would race kopf's finalizer patch (422).
    assert len(kube.statuses) == written


async def test_an_invalid_route_deleted_at_once_gets_no_status(
    book: RouteBook, kube: FakeKube
) -> None:
    await book.observe(deleting(on("first", idleInterval="soon")))
    assert (kube.statuses, kube.events) == ([], [])


async def test_a_gateway_not_allowed_is_refused_and_needs_no_gateway_pass(
    book: RouteBook, kube: FakeKube
) -> None:
    change = await book.observe(on("third"))
    assert change is not None and change.gateways == set() and change.requirements_changed
    assert book.routes["ns/r"].intent is None
    assert condition(kube.statuses[-1], "Accepted") == ("False", "GatewayNotAllowed", 1)
    assert kube.events[0][1] == cond.Reason.GATEWAY_NOT_ALLOWED


async def test_forgetting_a_route_tells_its_gateway(
    book: RouteBook, heard: list[RouteChange]
) -> None:
    await book.observe(on("first"))
    change = book.forget("ns", "r")
    assert change is not None and change.forgotten and change.gateways == {FIRST}
    assert heard[-1] is change and book.routes == {}
    assert book.forget("ns", "r") is None


async def test_identical_status_is_written_once(book: RouteBook, kube: FakeKube) -> None:
    await book.observe(on("first"))
    record = book.routes["ns/r"]
    configured = cond.planned(cond.Reason.APPLIED, "a requestTimeout 68s")
    for _ in range(3):
        await book.write_status(
            record, [*cond.accepted(1, 1), configured], computed_for=record.intent
        )
    assert len(kube.statuses) == 1
    assert condition(kube.statuses[0]) == ("True", "Applied", 1)


async def test_a_restarted_book_trusts_what_the_stored_status_says_of_this_generation(
    kube: FakeKube,
) -> None:
    """The route as a restarted operator lists it: configured and annotated at generation 2.
    A pass that only re-reports backends must not set Ready back to Pending."""
    stored = on("first", generation=2, backend={"selector": {"matchLabels": {"app": "web"}}})
    configured = cond.Condition(
        type=cond.GATEWAY_CONFIGURED, status="True", reason="Applied", message="applied",
        observed_generation=2, last_transition_time="2026-01-01T00:00:00Z",
    )  # fmt: skip
    stored["status"] = {
        "observedGeneration": 2,
        "conditions": [configured.model_dump(mode="json", by_alias=True)],
    }
    restarted = RouteBook(kube, ("*",))
    record = await restarted.observe(stored)
    assert record is not None
    await restarted.write_status(record.record, [ANNOTATED])
    assert condition(kube.last_status("r"), cond.GATEWAY_CONFIGURED) == ("True", "Applied", 2)

    # The same stored condition one generation behind says nothing of generation 3.
    stored["metadata"]["generation"] = 3
    behind = RouteBook(kube, ("*",))
    record = await behind.observe(stored)
    assert record is not None
    await behind.write_status(record.record, [ANNOTATED])
    assert condition(kube.last_status("r"), cond.GATEWAY_CONFIGURED) == ("False", "Pending", 3)


async def test_observed_generation_never_claims_work_not_done_for_it(
    book: RouteBook, kube: FakeKube
) -> None:
    """kstatus (Flux) reads a route whose status.observedGeneration is its generation and that
    has neither Reconciling nor Stalled True as Current: every write for a new generation before
    the gateway holds its requirements must say Reconciling."""
    await book.observe(on("first"))
    record = book.routes["ns/r"]
    configured = cond.planned(cond.Reason.APPLIED, "a requestTimeout 68s")
    first_intent = record.intent
    await book.write_status(record, [*cond.accepted(1, 1), configured], computed_for=first_intent)
    assert condition(kube.statuses[-1], cond.RECONCILING) == ("False", "Applied", 1)

    await book.observe(on("first", generation=2, idleInterval="90s"))
    await book.write_status(record, [ANNOTATED])  # e.g. the pod worker, first
    # A gateway pass planned from generation 1's requirements, finishing late.
    await book.write_status(record, [*cond.accepted(2, 2), configured], computed_for=first_intent)
    assert len(kube.statuses) == 3  # both writes for generation 2 landed
    for written in kube.statuses[1:]:
        assert written["observedGeneration"] == 2
        assert condition(written, cond.RECONCILING) == ("True", "Pending", 2)
        assert condition(written, cond.STALLED)[0] == "False"
    await book.write_status(record, [*cond.accepted(2, 2), configured], computed_for=record.intent)
    assert condition(kube.statuses[-1], cond.RECONCILING) == ("False", "Applied", 2)
    assert condition(kube.statuses[-1], cond.STALLED) == ("False", "Applied", 2)
