"""The stream check (spec.streamCheck): every interval, listen to a route's stream through the
gateway as `appgw-sse doctor` does (its listening and its analysis) and report the verdict as
the advisory condition StreamVerified, with an Event when it changes.

Each route has its own task, so a listen (up to 10 minutes) never holds up reconciliation; a
semaphore bounds the listens in flight across all routes. A check waits until the gateway pass
for the route's current requirements has reported and no update is in flight: it would
otherwise judge a gateway the operator is still changing.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from appgw_sse import doctor, metrics
from appgw_sse.core import conditions as cond
from appgw_sse.core.contract import MAX_STREAM_CHECKS_AT_ONCE
from appgw_sse.fence import LeadershipLost
from appgw_sse.models.route import StreamCheck
from appgw_sse.routebook import RouteBook, RouteChange, RouteRecord

log = logging.getLogger(__name__)

Observe = Callable[[str, float], Awaitable[doctor.Observation]]
# Condition messages and Events stay readable: the evidence first, then the detail.
MAX_EVIDENCE_CHARACTERS = 1024


class EventPort(Protocol):
    async def post_event(
        self, route: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None: ...


def evidence(report: doctor.Report) -> str:
    """The doctor's verdict and what shows it, in one line for a condition's message."""
    obs = report.obs
    first = f", the first after {obs.events[0].at:.1f} s" if obs.events else ""
    heard = (
        f"listened {obs.stopped_at:.1f} s to {obs.url}: {len(obs.events)} events{first}, "
        f"{len(obs.heartbeats)} heartbeats"
    )
    details = [f.message for f in report.problems]
    text = "; ".join([f"{report.verdict} ({heard})", *details])
    return (
        text
        if len(text) <= MAX_EVIDENCE_CHARACTERS
        else text[: MAX_EVIDENCE_CHARACTERS - 3] + "..."
    )


def settled(record: RouteRecord) -> bool:
    """Whether the gateway pass for the route's current requirements has reported and no
    update of its gateway is in flight."""
    if record.intent is not None and record.configured_for != record.intent:
        return False
    return not any(
        c.type == cond.GATEWAY_CONFIGURED and c.reason == cond.Reason.APPLYING
        for c in record.conditions
    )


class StreamChecker:
    """One task per route with a streamCheck; restarted when the route's requirements change.
    `interval`: the operator's --stream-check-interval (tests and emulators), which replaces
    every route's own."""

    def __init__(
        self,
        book: RouteBook,
        kube: EventPort,
        *,
        interval: float | None = None,
        concurrency: int = MAX_STREAM_CHECKS_AT_ONCE,
        observe: Observe = doctor.observe,
    ) -> None:
        self.book, self.kube, self.interval, self._observe = book, kube, interval, observe
        self._listening = asyncio.Semaphore(concurrency)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        book.listen(self.route_changed)

    def route_changed(self, change: RouteChange) -> None:
        record = change.record
        if not (change.requirements_changed or change.forgotten):
            return  # a rejected generation: the last valid spec stays in force, and its check
        running = self._tasks.pop(record.key, None)
        if running is not None:
            running.cancel()
        check = record.spec.stream_check if record.spec is not None else None
        if check is not None and not record.deleting and not change.forgotten:
            self._tasks[record.key] = asyncio.create_task(
                self._run(record, check), name=f"stream check {record.key}"
            )

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, record: RouteRecord, check: StreamCheck) -> None:
        assert record.spec is not None
        loop = asyncio.get_running_loop()
        interval = self.interval or check.interval_seconds
        listen = check.listen_seconds(record.spec.idle_seconds)
        while True:
            async with record.reported:
                await record.reported.wait_for(lambda: settled(record))
            started = loop.time()
            try:
                await self.check(record, check.url, listen)
            except LeadershipLost:
                return  # the process stops and stands by again
            except Exception:
                log.exception("route %s: stream check failed unexpectedly", record.key)
            await asyncio.sleep(max(0.0, started + interval - loop.time()))

    async def check(self, record: RouteRecord, url: str, listen: float) -> cond.Condition:
        """Listen to `url` once (waiting for a free slot) and report the verdict."""
        async with self._listening:
            observation = await self._observe(url, listen)
        report = doctor.analyse(observation)
        condition = cond.stream_verified([f.code for f in report.problems], evidence(report))
        metrics.STREAM_CHECKS.labels(condition.reason).inc()
        if observation.events:
            metrics.STREAM_CHECK_FIRST_EVENT_SECONDS.observe(observation.events[0].at)
        previous = next(
            (c.reason for c in record.conditions if c.type == cond.STREAM_VERIFIED), None
        )
        await self.book.write_status(record, [condition])
        if condition.reason != previous:
            live = condition.status == "True"
            log.log(
                logging.INFO if live else logging.WARNING,
                "route %s: stream check: %s: %s",
                record.key,
                condition.reason,
                condition.message,
                extra={"route": record.key},
            )
            await self.kube.post_event(
                record.ref, "Normal" if live else "Warning", condition.reason, condition.message
            )
        return condition
