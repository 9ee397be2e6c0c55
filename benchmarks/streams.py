"""What users feel: live SSE streams through route changes. N streams run through the ARM
emulator's data plane (its proxy applies buffering, requestTimeout and the connection draining
of every gateway update) from a backend that numbers its events and resumes from
`Last-Event-ID`, to clients that reconnect as EventSource does (after the `retry:` the server
sent). The operator runs as a process on the real kube-apiserver, draining on through a route's
`drainTimeout`. A scripted workload, as users make it:

  1. a GitOps sync: 50 route changes spread over 20 s;
  2. 10 single changes a minute apart (the minute compressed);
  3. 20 deletions at once.

The same workload runs twice in one run, on two gateways: with the operator's default
`--debounce` (2 s, the measured column) and with `--debounce 0s` (each change its own update, as a
reconciler without coalescing does: the comparison), then the ratio. Per phase: PUTs, stream
ends, the most ends any stream saw (against the number of bursts), events lost (ids never
received), events received twice, and the delay from an event's send time to its arrival.

    python benchmarks/streams.py [--smoke] [--streams N]

Targets, on the default column: at most one stream end per stream per burst (one update), 0
events lost. Exit 1 when one is missed.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import cluster as clusters
from tests.support.cluster import Cluster
from tests.support.e2e import (
    Emulator,
    Operator,
    extra_gateways,
    gateway_id,
    route_manifest,
    route_ready,
)

from appgw_sse import EXAMPLES
from appgw_sse.sandbox.demo import wait_until

T = TypeVar("T")
SETTING, POOL = "notifications-http", "pool-notifications"  # what /events/* is routed to
LRO_SECONDS = 1.0  # the emulator's PUT duration (Azure's take tens of seconds)
ROUTES = "/apis/sse.appgw.dev/v1alpha1/namespaces/{namespace}/sseroutes"
COLUMNS = (("2s", "--debounce 2s (default)"), ("0s", "--debounce 0s"))


@dataclass(frozen=True)
class Size:
    streams: int
    sync_changes: int
    sync_seconds: float
    singles: int
    minute: float  # a minute, compressed
    deletions: int
    interval: float  # seconds between two events of a stream
    drain: int  # the routes' drainTimeout, seconds
    retry_ms: int  # the backend's `retry:`


FULL = Size(200, 50, 20.0, 10, 8.0, 20, 1.0, 2, 500)
SMOKE = Size(10, 6, 3.0, 2, 5.0, 3, 0.5, 2, 500)


def until(what: str, check: Callable[[], T | None], timeout: float) -> T:
    return wait_until(what, check, timeout, interval=0.2)


# -- the backend: numbered events, resumed from Last-Event-ID ---------------------------------


class Backend:
    """Stream KEY's events are a log: event n is due at the stream's start + n * interval, and
    its JSON `ts` says so. A connection first replays what the client missed since its
    Last-Event-ID (the log keeps everything: a loss is the path's, not the backend's), then
    sends each event when it is due. After `stop()` no event is due any more."""

    def __init__(self, interval: float, retry_ms: int) -> None:
        self.interval, self.retry_ms = interval, retry_ms
        self.starts: dict[str, float] = {}
        self.stopped_at: float | None = None

    def due(self, key: str, number: int) -> float:
        return self.starts[key] + number * self.interval

    def last(self, key: str) -> int:
        """The last event of the log once stopped."""
        assert self.stopped_at is not None
        return math.floor((self.stopped_at - self.starts[key]) / self.interval)

    def stop(self) -> None:
        self.stopped_at = time.time()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        start = self.starts.setdefault(key, time.time())
        sent = int(request.headers.get("Last-Event-ID") or 0)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(f"retry: {self.retry_ms}\n\n".encode())
        while True:
            due = start + (sent + 1) * self.interval
            if self.stopped_at is not None and due > self.stopped_at:
                await asyncio.sleep(3600)  # the log ended: the connection idles until closed
            if due > time.time():
                await asyncio.sleep(due - time.time())
                continue
            sent += 1
            data = json.dumps({"n": sent, "ts": due})
            await response.write(f"id: {sent}\ndata: {data}\n\n".encode())


# -- the clients: EventSource's reconnection -------------------------------------------------


@dataclass
class Client:
    """One EventSource: dispatches events as the HTML standard parses them (the last event id
    is taken on dispatch), and after a dropped or ended response reconnects once the server's
    `retry:` has passed, sending Last-Event-ID. A response that is not 200 fails it for good,
    as it fails EventSource."""

    key: str
    url: str
    received: dict[int, list[float]] = field(default_factory=dict)  # id -> arrival times
    delays: list[tuple[float, float]] = field(default_factory=list)  # (sent, delay)
    ends: list[float] = field(default_factory=list)
    connected: bool = False
    failed: str = ""
    last_id: str = ""
    retry: float = 3.0  # EventSource's default reconnection time, until the server sends one

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if self.last_id:
                headers["Last-Event-ID"] = self.last_id
            try:
                async with session.get(self.url, headers=headers) as response:
                    if response.status != 200:
                        self.failed = f"HTTP {response.status}"
                        return
                    self.connected = True
                    await self._read(response)
            except (aiohttp.ClientError, OSError):
                pass
            self.connected = False
            self.ends.append(time.time())
            await asyncio.sleep(self.retry)

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        event_id, data = self.last_id, ""
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    event_id = value
                elif name == "data":
                    data = value
                elif name == "retry" and value.isdigit():
                    self.retry = int(value) / 1000
                continue
            self.last_id = event_id
            if data:
                self._dispatch(int(event_id), json.loads(data))
            data = ""

    def _dispatch(self, number: int, data: dict[str, Any]) -> None:
        now = time.time()
        self.received.setdefault(number, []).append(now)
        self.delays.append((data["ts"], now - data["ts"]))


# -- one column: the workload on one gateway under one operator -----------------------------


@dataclass
class Phase:
    name: str
    bursts: list[float]  # when each burst began
    began: float = 0.0
    ended: float = 0.0


@dataclass
class Column:
    debounce: str
    gateway: str
    namespace: str
    phases: list[Phase] = field(default_factory=list)
    puts: list[float] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)
    backend: Backend | None = None


class Bench:
    def __init__(self, size: Size, workdir: Path, cluster: Cluster, emulator: Emulator) -> None:
        self.size, self.workdir, self.cluster, self.emulator = size, workdir, cluster, emulator

    def kubectl(self, *args: str, stdin: str | None = None) -> None:
        result = self.cluster.kubectl(*args, stdin=stdin)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")

    def patch_idle(self, namespace: str, name: str, idle: int) -> None:
        self.cluster.call(
            "PATCH",
            f"{ROUTES.format(namespace=namespace)}/{name}",
            {"spec": {"idleInterval": f"{idle}s"}},
            content_type="application/merge-patch+json",
        )

    def all_ready(self, namespace: str) -> bool:
        items = self.cluster.call("GET", ROUTES.format(namespace=namespace))["items"]
        return bool(items) and all(route_ready(r) for r in items)

    def arm(self, gateway: str, since: float) -> list[dict[str, Any]]:
        return [
            r
            for r in self.emulator.admin("GET", "requests")
            if r["time"] >= since and r["path"].lower() == gateway.lower()
        ]

    def quiet_since(self, since: float, quiet: float = 2.0) -> float:
        """Wait until the operator (the only client of ARM) has sent nothing for `quiet` s,
        its operation polls included; the time of its last request (`since` if none)."""

        def check() -> float | None:
            times = [r["time"] for r in self.emulator.admin("GET", "requests")]
            last = max([t for t in times if t >= since], default=since)
            return last if time.time() - last >= quiet else None

        return until("the operator quiet on ARM", check, timeout=300)

    # -- the workload, in a thread (it blocks): the streams run on the event loop meanwhile --

    def setup(self, column: Column) -> None:
        size, ns = self.size, column.namespace
        self.kubectl("create", "namespace", ns)
        # One route brings draining; sync routes y*, single-change routes z*; each change
        # raises a requirement, so each needs its own update unless coalesced.
        routes = [
            route_manifest(
                "base", ns, (SETTING,), "10s", column.gateway, drainTimeout=f"{size.drain}s"
            )
        ]
        routes += [
            route_manifest(f"y{i:03d}", ns, (SETTING,), "10s", column.gateway)
            for i in range(size.sync_changes)
        ]
        routes += [route_manifest(f"z{i:02d}", ns, (SETTING,), "10s", column.gateway) for i in range(size.singles)]  # fmt: skip
        listing = {"apiVersion": "v1", "kind": "List", "items": routes}
        self.kubectl("apply", *self.cluster.validate_flags(), "-f", "-", stdin=json.dumps(listing))
        until(f"{len(routes)} routes Ready", lambda: self.all_ready(ns), timeout=300)

    def workload(self, column: Column) -> None:
        size, ns = self.size, column.namespace
        began = time.time()
        sync = Phase(
            f"GitOps sync: {size.sync_changes} changes over {size.sync_seconds:g} s", [began], began
        )
        spacing = size.sync_seconds / max(size.sync_changes - 1, 1)
        for i in range(size.sync_changes):
            _sleep_until(sync.began + i * spacing)
            self.patch_idle(ns, f"y{i:03d}", 20 + i)
        self.settled(column, sync)

        singles = Phase(
            f"{size.singles} single changes a minute apart",
            [],
        )
        singles.began = time.time()
        for i in range(size.singles):
            if i:
                # A minute leaves each change's update and drain behind it: so must the
                # compressed one, else one burst's stream ends would count as the next's.
                _sleep_until(max(singles.bursts[-1] + size.minute, self.settle(column, singles.bursts[-1])))  # fmt: skip
            singles.bursts.append(time.time())
            self.patch_idle(ns, f"z{i:02d}", 100 + 10 * i)
        self.settled(column, singles)

        # The routes holding the highest requirements go: the timeout comes down, one update.
        doomed = [f"z{i:02d}" for i in range(size.singles)]
        doomed += [f"y{i:03d}" for i in range(size.sync_changes - (size.deletions - len(doomed)), size.sync_changes)]  # fmt: skip
        began = time.time()
        deletions = Phase(f"{len(doomed)} deletions at once", [began], began)
        self.kubectl("delete", "sseroutes", "-n", ns, "--wait=false", *doomed)
        until("the deleted routes gone", lambda: not any(
            r["metadata"]["name"] in doomed
            for r in self.cluster.call("GET", ROUTES.format(namespace=ns))["items"]
        ), timeout=300)  # fmt: skip
        self.settled(column, deletions)

    def settle(self, column: Column, since: float) -> float:
        """Once the changes made since `since` are over: every route Ready, the operator quiet,
        its last update's drain run out and every stream connected again; that time."""
        until(f"{column.namespace} Ready", lambda: self.all_ready(column.namespace), timeout=300)
        last = self.quiet_since(since)
        _sleep_until(last + self.size.drain + 1.0)
        until("every stream connected", lambda: all(c.connected for c in column.clients), 60)
        return time.time()

    def settled(self, column: Column, phase: Phase) -> None:
        phase.ended = self.settle(column, phase.bursts[-1])
        column.phases.append(phase)
        print(f"  {phase.name}: {phase.ended - phase.began:.0f} s", file=sys.stderr, flush=True)

    # -- one column ---------------------------------------------------------------------------

    async def column(self, debounce: str, gateway: str, namespace: str) -> Column:
        column = Column(debounce, gateway, namespace)
        operator = Operator(
            self.workdir, self.cluster, self.emulator, "--no-probe", "--debounce", debounce
        )
        try:
            await asyncio.to_thread(self.setup, column)
            quiet = await asyncio.to_thread(self.quiet_since, 0.0)
            await asyncio.sleep(max(quiet + self.size.drain + 1.0 - time.time(), 0))
            backend = column.backend = Backend(self.size.interval, self.size.retry_ms)
            await self.run_streams(column, backend)
            column.puts = [r["time"] for r in self.arm(gateway, 0.0) if r["method"] == "PUT"]
        except BaseException:
            print(operator.output()[-6000:], file=sys.stderr)
            raise
        finally:
            operator.stop()
        return column

    async def run_streams(self, column: Column, backend: Backend) -> None:
        app = web.Application()
        app.router.add_get("/events/{key}", backend.handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        pool = f"{column.gateway}/backendAddressPools/{POOL}"
        answer = await asyncio.to_thread(self.emulator.admin, "POST", "backends", {pool: url})
        frontend = answer["frontends"][column.gateway.rsplit("/", 1)[-1]]
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
        )
        column.clients = [
            Client(f"{column.debounce}-{i}", f"{frontend}/events/{column.debounce}-{i}")
            for i in range(self.size.streams)
        ]
        tasks = [asyncio.create_task(c.run(session)) for c in column.clients]
        try:
            await _wait_async("every stream's first event", lambda: all(c.received for c in column.clients), 60)  # fmt: skip
            await asyncio.to_thread(self.workload, column)
            backend.stop()
            await _wait_async(
                "every stream's last event",
                lambda: all(c.failed or backend.last(c.key) in c.received for c in column.clients),
                60,
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await session.close()
            await runner.cleanup()


def _sleep_until(when: float) -> None:
    # A schedule, not a synchronisation: the workload's changes are due at these times.
    time.sleep(max(when - time.time(), 0))


async def _wait_async(what: str, check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


# -- figures --------------------------------------------------------------------------------


@dataclass
class Figures:
    puts: int
    ends: int
    most_per_stream: int  # the most ends one stream saw in the phase
    most_per_burst: int  # the most ends one stream saw in one burst
    lost: int
    duplicated: int
    failed: int
    p50: float
    p99: float


def figures(column: Column, phase: Phase) -> Figures:
    assert column.backend is not None
    backend, window = column.backend, (phase.began, phase.ended)
    bounds = [*phase.bursts[1:], phase.ended]
    per_stream, per_burst, lost, duplicated, delays = [], [], 0, 0, []
    for client in column.clients:
        ends = [t for t in client.ends if window[0] <= t < window[1]]
        per_stream.append(len(ends))
        per_burst += [
            sum(1 for t in ends if began <= t < bound)
            for began, bound in zip(phase.bursts, bounds, strict=True)
        ]
        last = backend.last(client.key)
        for number in range(1, last + 1):
            if window[0] <= backend.due(client.key, number) < window[1]:
                arrivals = client.received.get(number, [])
                lost += not arrivals
                duplicated += max(len(arrivals) - 1, 0)
        delays += [d for sent, d in client.delays if window[0] <= sent < window[1]]
    delays.sort()
    return Figures(
        puts=sum(1 for t in column.puts if window[0] <= t < window[1]),
        ends=sum(per_stream),
        most_per_stream=max(per_stream, default=0),
        most_per_burst=max(per_burst, default=0),
        lost=lost,
        duplicated=duplicated,
        failed=sum(1 for c in column.clients if c.failed),
        p50=_percentile(delays, 0.50),
        p99=_percentile(delays, 0.99),
    )


def _percentile(values: list[float], q: float) -> float:
    return values[min(int(q * len(values)), len(values) - 1)] if values else math.nan


def _ratio(a: float, b: float) -> str:
    if a == b:
        return "x1"
    return f"x{b / a:.1f}" if a else "-"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def render(size: Size, columns: list[Column], elapsed: float, build: str) -> tuple[str, bool]:
    main, other = columns
    load = os.getloadavg()[0]
    lines = [
        f"streams: {'smoke' if size == SMOKE else 'full'} size, {size.streams} streams per "
        f"column, an event every {size.interval:g} s per stream; {build}; ARM emulator (PUT "
        f"{LRO_SECONDS:g} s), operator --no-probe; {os.cpu_count()} cores; {elapsed:.0f} s",
        f"time compressed: drainTimeout {size.drain} s; a minute = {size.minute:g} s (or until "
        f"the previous change's update and drain are over, if later); PUTs take {LRO_SECONDS:g} s"
        f" (Azure: minutes); the backend's retry: {size.retry_ms} ms; load average "
        f"{load:.1f} at the end",
        "",
        f"| phase | figure | target | {COLUMNS[0][1]} | {COLUMNS[1][1]} | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    met = True
    for mine, theirs in zip(main.phases, other.phases, strict=True):
        a, b = figures(main, mine), figures(other, theirs)
        bursts = len(mine.bursts)
        ok_ends, ok_lost = a.most_per_burst <= 1, a.lost == 0 and a.failed == 0
        met = met and ok_ends and ok_lost
        rows = [
            ("PUTs", "-", str(a.puts), str(b.puts), _ratio(a.puts, b.puts)),
            ("stream ends", "-", str(a.ends), str(b.ends), _ratio(a.ends, b.ends)),
            (
                f"stream ends per stream, most ({bursts} burst{'s' * (bursts > 1)})",
                f"<= 1 per burst (<= {bursts})",
                f"{a.most_per_stream} (per burst {a.most_per_burst}){_mark(ok_ends)}",
                f"{b.most_per_stream} (per burst {b.most_per_burst})",
                _ratio(a.most_per_stream, b.most_per_stream),
            ),
            (
                "events lost (ids never received)",
                "0",
                f"{a.lost}{_mark(ok_lost)}" + (f", {a.failed} streams failed" if a.failed else ""),
                str(b.lost) + (f", {b.failed} streams failed" if b.failed else ""),
                "-",
            ),
            ("events duplicated", "-", str(a.duplicated), str(b.duplicated), "-"),
            (
                "delay send to arrival, p50 / p99",
                "-",
                f"{_ms(a.p50)} / {_ms(a.p99)}",
                f"{_ms(b.p50)} / {_ms(b.p99)}",
                _ratio(a.p99, b.p99) + " (p99)",
            ),
        ]
        for i, row in enumerate(rows):
            lines.append(f"| {mine.name if i == 0 else ''} | " + " | ".join(row) + " |")
    return "\n".join(lines), met


def _mark(ok: bool) -> str:
    return " (met)" if ok else " **(missed)**"


def seeds() -> list[dict[str, Any]]:
    example = json.loads((EXAMPLES / "gateway.json").read_text())
    return [example, extra_gateways(example)[0]]  # agw-shop-prod, agw-shop-second


async def run(size: Size, workdir: Path) -> tuple[str, bool]:
    began = time.time()
    (workdir / "seeds.json").write_text(json.dumps(seeds()))
    emulator = Emulator(workdir, [workdir / "seeds.json"], lro_seconds=LRO_SECONDS)
    try:
        with clusters.running(workdir) as cluster:
            bench = Bench(size, workdir, cluster, emulator)
            columns = []
            for (debounce, _), gateway in zip(
                COLUMNS, (gateway_id("agw-shop-prod"), gateway_id("agw-shop-second")), strict=True
            ):
                print(f"column --debounce {debounce} on {gateway}", file=sys.stderr, flush=True)
                columns.append(await bench.column(debounce, gateway, f"streams-{debounce}"))
    finally:
        emulator.stop()
    return render(size, columns, time.time() - began, clusters.describe())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a small size, for CI")
    parser.add_argument("--streams", type=int, help="streams per column (default 200)")
    args = parser.parse_args()
    if clusters.real_server() is None:
        print("streams.py needs the real API server (../shared/k8s, etcd, xz)", file=sys.stderr)
        return 1
    size = SMOKE if args.smoke else FULL
    if args.streams:
        size = Size(**{**size.__dict__, "streams": args.streams})
    with tempfile.TemporaryDirectory(prefix="appgw-sse-streams-") as tmp:
        table, met = asyncio.run(run(size, Path(tmp)))
    print(table)
    return 0 if met else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
