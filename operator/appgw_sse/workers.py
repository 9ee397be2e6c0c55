"""One worker task per key (a gateway, a namespace) that coalesces bursts of work."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from appgw_sse.fence import LeadershipLost

log = logging.getLogger(__name__)


class DebouncedWorkers:
    """mark(key) wakes the key's worker; it waits `debounce` so a burst of marks becomes one
    run of `work(key)`. A returned delay (or a crash, after `error_delay`) schedules a rerun.
    Runs for one key never overlap; different keys run in parallel."""

    def __init__(
        self,
        work: Callable[[str], Awaitable[float | None]],
        debounce: float,
        label: str,
        error_delay: float,
    ) -> None:
        self._work, self._debounce, self._label, self._error_delay = (
            work,
            debounce,
            label,
            error_delay,
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
            await asyncio.sleep(self._debounce)
            dirty.clear()
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
