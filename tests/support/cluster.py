"""The Kubernetes API under the end-to-end suite: a real kube-apiserver when one can be started,
else the KMock-based stand-in (appgw_sse.sandbox.kube_api), which is what a fresh machine
with only Python has.

The real server is started by `../shared/k8s/start-apiserver` (or the script
`APPGW_SSE_START_APISERVER` names): the current release `hack/envtest-assets` built, the one
`KUBEBUILDER_ASSETS` names, or the v1.20.2 floor (appgw_sse.sandbox.apiserver says which). It runs
with an audit log, so the requests the operator makes are counted by identity, and the operator
gets a service-account identity of its own whose RBAC is enforced. Set `APPGW_SSE_KUBE=standin`
to force the stand-in, `APPGW_SSE_KUBE=real` to fail rather than fall back.

Both are driven the same way: kubectl (with a private HOME, so its cache stays out of the
working tree) and the `kubernetes` client over HTTP. Only `requests()` differs in its source.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
import yaml

from appgw_sse.sandbox import apiserver
from appgw_sse.sandbox.apiserver import ApiServerBuild
from appgw_sse.sandbox.demo import wait_until

TEST_AGENT = "appgw-sse-tests"
REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "appgw-sse-system"
CRD_FILE = REPO / "crds" / "sseroutes.sse.appgw.dev.yaml"


@dataclass(frozen=True)
class ApiRequest:
    """One request as the API server answered it."""

    user: str
    verb: str  # get, list, watch, create, update, patch, delete
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    time: float = 0.0  # when the answer was complete, epoch seconds (audit log only)


def audit_request(line: str | bytes) -> ApiRequest | None:
    """One line of the API server's audit log as the request it answered; None for the stages
    logged before the answer."""
    event = json.loads(line)
    if event.get("stage") != "ResponseComplete":
        return None
    ref = event.get("objectRef") or {}
    return ApiRequest(
        user=event["user"]["username"],
        verb=event["verb"],
        resource=ref.get("resource", ""),
        subresource=ref.get("subresource", ""),
        namespace=ref.get("namespace", ""),
        name=ref.get("name", ""),
        code=int((event.get("responseStatus") or {}).get("code", 0)),
        time=datetime.fromisoformat(event["stageTimestamp"]).timestamp(),
    )


@cache
def real_server() -> ApiServerBuild | None:
    """The real API server this machine runs for the suite, None for the stand-in."""
    build = apiserver.real_apiserver()
    if build is None and os.environ.get("APPGW_SSE_KUBE") == "real":
        raise RuntimeError(f"APPGW_SSE_KUBE=real but no real API server: {apiserver.missing()}")
    return build


def describe() -> str:
    build = real_server()
    if build is None:
        return f"stand-in (KMock realism layer; no real API server: {apiserver.missing()})"
    return build.describe()


def needs_real(what: str) -> str:
    """The reason a check that only a real API server can run is skipped; the end of the run
    lists every check skipped for it (not_run_on_standin)."""
    return f"{what} needs a real API server ({apiserver.missing()})"


NEEDS_REAL = re.compile(r"(?:Skipped: )?(.+) needs a real API server \((.*)\)")


def require_real(what: str) -> ApiServerBuild:
    """The real server, or a skip naming `what` needs it."""
    build = real_server()
    if build is None:
        pytest.skip(needs_real(what))
    return build


def require_minor(minor: int, what: str) -> ApiServerBuild:
    """The real server, or a skip naming what needs Kubernetes 1.`minor` or newer."""
    build = require_real(what)
    if build.minor < minor:
        pytest.skip(f"{what} needs Kubernetes 1.{minor} or newer; this run has {build.version}")
    return build


def not_run_on_standin(skip_reasons: list[str], ran_on_the_api: bool) -> str | None:
    """One line for the end of a run on the stand-in: the checks skipped because only a real API
    server can run them, and, when tests ran on the stand-in, that it accepted any identity (it
    authenticates nobody, so the operator's RBAC was not in force). None on a real server, or
    when nothing of either happened."""
    checks = [m.group(1) for m in map(NEEDS_REAL.fullmatch, skip_reasons) if m is not None]
    if real_server() is not None or not (checks or ran_on_the_api):
        return None
    parts = [f"no real API server ({apiserver.missing()})"]
    if checks:
        named = list(dict.fromkeys(checks))  # in order, once each
        parts.append(f"not run: {', '.join(named)} ({len(checks)} tests)")
    if ran_on_the_api:
        parts.append(
            "the tests that ran on the stand-in accepted any identity (it authenticates nobody: "
            "the operator ran without its RBAC)"
        )
    return "; ".join(parts)


class Cluster:
    """A running API server: `kubeconfig` (admin), `operator_kubeconfig` (the operator's own
    identity), `replica_kubeconfig` (a second operator replica's, with the same permissions,
    so the audit tells the replicas apart), kubectl, and a client."""

    real: bool
    kubeconfig: Path
    operator_kubeconfig: Path
    replica_kubeconfig: Path

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.home = workdir / "home"  # kubectl's cache and config go here, not into the tree
        self.home.mkdir(exist_ok=True)
        self._client: kubernetes.client.ApiClient | None = None

    def kubectl(
        self, *args: str, stdin: str | None = None, as_operator: bool = False
    ) -> subprocess.CompletedProcess[str]:
        config = self.operator_kubeconfig if as_operator else self.kubeconfig
        return subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, KUBECONFIG=str(config), HOME=str(self.home)),
        )

    @property
    def client(self) -> kubernetes.client.ApiClient:
        if self._client is None:
            self._client = kubernetes.config.new_client_from_config(str(self.kubeconfig))
            self._client.user_agent = TEST_AGENT
        return self._client

    def call(self, method: str, path: str, body: Any = None, content_type: str = "") -> Any:
        """A raw JSON request as admin; ApiException on an error status."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        params = self.client.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self.client.call_api(*params)
        response.read()
        answer = self.client.response_deserialize(response, {"2XX": "object"})
        return answer.data

    def validate_flags(self) -> tuple[str, ...]:
        """kubectl apply's flags to apply our CRD's objects as users do: a server older than
        1.25 knows no CEL rules, and kubectl refuses the field it does not know."""
        return ("--validate=false",)

    def requests(self) -> list[ApiRequest]:
        raise NotImplementedError

    def operator_requests(self) -> list[ApiRequest]:
        """Requests of the operator's identity and of the second replica's."""
        return [r for r in self.requests() if r.user in (operator_user(), replica_user())]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class RealCluster(Cluster):
    real = True

    def __init__(self, workdir: Path, build: ApiServerBuild) -> None:
        super().__init__(workdir)
        self.build = build
        started = subprocess.run(
            [str(build.script), str(workdir / "apiserver"), operator_user(), replica_user()],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **os.environ,
                **build.environment(),
                "APISERVER_AUDIT": "1",
                "XDG_CACHE_HOME": _cache_home(),
            },
        )
        if started.returncode != 0:
            raise RuntimeError(f"start-apiserver failed: {started.stderr}")
        ready = json.loads(started.stdout.strip().splitlines()[-1])
        self.pids: list[int] = ready["pids"]
        self.kubeconfig = Path(ready["kubeconfig"])
        self.operator_kubeconfig = Path(ready["users"][operator_user()])
        self.replica_kubeconfig = Path(ready["users"][replica_user()])
        self.audit_log = workdir / "apiserver" / "audit.log"

    def validate_flags(self) -> tuple[str, ...]:
        return () if self.build.minor >= 25 else super().validate_flags()

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now (as etcd's periodic compaction does), through its
        HTTP gateway; the revision compacted to."""
        etcd = re.search(r"--etcd-servers\x00([^\x00]+)", self._apiserver_cmdline())
        assert etcd is not None
        revision = _etcd(etcd.group(1), "kv/range", {"key": "AA=="})["header"]["revision"]
        _etcd(etcd.group(1), "kv/compaction", {"revision": revision, "physical": True})
        return int(revision)

    def restart_apiserver(self) -> None:
        """Kill kube-apiserver and start it again with the same flags, as a crash does (a few
        seconds, well within the operator's lease): every watch ends, and the new server's
        watch cache starts from now."""
        pid = self.pids[1]
        args = self._apiserver_cmdline().rstrip("\x00").split("\x00")
        cwd = os.readlink(f"/proc/{pid}/cwd")
        os.kill(pid, signal.SIGKILL)
        wait_until("kube-apiserver to stop", lambda: not Path(f"/proc/{pid}").exists(), 30)
        with open(Path(cwd) / "apiserver.log", "ab") as log:
            process = subprocess.Popen(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        self.pids[1] = process.pid

        wait_until(
            "kube-apiserver to be ready again",
            lambda: self.kubectl("get", "--raw", "/readyz").stdout == "ok",
            60,
        )

    def _apiserver_cmdline(self) -> str:
        return Path(f"/proc/{self.pids[1]}/cmdline").read_text()

    def requests(self) -> list[ApiRequest]:
        with contextlib.suppress(FileNotFoundError), self.audit_log.open() as lines:
            return [r for r in map(audit_request, lines) if r is not None]
        return []

    def close(self) -> None:
        super().close()
        apiserver.stop(self.pids)


class StandInCluster(Cluster):
    """The stand-in has no authentication: the operator's identity is the admin's."""

    real = False

    def __init__(self, workdir: Path) -> None:
        from appgw_sse.models.crd import build_crd
        from appgw_sse.sandbox.kube_api import KubeApi, ResourceDef

        super().__init__(workdir)
        self._stack = contextlib.ExitStack()
        self.api = self._stack.enter_context(KubeApi([ResourceDef.from_crd(build_crd())], workdir))
        self.kubeconfig = self.operator_kubeconfig = self.replica_kubeconfig = self.api.kubeconfig

    def requests(self) -> list[ApiRequest]:
        """Every request; the stand-in authenticates nobody, so the operator's are told apart from
        kubectl's and the tests' own by their User-Agent."""
        return self.api.call(lambda: [_standin_request(r) for r in self.api.store.requests])

    def close(self) -> None:
        super().close()
        self._stack.close()


def _standin_request(raw: dict[str, Any]) -> ApiRequest:
    parts = raw["path"].strip("/").split("/")
    parts = parts[2:] if parts[0] == "api" else parts[3:]
    namespace = parts[1] if len(parts) > 2 and parts[0] == "namespaces" else ""
    rest = parts[2:] if namespace else parts
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        raw["method"], "watch" if raw["query"].get("watch") else "get" if len(rest) > 1 else "list"
    )
    agent = raw.get("userAgent", "")
    ours = agent.startswith(("kubectl", TEST_AGENT))
    return ApiRequest(
        user="admin" if ours else operator_user(),
        verb=verb,
        resource=rest[0] if rest else "",
        subresource=rest[2] if len(rest) > 2 else "",
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else "",
        code=raw.get("status", 0),
    )


def _etcd(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/v3/{path}", data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.load(answer)
    return result


def _cache_home() -> str:
    # The unpacked apiserver binary is cached across runs; a CI HOME may not be writable.
    return os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")


def start(workdir: Path) -> Cluster:
    build = real_server()
    cluster: Cluster = RealCluster(workdir, build) if build else StandInCluster(workdir)
    try:
        _prepare(cluster)
    except BaseException:
        cluster.close()
        raise
    return cluster


def _prepare(cluster: Cluster) -> None:
    """What an installed operator finds: its CRD, namespaces, and (real server) its RBAC."""
    namespaces = ("shop", "partners", OPERATOR_NAMESPACE)
    if isinstance(cluster, RealCluster):
        _must(cluster.kubectl("apply", *cluster.validate_flags(), "-f", str(CRD_FILE)))
        _must(
            cluster.kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                "crd/sseroutes.sse.appgw.dev",
            )
        )
        for namespace in namespaces:
            _must(cluster.kubectl("create", "namespace", namespace))
        _must(cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(chart_rbac())))
        _must(cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(replica_bindings())))
    else:
        for namespace in ("default", "kube-system", *namespaces):
            cluster.call("POST", "/api/v1/namespaces", _namespace(namespace))


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _must(result: subprocess.CompletedProcess[str]) -> str:
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, result.args))}: {result.stderr}")
    return result.stdout


RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@cache
def chart_rbac() -> list[dict[str, Any]]:
    """The operator's identity and permissions exactly as the Helm chart renders them (real Helm)
    for its default release in the operator's namespace."""
    from tests.support import chart

    return [d for d in chart.render(namespace=OPERATOR_NAMESPACE) if d["kind"] in RBAC_KINDS]


def replica_bindings() -> list[dict[str, Any]]:
    """The chart's role bindings again, for the second replica's service account."""
    namespace, name = replica_user().split(":")[2:]
    return [
        {
            **d,
            "metadata": {**d["metadata"], "name": f"{d['metadata']['name']}-replica"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }
        for d in chart_rbac()
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding")
    ]


def replica_user() -> str:
    """A second replica's identity: in a cluster both replicas share one service account; here
    they get one each so that the audit log tells them apart."""
    return f"{operator_user()}-replica"


def operator_user() -> str:
    """The service account the chart runs the operator as, as an API-server user name."""
    account = next(d for d in chart_rbac() if d["kind"] == "ServiceAccount")["metadata"]
    return f"system:serviceaccount:{account.get('namespace', OPERATOR_NAMESPACE)}:{account['name']}"


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[Cluster]:
    cluster = start(workdir)
    try:
        yield cluster
    finally:
        cluster.close()
