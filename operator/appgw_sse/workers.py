"""One worker task per key (a gateway, a namespace) that coalesces bursts of work."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from appgw_sse.fence import LeadershipLost

log = logging.getLogger(__name__)


# A burst that never pauses for `debounce` (changes trickling in) is still worked this long
# after its first mark.
MAX_WAIT = 60.0


class DebouncedWorkers:
    """mark(key) wakes the key's worker; it runs `work(key)` once no mark came for `debounce`
    (at the latest `max_wait` after the first), so a burst of marks becomes one run, also one
    spread over longer than `debounce` such as a GitOps sync applying routes one by one: every
    run of a gateway's worker may be a PUT, and every PUT ends live streams. A returned delay
    (or a crash, after `error_delay`) schedules a rerun. Runs for one key never overlap;
    different keys run in parallel."""

    def __init__(
        self,
        work: Callable[[str], Awaitable[float | None]],
        debounce: float,
        label: str,
        error_delay: float,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self._work, self._debounce, self._label, self._error_delay, self._max_wait = (
            work,
            debounce,
            label,
            error_delay,
            max_wait,
        )
        self._dirty: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def mark(self, key: str) -> None:
        self._dirty.setdefault(key, asyncio.Event()).set()
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._run(key), name=f"{self._label} {key}")

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, key: str) -> None:
        dirty = self._dirty[key]
        while True:
            await dirty.wait()
            await self._quiet(dirty)
            try:
                retry = await self._work(key)
            except LeadershipLost as exc:
                # Deposed: nothing more is written; the process stops and stands by again.
                log.warning("%s %s: %s; stopping this worker", self._label, key, exc)
                return
            except Exception:
                log.exception(
                    "%s %s: reconciliation failed unexpectedly; retrying", self._label, key
                )
                retry = self._error_delay
            if retry is not None:
                await asyncio.sleep(max(retry, 1.0))
                dirty.set()

    async def _quiet(self, dirty: asyncio.Event) -> None:
        """Return once no mark came for `debounce` (or `max_wait` passed), with `dirty` clear:
        a mark from then on asks for another run."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(self._max_wait, self._debounce)
        while True:
            dirty.clear()
            window = min(self._debounce, deadline - loop.time())
            if window <= 0:
                return
            try:
                # Not wait_for: on 3.11 it can swallow a cancellation that races a mark.
                async with asyncio.timeout(window):
                    await dirty.wait()
            except TimeoutError:
                return
