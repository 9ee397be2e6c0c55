"""Cost at scale: what the operator costs in ARM writes and reads, Kubernetes writes, memory and
CPU at the sizes users run. A real kube-apiserver (../shared/k8s) with its audit log, the ARM
emulator and the operator as processes, the operator under the Helm chart's RBAC:

    python benchmarks/scale.py [--smoke] [--profile DIR]

Prints one table, figure | target | measured, and exits 1 when a target is missed. --smoke runs
every figure at a small size (CI keeps the benchmark working with it). --profile DIR runs the
operator under tracemalloc (benchmarks/traced_operator.py) and writes its largest allocations at
start and at the memory figure, and py-spy profiles of the pods pass and the idle window when
py-spy is installed; memory figures are then inflated by the tracing.

Kubernetes requests are counted on the API server's audit log (the operator's own identity), ARM
requests on the emulator's request log; both carry wall-clock times, so each figure counts the
requests inside its own window.
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import cluster as clusters
from tests.support.cluster import ApiRequest, Cluster, audit_request, operator_user
from tests.support.e2e import Emulator, Operator, gateway_id, route_manifest, route_ready

from appgw_sse import EXAMPLES
from appgw_sse.sandbox.demo import wait_until

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
ROUTES = "/apis/sse.appgw.dev/v1alpha1"
DEBOUNCE = 1.0  # the rig's --debounce
LRO_SECONDS = 1.0
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
SHARED, OTHER, SAMPLED = "notifications-http", "chat-http", "api-http"
GATEWAY_LABEL = "scale.appgw.dev/gateway"  # the index of a filled route's gateway


@dataclass(frozen=True)
class Size:
    burst: int  # routes applied at once on one gateway
    routes: int  # in all, over `gateways`
    gateways: int
    pods: tuple[int, int]  # selected pods: a small and a large namespace, for the growth
    all_pods: int  # pods in the cluster
    samples: int  # single changes timed
    idle: float  # seconds of the idle window
    resync: float  # the second operator's --resync
    rss: float | None  # MiB; None: at a small size the fixed cost of the imports is all it shows

    @property
    def per_gateway(self) -> int:
        return self.routes // self.gateways


FULL = Size(
    burst=100,
    routes=1000,
    gateways=5,
    pods=(1000, 5000),
    all_pods=10000,
    samples=5,
    idle=60,
    resync=30,
    rss=175,
)
SMOKE = Size(
    burst=10,
    routes=50,
    gateways=5,
    pods=(40, 200),
    all_pods=400,
    samples=2,
    idle=5,
    resync=8,
    rss=None,
)


def until(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
    """The sandbox's `wait_until`, polling less often by default: a check may list 1,000 routes."""
    return wait_until(what, check, timeout, interval)


class Audit:
    """The API server's audit log, read incrementally (it grows to tens of MB at full size)."""

    def __init__(self, path: Path) -> None:
        self.path, self._offset, self._partial = path, 0, b""
        self.requests: list[ApiRequest] = []

    def refresh(self) -> list[ApiRequest]:
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
            self._offset += len(chunk)
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            self.requests += [r for r in map(audit_request, lines) if r is not None]
        return self.requests

    def operator(
        self, since: float = 0.0, until_: float = math.inf, lease: bool = False
    ) -> list[ApiRequest]:
        """The operator's requests in the window; its Lease renewals (a fixed cost, every 2 s
        whatever the size) only with `lease`."""
        user = operator_user()
        return [
            r
            for r in self.refresh()
            if r.user == user and since <= r.time < until_ and (r.resource == "leases") == lease
        ]

    def writes(self, since: float, until_: float = math.inf) -> list[ApiRequest]:
        return [r for r in self.operator(since, until_) if r.verb in WRITES]


def describe_writes(writes: list[ApiRequest]) -> str:
    counts: dict[str, int] = {}
    for r in writes:
        what = f"{r.resource}/{r.subresource}" if r.subresource else r.resource
        counts[what] = counts.get(what, 0) + 1
    text = ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "none"
    if 0 < len(writes) <= 5:  # few enough to name: which objects
        text += ": " + ", ".join(f"{r.namespace}/{r.name}" for r in writes)
    return text


def arm_kind(request: dict[str, Any]) -> str:
    if "/operations/" in request["path"]:
        return "poll"
    return request["method"]


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (the peak) in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def imports_rss() -> float:
    """MiB: a process that imports what `appgw-sse run` does and nothing else, the floor under
    every memory figure."""
    probe = (
        "import appgw_sse.running, appgw_sse.handlers.routes; "
        "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return int(out.stdout) / 1024


@dataclass
class Row:
    figure: str
    target: str
    measured: str
    met: bool | None  # None: no target, the figure is reported


@dataclass
class Bench:
    size: Size
    workdir: Path
    cluster: Cluster
    emulator: Emulator
    profile: Path | None
    audit: Audit = field(init=False)
    rows: list[Row] = field(default_factory=list)
    gateways: list[str] = field(default_factory=list)
    operator: Operator | None = None

    def __post_init__(self) -> None:
        assert isinstance(self.cluster, clusters.RealCluster)
        self.audit = Audit(self.cluster.audit_log)

    # -- plumbing -------------------------------------------------------------------------

    def row(self, figure: str, target: str, measured: str, met: bool | None = None) -> None:
        self.rows.append(Row(figure, target, measured, met))
        print(f"  {figure}: {measured} (target {target})", file=sys.stderr, flush=True)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=900,
            env=dict(
                os.environ, KUBECONFIG=str(self.cluster.kubeconfig), HOME=str(self.cluster.home)
            ),
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result.stdout

    def create(self, items: list[dict[str, Any]]) -> None:
        """As users bulk-create: one `kubectl create` of a v1 List."""
        listing = {"apiVersion": "v1", "kind": "List", "items": items}
        self.kubectl("create", *self.cluster.validate_flags(), "-f", "-", stdin=json.dumps(listing))

    def patch_route(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.cluster.call(
            "PATCH",
            f"{ROUTES}/namespaces/{namespace}/sseroutes/{name}",
            {"spec": spec},
            content_type="application/merge-patch+json",
        )

    def routes(self, namespace: str | None = None) -> list[dict[str, Any]]:
        path = f"{ROUTES}/namespaces/{namespace}/sseroutes" if namespace else f"{ROUTES}/sseroutes"
        return list(self.cluster.call("GET", path)["items"])

    def arm(self, since: float, until_: float = math.inf) -> list[dict[str, Any]]:
        return [r for r in self.emulator.admin("GET", "requests") if since <= r["time"] < until_]

    def start_operator(self, *extra: str) -> Operator:
        operator = Operator(self.workdir, self.cluster, self.emulator, "--no-probe", *extra)
        if self.profile is not None:
            # Restart it under tracemalloc: same arguments, another entry point.
            operator.stop()
            operator.args[1:3] = [str(HERE / "traced_operator.py")]
            operator.env["APPGW_SSE_TRACEMALLOC_OUT"] = str(self.profile / "tracemalloc")
            operator.start()
        self.operator = operator
        return operator

    @property
    def pid(self) -> int:
        assert self.operator is not None
        return self.operator.process.pid

    def settle(self, quiet: float = 2.0, timeout: float = 900.0) -> float:
        """Wait until the operator has sent nothing to Kubernetes or ARM and used under 10% of a
        core for `quiet` seconds; the time it went quiet."""
        samples: list[tuple[float, float]] = []

        def quiet_since() -> float | None:
            now, cpu = time.time(), process_cpu(self.pid)
            samples.append((now, cpu))
            earlier = [s for s in samples if now - s[0] >= quiet]
            if not earlier:
                return None
            then, cpu_then = earlier[-1]
            last = max(
                [r.time for r in self.audit.operator(now - 3600)]
                + [r["time"] for r in self.arm(now - 3600)]
                + [0.0]
            )
            if now - last >= quiet and cpu - cpu_then < 0.1 * (now - then):
                return last
            return None

        return until("the operator to go quiet", quiet_since, timeout, interval=0.5)

    def ready(self, names: set[str], namespace: str | None = None) -> bool:
        found = {r["metadata"]["name"]: r for r in self.routes(namespace)}
        return all(name in found and route_ready(found[name]) for name in names)

    @contextlib.contextmanager
    def spy(self, name: str) -> Iterator[None]:
        """A py-spy profile of the operator over the block (with --profile and py-spy)."""
        if self.profile is None or shutil.which("py-spy") is None:
            yield
            return
        out = self.profile / f"py-spy-{name}.txt"
        spy = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                "50",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)

    def dump_allocations(self, name: str) -> None:
        if self.profile is None:
            return
        out = self.profile / "tracemalloc"
        out.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1)
        until("the allocation dump", out.exists, timeout=600)
        until("the allocation dump written", lambda: out.stat().st_size > 0, timeout=120)
        out.rename(self.profile / f"tracemalloc-{name}.txt")

    # -- figures --------------------------------------------------------------------------

    def burst(self) -> None:
        n, gateway = self.size.burst, self.gateways[0]
        names = {f"b{i:03d}" for i in range(n)}
        started = time.time()
        self.create(
            [
                route_manifest(name, "scale", (SHARED,), f"{20 + i % 20}s", gateway)
                for i, name in enumerate(sorted(names))
            ]
        )
        until(f"{n} routes Ready", lambda: self.ready(names, "scale"), timeout=300, interval=0.2)
        elapsed = time.time() - started
        self.settle()
        puts = sum(1 for r in self.arm(started) if r["method"] == "PUT")
        writes = self.audit.writes(started)
        self.row(
            f"{n} routes applied at once on one gateway: PUTs",
            f"<= 2 (per route: {n})",
            str(puts),
            puts <= 2,
        )
        self.row(
            f"{n} routes: apply to all Ready",
            "-",
            f"{elapsed:.1f} s (debounce {DEBOUNCE:g} s, LRO {LRO_SECONDS:g} s)",
        )
        self.row(
            f"{n} routes: Kubernetes writes", "-", f"{len(writes)} ({describe_writes(writes)})"
        )

    def single_changes(self) -> None:
        """Routes created one at a time, each raising a setting: one PUT each."""
        gateway, overheads, counts = self.gateways[0], [], []
        for i in range(self.size.samples):
            name = f"solo{i}"
            self.create([route_manifest(name, "scale", (SAMPLED,), f"{60 + 10 * i}s", gateway)])
            created = next(
                r.time
                for r in self.audit.refresh()
                if r.verb == "create" and r.resource == "sseroutes" and r.name == name
            )
            until(f"{name} Ready", lambda n=name: self.ready({n}, "scale"), timeout=120)  # type: ignore[misc]
            quiet = self.settle()
            requests = self.arm(created, quiet + 0.001)
            put = next(r["time"] for r in requests if r["method"] == "PUT")
            overheads.append(put - created - DEBOUNCE)
            counts.append(
                tuple(sum(1 for r in requests if arm_kind(r) == k) for k in ("GET", "PUT", "poll"))
            )
        gets, puts, polls = (max(c[k] for c in counts) for k in range(3))
        # The SDK polls once at once, then after each Retry-After (the emulator's: 1 s).
        polls_expected = 1 + math.ceil(LRO_SECONDS)
        self.row(
            f"ARM requests per applied change (worst of {self.size.samples})",
            f"GET <= 2 (plan + LRO final), PUT 1, polls <= "
            f"{polls_expected} (at once + per Retry-After)",
            f"GET {gets}, PUT {puts}, polls {polls}",
            gets <= 2 and puts == 1 and polls <= polls_expected,
        )
        median = sorted(overheads)[len(overheads) // 2]
        self.row(
            "operator overhead: apply to PUT on the wire, minus debounce",
            "<= 200 ms",
            f"median {median * 1000:.0f} ms, max {max(overheads) * 1000:.0f} ms",
            median <= 0.2,
        )

    def fill(self) -> None:
        """Up to `routes` over all gateways: half of each gateway's routes share one setting."""
        items, per = [], self.size.per_gateway
        taken = self.size.burst + self.size.samples + 2  # + the two routes of the pods figures
        for g, gateway in enumerate(self.gateways):
            count = per - taken if g == 0 else per
            for i in range(count):
                setting = SHARED if g > 0 and i < per // 2 else OTHER
                item = route_manifest(f"g{g}-{i:03d}", "scale", (setting,), "30s", gateway)
                item["metadata"]["labels"] = {GATEWAY_LABEL: str(g)}  # to delete them together
                items.append(item)
        started = time.time()
        self.create(items)
        names = {r["metadata"]["name"] for r in items}
        until(
            f"{len(items)} routes Ready",
            lambda: self.ready(names, "scale"),
            timeout=900,
            interval=1.0,
        )
        self.row(
            f"{len(items)} more routes over {len(self.gateways)} gateways: create to all Ready",
            "-",
            f"{time.time() - started:.1f} s",
        )
        self.settle()

    def shared_change(self) -> None:
        """One route raises the setting half of gateway 1's routes share: their status shows
        the new timeout; the other half's status must not be written."""
        shared = {f"g1-{i:03d}" for i in range(self.size.per_gateway // 2)}
        on_gateway = {f"g1-{i:03d}" for i in range(self.size.per_gateway)}
        before = {
            r["metadata"]["name"]: comparable(r)
            for r in self.routes("scale")
            if r["metadata"]["name"] in on_gateway
        }
        started = time.time()
        self.patch_route("scale", "g1-000", {"idleInterval": "60s"})  # timeout 45 s -> 90 s

        def shows_new_timeout() -> bool:
            found = {r["metadata"]["name"]: r for r in self.routes("scale")}
            return route_ready(found["g1-000"]) and all(
                timeout_of(found[name], SHARED) == 90 for name in shared
            )

        until("the shared setting's new timeout in every status", shows_new_timeout, 300, 0.5)
        self.settle()
        after = {
            r["metadata"]["name"]: comparable(r)
            for r in self.routes("scale")
            if r["metadata"]["name"] in on_gateway
        }
        changed = sum(1 for name in on_gateway if before[name] != after[name])
        writes = [
            r
            for r in self.audit.writes(started)
            if (r.resource, r.subresource) == ("sseroutes", "status")
        ]
        self.row(
            f"change affecting {len(shared)} of {len(on_gateway)} routes on one gateway: "
            "status writes",
            f"== routes whose status changed ({changed})",
            str(len(writes)),
            len(writes) == changed,
        )

    def pods(self) -> None:
        times = []
        for namespace, count in zip(("pods-small", "pods-large"), self.size.pods, strict=True):
            started = time.time()
            self.create(
                [
                    route_manifest(
                        "web",
                        namespace,
                        (OTHER,),
                        "20s",
                        self.gateways[0],
                        backend={"selector": {"matchLabels": {"app": "web"}}},
                    )
                ]
            )

            def annotated(ns: str = namespace, n: int = count) -> bool:
                route = self.cluster.call("GET", f"{ROUTES}/namespaces/{ns}/sseroutes/web")
                return (route.get("status") or {}).get("backends") == {
                    "selected": n,
                    "annotated": n,
                }

            with self.spy(f"pods-{count}"):
                until(f"{count} pods annotated", annotated, timeout=1800, interval=0.5)
            times.append(time.time() - started)
            self.settle()
            patches = self.pod_patches(namespace, started)
            self.row(
                f"{count} selected pods: PATCHes", f"== {count}", str(patches), patches == count
            )
            self.row(
                f"{count} selected pods: route apply to all annotated",
                "-",
                f"{times[-1]:.1f} s ({(times[-1] - DEBOUNCE) / count * 1000:.1f} ms/pod)",
            )
        (small, large), (t_small, t_large) = self.size.pods, times
        exponent = math.log((t_large - DEBOUNCE) / (t_small - DEBOUNCE)) / math.log(large / small)
        self.row(
            f"time from {small} to {large} pods",
            "linear (exponent <= 1.1)",
            f"x{(t_large - DEBOUNCE) / (t_small - DEBOUNCE):.1f} for x{large // small} pods"
            f" (exponent {exponent:.2f})",
            exponent <= 1.1,
        )

        # A second pass over the same pods: a route change that alters nothing they carry.
        started = time.time()
        self.patch_route("pods-large", "web", {"backend": {"path": "/stream"}})

        def passed() -> bool:
            route = self.cluster.call("GET", f"{ROUTES}/namespaces/pods-large/sseroutes/web")
            generation = route["metadata"]["generation"]
            conditions = (route.get("status") or {}).get("conditions") or []
            return any(
                c["type"] == "BackendsAnnotated" and c["observedGeneration"] == generation
                for c in conditions
            )

        until("the second pass over the pods", passed, timeout=600, interval=0.5)
        self.settle()
        second = self.pod_patches("pods-large", started)
        self.row(f"{large} selected pods, second pass: PATCHes", "== 0", str(second), second == 0)

    def pod_patches(self, namespace: str, since: float) -> int:
        return sum(
            1 for r in self.audit.writes(since) if r.resource == "pods" and r.namespace == namespace
        )

    def footprint(self) -> None:
        total = sum(1 for r in self.routes())
        self.settle()
        memory = process_memory(self.pid)
        label = " (tracemalloc on: inflated)" if self.profile else ""
        limit = self.size.rss
        self.row(
            f"RSS with {total} routes and {self.size.all_pods} pods",
            f"<= {limit:g} MiB" if limit else "- (full size only)",
            f"{memory['VmRSS']:.0f} MiB (peak {memory['VmHWM']:.0f} MiB){label}",
            memory["VmRSS"] <= limit if limit and not self.profile else None,
        )
        window = self.size.idle
        cpu, started = process_cpu(self.pid), time.time()
        with self.spy("idle"):
            # A measurement window, not a synchronisation: the operator is left alone for it.
            time.sleep(window)
        ended = time.time()
        per_minute = (process_cpu(self.pid) - cpu) * 60 / window
        kube = self.audit.operator(started, ended)
        arm = self.arm(started, ended)
        kinds: dict[str, int] = {}
        for what in [f"{r.verb} {r.resource}" for r in kube] + [f"ARM {r['method']}" for r in arm]:
            kinds[what] = kinds.get(what, 0) + 1
        renewals = len(self.audit.operator(started, ended, lease=True))
        self.row(
            f"CPU over an idle minute at that size (measured over {window:g} s)",
            "< 1 s",
            f"{per_minute:.2f} s ({len(kube) + len(arm)} requests"
            + (": " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) if kinds else "")
            + f"; besides {renewals} Lease renewals)",
            per_minute < 1,
        )
        self.dump_allocations("loaded")  # after the idle window: a dump costs seconds of CPU

    def restart_and_resync(self) -> None:
        assert self.operator is not None
        self.operator.stop()
        started = time.time()
        self.start_operator("--resync", f"{self.size.resync:g}s")
        until(
            "the startup pass over every gateway",
            lambda: (
                {r["path"].lower() for r in self.arm(started) if r["method"] == "GET"}
                >= {g.lower() for g in self.gateways}
            ),
            timeout=600,
        )
        quiet = self.settle()
        writes = self.audit.writes(started)
        puts = sum(1 for r in self.arm(started) if r["method"] == "PUT")
        self.row(
            "operator restart at that size: ARM PUTs, Kubernetes writes",
            "0, 0",
            f"{puts}, {len(writes)}" + (f" ({describe_writes(writes)})" if writes else ""),
            puts == 0 and not writes,
        )

        def batches(times: list[float]) -> list[float]:
            """When each batch of reads began: a gap of half the period starts a new one."""
            gap = self.size.resync / 2
            return [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > gap]

        def two_resyncs() -> dict[str, list[float]] | None:
            """Each gateway's GET times after the startup pass, once each shows two batches.
            Only after `quiet`, the time of the startup pass's last request, often one of its
            GETs: a window from there took the startup pass for a resync, or it and the first
            resync for one (10 GETs for 5 gateways)."""
            times: dict[str, list[float]] = {g.lower(): [] for g in self.gateways}
            for r in self.arm(quiet):
                if arm_kind(r) == "GET" and r["time"] > quiet:
                    times.setdefault(r["path"].lower(), []).append(r["time"])
            for ts in times.values():
                ts.sort()
            return times if all(len(batches(ts)) >= 2 for ts in times.values()) else None

        reads = until("two resyncs", two_resyncs, timeout=self.size.resync * 4)
        # Per gateway, its GETs from its first resync read up to its next: exactly one resync
        # of it whatever the others' timing, and a second read of it in that resync counts.
        bounds = {path: batches(ts)[:2] for path, ts in reads.items()}
        per_gateway = {
            path: sum(1 for t in ts if bounds[path][0] <= t < bounds[path][1])
            for path, ts in reads.items()
        }
        gets = sum(per_gateway.values())
        # PUTs and writes over one resync period: from its marks (every gateway at once, a
        # debounce before the reads) to the next resync's.
        since = min(first for first, _ in bounds.values()) - DEBOUNCE - 0.5
        to = min(second for _, second in bounds.values()) - DEBOUNCE - 0.5
        puts = sum(1 for r in self.arm(since, to) if r["method"] == "PUT")
        writes = self.audit.writes(since, to)
        n = len(self.gateways)
        uneven = {path.rsplit("/", 1)[-1]: k for path, k in per_gateway.items() if k != 1}
        self.row(
            f"one resync, {len(self.routes())} routes over {n} gateways",
            f"GETs {n} (1 per gateway), PUTs 0, Kubernetes writes 0",
            f"GETs {gets}"
            + (
                " (" + ", ".join(f"{k} of {name}" for name, k in sorted(uneven.items())) + ")"
                if uneven
                else ""
            )
            + f", PUTs {puts}, Kubernetes writes {len(writes)}"
            + (f" ({describe_writes(writes)})" if writes else ""),
            gets == n and not uneven and puts == 0 and not writes,
        )

    def delete_together(self) -> None:
        """One gateway's routes deleted in one request (a deletecollection, as a namespace or
        an app is torn down): one update restores the gateway and releases them all."""
        names = {f"g1-{i:03d}" for i in range(self.size.per_gateway)}
        started = time.time()
        self.cluster.call(
            "DELETE", f"{ROUTES}/namespaces/scale/sseroutes?labelSelector={GATEWAY_LABEL}%3D1"
        )
        marked = time.time() - started  # the server marks them one by one
        until(
            f"{len(names)} deleted routes released",
            lambda: not names & {r["metadata"]["name"] for r in self.routes("scale")},
            timeout=900,
            interval=1.0,
        )
        elapsed = time.time() - started
        self.settle()
        puts = sum(1 for r in self.arm(started) if r["method"] == "PUT")
        self.row(
            f"{len(names)} routes of one gateway deleted at once: PUTs",
            "== 1",
            f"{puts} (marked deleting over {marked:.1f} s, all released in {elapsed:.1f} s)",
            puts == 1,
        )

    def seed_pods(self) -> None:
        small, large = self.size.pods
        counts = {
            "pods-small": small,
            "pods-large": large,
            "pods-other": self.size.all_pods - small - large,
        }
        for namespace, count in counts.items():
            labels = {"app": "web" if namespace != "pods-other" else "other"}
            for chunk in range(0, count, 2000):
                self.create(
                    [
                        pod(f"p{i:05d}", namespace, labels)
                        for i in range(chunk, min(count, chunk + 2000))
                    ]
                )


def pod(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "web"}]},
    }


def timeout_of(route: dict[str, Any], setting: str) -> int | None:
    gateway = (route.get("status") or {}).get("gateway") or {}
    found = [
        s["requestTimeout"] for s in gateway.get("backendSettings") or () if s["name"] == setting
    ]
    return found[0] if found else None


def comparable(route: dict[str, Any]) -> dict[str, Any]:
    """A route's status without lastTransitionTime: what changed, not when it was rewritten."""
    status = dict(route.get("status") or {})
    status["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
    ]
    return status


def seeds(count: int) -> list[dict[str, Any]]:
    example = (EXAMPLES / "gateway.json").read_text()
    return [json.loads(example)] + [
        json.loads(example.replace("agw-shop-prod", f"agw-scale-{i}")) for i in range(1, count)
    ]


def render(rows: list[Row], size: Size, server: str, elapsed: float) -> str:
    lines = [
        f"scale: {'smoke' if size == SMOKE else 'full'} size, {server} with "
        f"audit log, ARM emulator (LRO {LRO_SECONDS:g} s), operator --debounce {DEBOUNCE:g}s "
        f"--no-probe; {os.cpu_count()} cores; {elapsed:.0f} s",
        "",
        "| figure | target | measured |",
        "| --- | --- | --- |",
    ]
    for row in rows:
        mark = "" if row.met is None else " (met)" if row.met else " **(missed)**"
        lines.append(f"| {row.figure} | {row.target} | {row.measured}{mark} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a small size, for CI")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="write tracemalloc and py-spy profiles of the operator to DIR",
    )
    args = parser.parse_args()
    server = clusters.real_server()
    if server is None:
        print("scale.py needs the real API server (../shared/k8s, etcd, xz)", file=sys.stderr)
        return 1
    size = SMOKE if args.smoke else FULL
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    began = time.time()
    with tempfile.TemporaryDirectory(prefix="appgw-sse-scale-") as tmp:
        workdir = Path(tmp)
        (workdir / "seeds.json").write_text(json.dumps(seeds(size.gateways)))
        emulator = Emulator(workdir, [workdir / "seeds.json"], lro_seconds=LRO_SECONDS)
        try:
            with clusters.running(workdir) as cluster:
                bench = Bench(size, workdir, cluster, emulator, args.profile)
                bench.gateways = [gateway_id("agw-shop-prod")] + [
                    gateway_id(f"agw-scale-{i}") for i in range(1, size.gateways)
                ]
                for namespace in ("scale", "pods-small", "pods-large", "pods-other"):
                    bench.kubectl("create", "namespace", namespace)
                bench.seed_pods()
                try:
                    bench.row(
                        "RSS of the operator's imports alone (kopf, kubernetes, azure SDK...)",
                        "-",
                        f"{imports_rss():.0f} MiB",
                    )
                    bench.start_operator("--resync", "1h")
                    bench.settle()
                    bench.dump_allocations("start")
                    memory = process_memory(bench.pid)
                    bench.row(
                        f"RSS at start, {size.all_pods} pods, no routes",
                        "-",
                        f"{memory['VmRSS']:.0f} MiB",
                    )
                    bench.burst()
                    bench.single_changes()
                    bench.fill()
                    bench.shared_change()
                    bench.pods()
                    bench.footprint()
                    bench.restart_and_resync()
                    bench.delete_together()
                except BaseException:
                    if bench.operator is not None:  # what the operator said, before it is gone
                        print(bench.operator.output()[-6000:], file=sys.stderr)
                    raise
                finally:
                    if bench.operator is not None:
                        bench.operator.stop()
        finally:
            emulator.stop()
    print(render(bench.rows, size, server.describe(), time.time() - began))
    return 0 if all(row.met is not False for row in bench.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
