"""DebouncedWorkers: a burst is one run even when it lasts longer than the debounce (marks
trickling in, as a GitOps sync applies routes one by one), and a trickle that never pauses is
still worked by `max_wait`."""

import asyncio

from appgw_sse.workers import DebouncedWorkers


async def trickle(workers: DebouncedWorkers, seconds: float, every: float = 0.1) -> float:
    """Mark "k" every `every` s for `seconds` (a schedule of stimuli); when the last mark was."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while loop.time() - began < seconds:
        workers.mark("k")
        await asyncio.sleep(every)
    workers.mark("k")
    return loop.time()


async def test_marks_closer_than_the_debounce_are_one_run_after_the_last() -> None:
    loop = asyncio.get_running_loop()
    runs: list[float] = []
    done = asyncio.Event()

    async def work(key: str) -> None:
        runs.append(loop.time())
        done.set()

    # Marks 0.1 s apart for 2.5 s, debounce 1 s: a leading window would have run twice.
    workers = DebouncedWorkers(work, 1.0, "test", error_delay=1, max_wait=60)
    try:
        last = await trickle(workers, 2.5)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await workers.close()
    assert len(runs) == 1
    assert runs[0] >= last + 1.0


async def test_a_trickle_that_never_pauses_is_worked_by_max_wait() -> None:
    loop = asyncio.get_running_loop()
    runs: list[float] = []

    async def work(key: str) -> None:
        runs.append(loop.time())

    workers = DebouncedWorkers(work, 1.0, "test", error_delay=1, max_wait=1.5)
    try:
        began = loop.time()
        last = await trickle(workers, 4.0)
    finally:
        await workers.close()
    assert runs, "no run while marks kept coming"
    assert began + 1.5 <= runs[0] < last
