"""`appgw-sse` under tracemalloc, for `benchmarks/scale.py --profile`: on SIGUSR1 the operator
writes its largest live allocations (grouped by the line that made them, with their callers) and
a census of its live objects by type to $APPGW_SSE_TRACEMALLOC_OUT. Kept out of the operator
itself: tracing doubles its memory and slows it several times."""

import gc
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

from appgw_sse.cli import main

# Deeper tracebacks (APPGW_SSE_TRACEMALLOC_FRAMES) find who holds memory, but slow the operator.
FRAMES = int(os.environ.get("APPGW_SSE_TRACEMALLOC_FRAMES", "4"))
TOP = 30


def dump(signum: int, frame: FrameType | None) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()  # the next dump shows the peak since this one
    lines = [f"traced: {current / 2**20:.1f} MiB, peak since the last dump {peak / 2**20:.1f} MiB"]
    for stat in snapshot.statistics("traceback")[:TOP]:
        lines.append(f"\n{stat.size / 2**20:.2f} MiB in {stat.count} blocks")
        lines += [f"  {f.filename}:{f.lineno}" for f in reversed(stat.traceback)]
    by_file = snapshot.statistics("filename")[:TOP]
    lines.append("\nby file:")
    lines += [f"{s.size / 2**20:8.2f} MiB {s.traceback[0].filename}" for s in by_file]
    census: dict[str, list[int]] = {}
    for obj in gc.get_objects():
        entry = census.setdefault(type(obj).__qualname__, [0, 0])
        entry[0] += 1
        entry[1] += sys.getsizeof(obj)
    lines.append("\nlive objects tracked by the GC, by type (count, shallow size):")
    for name, (count, size) in sorted(census.items(), key=lambda kv: -kv[1][1])[:TOP]:
        lines.append(f"{count:9d} {size / 2**20:8.2f} MiB {name}")
    Path(os.environ["APPGW_SSE_TRACEMALLOC_OUT"]).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR1, dump)
    sys.exit(main())
