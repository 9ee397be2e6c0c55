"""The stream check (spec.streamCheck): the verdict and its evidence, decided without a network;
the worker with a fake listener: when it listens, what it reports, and that listens are bounded
and never hold up the other workers' status writes."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from appgw_sse import metrics
from appgw_sse.core import conditions as cond
from appgw_sse.doctor import Observation, analyse
from appgw_sse.models import parse_spec
from appgw_sse.routebook import RouteBook, RouteRecord
from appgw_sse.streamcheck import StreamChecker, evidence
from tests.support.fakes import FakeKube, condition, deleting, route_body
from tests.support.gateways import gateway_id
from tests.support.observations import observation

URL = "https://shop.example.com/events/orders"
LIVE = observation([0.5, 1.0, 1.5, 2.0], [0.5, 1.0, 1.5, 2.0])
BUFFERED = observation([2.0] * 4 + [4.0] * 4, [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0])
APPLIED = cond.planned(cond.Reason.APPLIED, "gateway configured")


# -- the verdict (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("problems", "reason"),
    [
        ([], "Live"),
        (["buffered"], "Buffered"),
        (["content-length"], "Buffered"),
        (["content-encoding", "buffered"], "Compressed"),  # compression is why events waited
        (["buffered", "cut"], "Cut"),
        (["unreachable"], "Unreachable"),
        (["no-response"], "NoResponse"),
        (["status"], "HttpError"),
        (["content-type"], "NotEventStream"),
        (["silent"], "Silent"),
        (["something-new"], "NotLive"),
    ],
)
def test_the_verdict_is_the_most_telling_problem(problems: list[str], reason: str) -> None:
    verified = cond.stream_verified(problems, "evidence")
    assert (verified.type, verified.reason, verified.message) == (
        "StreamVerified",
        reason,
        "evidence",
    )
    assert verified.status == ("True" if reason == "Live" else "False")


def test_stream_verified_is_advisory_not_part_of_ready() -> None:
    configured = [cond.accepted(1, 1)[0], APPLIED]
    merged = cond.merge_conditions([], [*configured, cond.stream_verified(["cut"], "x")], 1, "t")
    assert {c.type: c.status for c in merged}["Ready"] == "True"


def test_evidence_is_the_doctors_verdict_and_findings() -> None:
    text = evidence(analyse(BUFFERED))
    assert text.startswith("buffered (events arrive in bursts of 4 after silences of 2.0 s)")
    assert "listened 10.0 s to http://gw/events: 8 events, the first after 2.0 s" in text
    assert "8 of 8 events arrived in 2 bursts" in text  # the buffered finding's evidence
    assert evidence(analyse(LIVE)).startswith("streams live (listened")
    unreachable = Observation(URL, 4.0, 0.0, error="Connection refused")
    assert evidence(analyse(unreachable)).startswith("could not connect (Connection refused)")


def test_evidence_is_bounded() -> None:
    long = Observation("https://x.example/" + "e" * 3000, 4.0, 0.0, error="refused")
    assert len(evidence(analyse(long))) == 1024


def test_listen_defaults_to_twice_the_idle_interval_at_most_ten_minutes() -> None:
    def listen(idle: str, **check: str) -> int:
        spec = parse_spec(
            route_body(idle=idle, streamCheck={"url": URL, **check})["spec"]
        ).stream_check
        assert spec is not None
        return spec.listen_seconds(parse_spec(route_body(idle=idle)["spec"]).idle_seconds)

    assert listen("45s") == 90
    assert listen("6m") == 600
    assert listen("45s", listen="20s") == 20
    check = parse_spec(route_body(streamCheck={"url": URL})["spec"]).stream_check
    assert check is not None and check.interval_seconds == 300


# -- the worker -------------------------------------------------------------------------------


class FakeListener:
    """Stands in for doctor.observe: answers `results` in turn (the last one repeats); while
    `gate` is set, each listen waits for it. Counts listens in flight."""

    def __init__(self, *results: Observation) -> None:
        self.results = list(results)
        self.urls: list[tuple[str, float]] = []
        self.gate: asyncio.Event | None = None
        self.in_flight = self.most = 0
        self.heard = asyncio.Condition()  # notified as each listen starts

    async def __call__(self, url: str, listen: float) -> Observation:
        async with self.heard:
            self.urls.append((url, listen))
            self.heard.notify_all()
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.in_flight -= 1
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


async def until(kube: FakeKube, what: Callable[[], Any]) -> Any:
    """Wait for a status write after which `what()` holds."""
    async with asyncio.timeout(5), kube.changed:
        return await kube.changed.wait_for(what)


def checked(
    name: str = "r", generation: int = 1, idle: str = "45s", **check: Any
) -> dict[str, Any]:
    return route_body(name, generation, idle, streamCheck={"url": URL, **check})


def verified(kube: FakeKube, name: str = "r") -> tuple[str, str, int] | None:
    statuses = [s for n, s in kube.written if n == name]
    types = {c["type"] for c in statuses[-1]["conditions"]} if statuses else set()
    return condition(statuses[-1], "StreamVerified") if "StreamVerified" in types else None


async def gateway_pass(book: RouteBook, record: RouteRecord) -> None:
    """What the gateway worker writes once it has configured the route's gateway."""
    accepted = cond.accepted(record.intent_generation, record.generation)
    await book.write_status(record, [*accepted, APPLIED], computed_for=record.intent)


def checks_counted(verdict: str) -> float:
    sample = metrics.REGISTRY.get_sample_value("appgw_sse_stream_check_total", {"verdict": verdict})
    return sample or 0.0


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def book(kube: FakeKube) -> RouteBook:
    return RouteBook(kube, (gateway_id(),))


async def test_a_check_waits_for_the_gateway_pass_then_reports_each_verdict_change(
    book: RouteBook, kube: FakeKube
) -> None:
    listener = FakeListener(LIVE, BUFFERED, BUFFERED, LIVE)
    checker = StreamChecker(book, kube, interval=0.01, observe=listener)
    counted = {v: checks_counted(v) for v in ("Live", "Buffered")}
    try:
        await book.observe(checked(idle="10s"))
        await asyncio.sleep(0.05)
        assert listener.urls == []  # the gateway is not configured for this route yet
        await gateway_pass(book, book.routes["ns/r"])
        await until(kube, lambda: verified(kube) == ("True", "Live", 1))
        await until(kube, lambda: verified(kube) == ("False", "Buffered", 1))
        await until(kube, lambda: verified(kube) == ("True", "Live", 1))
    finally:
        await checker.close()
    assert listener.urls[0] == (URL, 20)  # twice the idle interval
    reasons = [reason for _, reason, _ in kube.events]
    assert reasons == ["Live", "Buffered", "Live"]  # the second Buffered changed nothing
    assert "bursts of 4" in kube.events[1][2]
    assert checks_counted("Buffered") == counted["Buffered"] + 2
    assert checks_counted("Live") >= counted["Live"] + 2
    ready = condition(kube.written[-1][1], "Ready")
    assert ready[:2] == ("True", "Applied")  # advisory: Buffered never touched Ready


async def test_at_most_ten_listens_at_once_and_status_writes_never_wait_for_them(
    book: RouteBook, kube: FakeKube
) -> None:
    listener = FakeListener(LIVE)
    listener.gate = asyncio.Event()
    checker = StreamChecker(book, kube, observe=listener)
    try:
        for index in range(12):
            await book.observe(checked(f"r{index}"))
            await gateway_pass(book, book.routes[f"ns/r{index}"])
        async with asyncio.timeout(5), listener.heard:
            await listener.heard.wait_for(lambda: len(listener.urls) >= 10)
        await asyncio.sleep(0.1)  # room for an eleventh listen to start, were it allowed
        assert (listener.most, len(listener.urls)) == (10, 10)
        # Every route's status is still written at once while all slots are held.
        async with asyncio.timeout(1):
            await book.write_status(book.routes["ns/r11"], [cond.invalid_spec("spec.x: bad")])
        assert condition(kube.written[-1][1], "Accepted")[:2] == ("False", "InvalidSpec")
        listener.gate.set()
        await until(kube, lambda: all(verified(kube, f"r{i}") for i in range(12)))
    finally:
        await checker.close()
    assert listener.most == 10


async def test_removing_the_stream_check_stops_it_and_drops_its_condition(
    book: RouteBook, kube: FakeKube
) -> None:
    listener = FakeListener(BUFFERED)
    checker = StreamChecker(book, kube, interval=3600, observe=listener)
    try:
        await book.observe(checked())
        await gateway_pass(book, book.routes["ns/r"])
        await until(kube, lambda: verified(kube) == ("False", "Buffered", 1))
        await book.observe(route_body("r", 2))
        record = book.routes["ns/r"]
        await gateway_pass(book, record)
        assert verified(kube) is None
        assert "ns/r" not in checker._tasks
        # A deleted route is not checked either.
        await book.observe(deleting(checked(generation=3)))
        assert "ns/r" not in checker._tasks
    finally:
        await checker.close()
    assert len(listener.urls) == 1


async def test_a_new_generation_is_checked_again_after_its_gateway_pass(
    book: RouteBook, kube: FakeKube
) -> None:
    listener = FakeListener(BUFFERED, LIVE)
    checker = StreamChecker(book, kube, interval=3600, observe=listener)
    try:
        await book.observe(checked())
        await gateway_pass(book, book.routes["ns/r"])
        await until(kube, lambda: verified(kube) == ("False", "Buffered", 1))
        await book.observe(checked(generation=2, idle="50s", listen="30s"))
        await asyncio.sleep(0.05)
        assert len(listener.urls) == 1  # waits for generation 2's gateway pass
        await gateway_pass(book, book.routes["ns/r"])
        await until(kube, lambda: verified(kube) == ("True", "Live", 2))
    finally:
        await checker.close()
    assert listener.urls[1] == (URL, 30)
