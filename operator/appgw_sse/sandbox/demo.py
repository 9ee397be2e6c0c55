"""`appgw-sse demo`: watch an SSE stream go live through the emulated gateway, on this machine.

It starts the ARM emulator (control and data plane) with a gateway as Azure creates it (response
buffering on, a short request timeout), a Kubernetes API (the real kube-apiserver when
../shared/k8s can run here, else the embedded stand-in), the operator, and a sample SSE backend.
The doctor listens through the gateway before and after an SseRoute is applied.

Time is compressed so the whole run takes well under a minute: the seeded requestTimeout is
3 s (Azure's default is 30 s) and the backend's longest silence is 4 s.
"""

import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import kubernetes
from aiohttp import web

from appgw_sse import EXAMPLES, doctor
from appgw_sse.core.contract import API_GROUP, API_VERSION, PLURAL
from appgw_sse.models.crd import build_crd
from appgw_sse.sandbox import apiserver

T = TypeVar("T")
SEEDED_TIMEOUT = 3  # seconds; Azure's default is 30
SILENCE = 4.0  # the backend's longest silence between events
EVENT_SPACING = 0.5
EVENTS_PER_SPELL = 8
# Big enough that one spell of events fills the gateway's response buffer (64 KiB): a
# buffering gateway then releases them as one burst, as Azure's does.
EVENT_PAD = 8 * 1024
LISTEN_SECONDS = 10.0
NAMESPACE, OPERATOR_NAMESPACE = "shop", "appgw-sse-system"
SETTING, POOL, PATH = "notifications-http", "pool-notifications", "/events/stream"


def _say(line: str) -> None:
    print(line, flush=True)


def wait_until(
    what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.1
) -> T:
    """Poll `check` until it returns something truthy; TimeoutError naming `what` at the
    deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- the sample backend -------------------------------------------------------------------


async def _events(request: web.Request) -> web.StreamResponse:
    """Spells of events every 0.5 s, each followed by a 4 s silence: an app whose longest
    silence is 4 s. Each event carries its id and send time, for the doctor's delays."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    number = 0
    while True:
        for _ in range(EVENTS_PER_SPELL):
            number += 1
            data = json.dumps({"n": number, "ts": time.time(), "pad": "x" * EVENT_PAD})
            await response.write(f"id: {number}\ndata: {data}\n\n".encode())
            await asyncio.sleep(EVENT_SPACING)
        await asyncio.sleep(SILENCE - EVENT_SPACING)


@contextlib.contextmanager
def sample_backend() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    app.router.add_get(PATH, _events)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)

    async def start() -> str:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


# -- the emulator -------------------------------------------------------------------------


def demo_gateway() -> dict[str, Any]:
    """The example production gateway as a fresh one is: buffering on, default-ish timeout."""
    document: dict[str, Any] = json.loads((EXAMPLES / "gateway.json").read_text())
    properties = document["properties"]
    properties["globalConfiguration"]["enableResponseBuffering"] = True
    for setting in properties["backendHttpSettingsCollection"]:
        if setting["name"] == SETTING:
            setting["properties"]["requestTimeout"] = SEEDED_TIMEOUT
    return document


class EmulatorProcess:
    """`appgw-sse emulator` as a process: its ready line, its admin API, its request log."""

    def __init__(
        self,
        workdir: Path,
        seeds: list[Path],
        lro_seconds: float = 1.0,
        stderr: int | IO[Any] | None = None,
    ) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appgw_sse",
                "emulator",
                "--tls-dir",
                str(workdir / "tls"),
                "--lro-seconds",
                str(lro_seconds),
                *[arg for seed in seeds for arg in ("--seed", str(seed))],
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator exited with status {self.process.wait()}")
        self.ready: dict[str, Any] = json.loads(line)
        self.url: str = self.ready["url"]
        self._ssl = ssl.create_default_context(cafile=self.ready["ca_bundle"])

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}/_emulator/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=self._ssl, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def puts(self) -> int:
        """PUTs to any gateway."""
        return sum(1 for r in self.admin("GET", "requests") if r["method"] == "PUT")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=20)


# -- Kubernetes ---------------------------------------------------------------------------


@contextlib.contextmanager
def kubernetes_api(workdir: Path) -> Iterator[tuple[Path, str, bool]]:
    """A kubeconfig (admin), what serves it, and whether it is the real API server."""
    build = apiserver.real_apiserver()
    if build is not None:
        started = subprocess.run(
            [str(build.script), str(workdir / "apiserver")],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **build.environment()},
        )
        if started.returncode != 0:
            raise RuntimeError(
                f"{build.script} exited with status {started.returncode}: "
                + " ".join(started.stderr.split()[-60:])
            )
        ready = json.loads(started.stdout.strip().splitlines()[-1])
        try:
            yield Path(ready["kubeconfig"]), f"the {build.describe()}", True
        finally:
            apiserver.stop(ready["pids"])
        return
    from appgw_sse.sandbox.kube_api import KubeApi, ResourceDef

    with KubeApi([ResourceDef.from_crd(build_crd())], workdir) as api:
        yield (
            api.kubeconfig,
            f"the embedded Kubernetes API stand-in ({apiserver.missing()})",
            False,
        )


def prepare_cluster(client: kubernetes.client.ApiClient, real: bool) -> None:
    core = kubernetes.client.CoreV1Api(client)
    if real:
        extensions = kubernetes.client.ApiextensionsV1Api(client)
        extensions.create_custom_resource_definition(
            kubernetes.client.V1CustomResourceDefinition.model_validate(build_crd())
        )

        def established() -> bool:
            crd = extensions.read_custom_resource_definition(f"{PLURAL}.{API_GROUP}")
            conditions = (crd.status.conditions if crd.status else None) or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        wait_until("the CRD to be established", established, 30)
    for name in (NAMESPACE, OPERATOR_NAMESPACE):
        core.create_namespace(
            kubernetes.client.V1Namespace.model_validate({"metadata": {"name": name}})
        )


def route_manifest(gateway_id: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "SseRoute",
        "metadata": {"name": "notifications", "namespace": NAMESPACE},
        "spec": {
            "gateway": {"id": gateway_id, "backendSettings": [SETTING]},
            "idleInterval": f"{SILENCE:.0f}s",
        },
    }


def wait_ready(
    client: kubernetes.client.ApiClient, alive: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """The route once Ready for its generation; `alive` raises when what should make it Ready
    is gone, so a dead operator is said at once rather than at the deadline."""
    custom = kubernetes.client.CustomObjectsApi(client)

    def ready() -> dict[str, Any] | None:
        alive()
        route = dict(
            custom.get_namespaced_custom_object(  # type: ignore[call-overload]
                API_GROUP, API_VERSION, NAMESPACE, PLURAL, "notifications"
            )
        )
        status = route.get("status") or {}
        conditions: list[dict[str, Any]] = status.get("conditions", [])
        condition = next((c for c in conditions if c["type"] == "Ready"), {})
        current = condition.get("observedGeneration") == route["metadata"]["generation"]
        return route if condition.get("status") == "True" and current else None

    return wait_until("the route to be Ready", ready, 45)


# -- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoResult:
    before: doctor.Report
    after: doctor.Report

    @property
    def exit_code(self) -> int:
        went_live = bool(self.before.problems) and not self.after.problems
        return 0 if went_live else 1


def listen(url: str, label: str) -> doctor.Report:
    _say(f"\n--- doctor {url} ({label}), {LISTEN_SECONDS:.0f} s ---")
    report = doctor.analyse(
        asyncio.run(doctor.observe(url, LISTEN_SECONDS, {}, lambda line: _say(f"  {line}")))
    )
    _say(f"verdict: {report.verdict}")
    return report


def outcome(report: doctor.Report) -> str:
    """A few words for what the client got: "buffered, then cut", "live"."""
    codes = {f.code for f in report.problems}
    words = [code for code in ("buffered", "cut") if code in codes]
    return ", then ".join(words) if words else "broken" if codes else "live"


def timeline(before: doctor.Report, after: doctor.Report, step: float = 0.5) -> str:
    """Side by side: what reached the client in each half second, before and after."""

    def row(report: doctor.Report, start: float) -> str:
        obs = report.obs
        arrived = sum(1 for e in obs.events if start <= e.at < start + step)
        mark = "*" * arrived
        ended = obs.ended_at is not None and start <= obs.ended_at < start + step
        return mark + (f" x {obs.end}" if ended else "")

    head = f"before: {outcome(before)}"
    lines = [f"{'t (s)':>6}  {head:<28}after: {outcome(after)}"]
    t = 0.0
    while t < LISTEN_SECONDS:
        lines.append(f"{t:6.1f}  {row(before, t):<28}{row(after, t)}")
        t += step
    lines.append("        (* one event reached the client; x the stream ended)")
    return "\n".join(lines)


@dataclass(frozen=True)
class Lane:
    """One run as the plot draws it."""

    label: str  # "before: buffered, then cut"
    bursts: list[tuple[float, int]]  # (arrival, events that arrived together)
    sent: list[float]  # when the backend sent each event (a delay of 0 included)
    silences: list[tuple[float, float]]  # the backend's silences (from, to), by the send times
    cut_at: float | None  # when the connection was cut


def lanes(result: DemoResult) -> list[Lane]:
    """What the plot shows, computed apart from drawing it."""
    found = []
    for name, report in (("before", result.before), ("after", result.after)):
        events = report.obs.events
        sent = sorted(e.at - d for e, d in zip(events, report.delays, strict=True) if d is not None)
        # The backend's silences: between sends, and from the last send to the stream's end.
        ends = [*sent, report.obs.stopped_at] if sent else []
        silences = [(a, b) for a, b in itertools.pairwise(ends) if b - a >= SILENCE / 2]
        found.append(
            Lane(
                label=f"{name}: {outcome(report)}",
                bursts=[(b.at, b.size) for b in report.bursts],
                sent=sent,
                silences=silences,
                cut_at=report.obs.ended_at if report.obs.end == "cut" else None,
            )
        )
    return found


def plot(result: DemoResult, path: Path) -> Any:
    """Draw the two runs into `path`; the matplotlib Figure drawn."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(9, 3.6))
    drawn = lanes(result)
    labelled: set[str] = set()

    def once(label: str) -> str:
        """A legend entry the first time only."""
        first = label not in labelled
        labelled.add(label)
        return label if first else ""

    for row, lane in enumerate(drawn):
        y = 2.0 * row
        for start, end in lane.silences:
            axis.broken_barh([(start, end - start)], (y - 0.6, 1.6), color="0.92", zorder=0)
            axis.text(
                (start + end) / 2,
                y + 0.4,
                f"backend silent {end - start:.1f} s",
                ha="center",
                fontsize="x-small",
                color="0.4",
            )
        # A burst is drawn as its events stacked at the moment they arrived together.
        xs = [at for at, size in lane.bursts for _ in range(size)]
        ys = [y + 0.09 * k for _, size in lane.bursts for k in range(size)]
        axis.scatter(xs, ys, marker="s", s=12, color="tab:blue", label=once("reached the client"))
        for at, size in lane.bursts:
            if size > 1:
                axis.annotate(f"{size} at once", (at + 0.1, y + 0.09 * size), fontsize="x-small")
        axis.scatter(
            lane.sent,
            [y - 0.35] * len(lane.sent),
            marker=".",
            s=20,
            color="tab:green",
            label=once("sent by the backend"),
        )
        if lane.cut_at is not None:
            axis.vlines(lane.cut_at, y - 0.6, y + 1.0, color="red", label=once("connection cut"))
    axis.set_yticks([2.0 * row for row in range(len(drawn))], [lane.label for lane in drawn])
    axis.set_ylim(-1, 4.2)
    axis.set_xlim(0, LISTEN_SECONDS)
    axis.set_xlabel("seconds since the request")
    axis.set_title("SSE through the emulated Application Gateway")
    axis.legend(fontsize="small", loc="upper center", ncols=3)
    figure.tight_layout()
    figure.savefig(path)
    return figure


@dataclass
class Component:
    """Something the demo started, and where it tells what it does."""

    name: str
    log: Path | None = None
    process: "subprocess.Popen[Any] | None" = None

    def exited(self) -> int | None:
        return self.process.poll() if self.process is not None else None


@dataclass
class Sandbox:
    """The components started so far; `failed`, the one a failure is blamed on."""

    workdir: Path
    components: list[Component] = field(default_factory=list)
    failed: Component | None = None

    def start(self, component: Component) -> Component:
        self.components.append(component)
        return component

    def blame(self) -> None:
        """The first component that exited, else the last one started (waited on)."""
        exited = [c for c in self.components if c.exited() is not None]
        self.failed = exited[0] if exited else self.components[-1] if self.components else None

    def alive(self, component: Component) -> Callable[[], None]:
        def check() -> None:
            if (status := component.exited()) is not None:
                raise RuntimeError(f"the {component.name} exited with status {status}")

        return check


def tail(path: Path, lines: int = 15) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def run(plot_path: Path | None = None) -> int:
    if plot_path is not None and importlib.util.find_spec("matplotlib") is None:
        print(
            "appgw-sse demo: error: --plot needs matplotlib: pip install 'appgw-sse-operator[plot]'",
            file=sys.stderr,
        )
        return 1
    _say(__doc__.strip().split("\n\n")[2] if __doc__ else "")
    sandbox = Sandbox(Path(tempfile.mkdtemp(prefix="appgw-sse-demo-")))
    try:
        result = _run(sandbox)
    except Exception as exc:  # the cause and the log that tells why, not a traceback
        _say(f"\ndemo failed: {exc}" if str(exc) else f"\ndemo failed: {type(exc).__name__}")
        failed = sandbox.failed
        if failed is not None and failed.log is not None:
            _say(f"last lines of the {failed.name}'s log ({failed.log}):")
            for line in tail(failed.log):
                _say(f"  {line}")
        _say(f"the logs are kept in {sandbox.workdir}")
        return 1
    shutil.rmtree(sandbox.workdir, ignore_errors=True)
    _say("\n--- timeline ---\n" + timeline(result.before, result.after))
    _say(f"\nbefore: {result.before.verdict}\nafter:  {result.after.verdict}")
    if plot_path is not None:
        plot(result, plot_path)
        _say(f"plot: {plot_path}")
    return result.exit_code


def _run(sandbox: Sandbox) -> DemoResult:
    workdir = sandbox.workdir
    kube = sandbox.start(Component("Kubernetes API", workdir / "apiserver" / "apiserver.log"))
    try:
        with (
            sample_backend() as backend,
            kubernetes_api(workdir) as (kubeconfig, served_by, real),
            contextlib.ExitStack() as stack,
        ):
            if not real:
                kube.log = None  # the stand-in runs in this process
            try:
                seed = workdir / "gateway.json"
                seed.write_text(json.dumps(demo_gateway()))
                emulator_log = stack.enter_context((workdir / "emulator.log").open("w"))
                started = sandbox.start(Component("emulator", workdir / "emulator.log"))
                emulator = EmulatorProcess(workdir, [seed], stderr=emulator_log)
                started.process = emulator.process
                stack.callback(emulator.stop)
                return _show(sandbox, stack, emulator, backend, kubeconfig, served_by, real)
            except BaseException:
                sandbox.blame()  # before anything is stopped
                raise
    except BaseException:
        if sandbox.failed is None:  # the Kubernetes API did not start
            sandbox.blame()
        raise


def _show(
    sandbox: Sandbox,
    stack: contextlib.ExitStack,
    emulator: EmulatorProcess,
    backend: str,
    kubeconfig: Path,
    served_by: str,
    real: bool,
) -> DemoResult:
    frontend = emulator.admin("POST", "backends", {POOL: backend})["frontends"]
    gateway_id = demo_gateway()["id"]
    url = frontend[gateway_id.rsplit("/", 1)[-1]] + PATH
    _say(f"\nKubernetes: {served_by}")
    _say(f"gateway {gateway_id.rsplit('/', 1)[-1]}: frontend {url}, backend {backend}")
    _say(f"seeded: response buffering on, {SETTING} requestTimeout {SEEDED_TIMEOUT}s")
    client = kubernetes.config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
    prepare_cluster(client, real)
    log_path = sandbox.workdir / "operator.log"
    log = stack.enter_context(log_path.open("w"))
    operator = sandbox.start(Component("operator", log_path))
    operator.process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appgw_sse",
            "run",
            "--allowed-gateway",
            "*",
            "--debounce",
            "1s",
            "--no-probe",
            "--owner-id",
            "demo",
            # Any free port: a busy machine may have 8080 (the default) taken.
            "--health-port",
            "0",
            "--arm-endpoint",
            emulator.ready["url"],
            "--arm-ca-bundle",
            emulator.ready["ca_bundle"],
            "--arm-token-file",
            emulator.ready["token_file"],
        ],
        env=dict(os.environ, KUBECONFIG=str(kubeconfig), POD_NAMESPACE=OPERATOR_NAMESPACE),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack.callback(_stop, operator.process)
    alive = sandbox.alive(operator)

    def serving() -> bool:
        alive()
        # health.serve's line: the operator's startup got past its flags and kubeconfig.
        return "serving /healthz" in log_path.read_text(errors="replace")

    wait_until("the operator to start", serving, 30)
    before = listen(url, "before any SseRoute")
    _say(f"\n--- kubectl apply: SseRoute shop/notifications, idleInterval {SILENCE:.0f}s ---")
    kubernetes.client.CustomObjectsApi(client).create_namespaced_custom_object(
        API_GROUP, API_VERSION, NAMESPACE, PLURAL, route_manifest(gateway_id)
    )
    started = time.monotonic()
    route = wait_ready(client, alive)
    ready = next(c for c in route["status"]["conditions"] if c["type"] == "Ready")
    _say(
        f"Ready after {time.monotonic() - started:.1f} s ({emulator.puts()} PUT): "
        f"{ready['message']}"
    )
    after = listen(url, "with the SseRoute applied")
    return DemoResult(before, after)


def _stop(process: "subprocess.Popen[Any]") -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
