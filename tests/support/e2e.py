"""End-to-end rig: `appgw-sse emulator` and `appgw-sse run` as real processes, a Kubernetes API
server (real when available, see tests/support/cluster.py), and kubectl, all on loopback."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from appgw_sse import EXAMPLES
from appgw_sse.models.crd import build_crd
from appgw_sse.sandbox.demo import EmulatorProcess, wait_until
from tests.support import cluster as clusters
from tests.support.cluster import OPERATOR_NAMESPACE, ApiRequest, Cluster

T = TypeVar("T")
GATEWAY_ID = json.loads((EXAMPLES / "gateway.json").read_text())["id"]
ROUTES = "/apis/sse.appgw.dev/v1alpha1/namespaces/{namespace}/sseroutes"


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    try:
        return wait_until(what, check, timeout, interval=0.05)
    except TimeoutError as exc:
        pytest.fail(str(exc))


class Emulator(EmulatorProcess):
    """The emulator, with the views the tests read it through."""

    def gateway(self, gateway_id: str = GATEWAY_ID) -> dict[str, Any]:
        return next(
            g for g in self.admin("GET", "gateways") if g["id"].lower() == gateway_id.lower()
        )

    def requests(self, method: str, gateway_id: str = GATEWAY_ID) -> list[dict[str, Any]]:
        return [
            r
            for r in self.admin("GET", "requests")
            if r["method"] == method and r["path"].lower() == gateway_id.lower()
        ]

    def third_party_put(
        self, change: Callable[[dict[str, Any]], None], gateway_id: str = GATEWAY_ID
    ) -> None:
        """Another writer changes the gateway (through the admin API, as a finished update)."""
        document = self.gateway(gateway_id)
        change(document)
        self.admin("POST", "gateways", document)


def run_args(emulator: Emulator) -> list[str]:
    """`appgw-sse run` as the rig runs it, against the emulator (a process or the image)."""
    return [
        "run",
        "--debounce",
        "1s",
        "--allowed-gateway",
        "/subscriptions/*/resourceGroups/rg-shop-*/providers/*",
        "--arm-endpoint",
        emulator.url,
        "--arm-ca-bundle",
        emulator.ready["ca_bundle"],
        "--arm-token-file",
        emulator.ready["token_file"],
        "--health-port",
        "0",
    ]


# One pod name: a restarted operator is the same pod's new container, which takes its own Lease
# back at once.
POD_ENV = {"POD_NAMESPACE": OPERATOR_NAMESPACE, "POD_NAME": "appgw-sse-operator-0"}


class Operator:
    def __init__(
        self,
        workdir: Path,
        cluster: Cluster,
        emulator: Emulator,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = workdir / f"operator-{time.monotonic_ns()}.log"
        self.args = [sys.executable, "-m", "appgw_sse", *run_args(emulator), *extra]
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.operator_kubeconfig),
            **POD_ENV,
            "HOME": str(cluster.home),
            **(env or {}),
        }
        self.start()

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text()

    def health_port(self) -> int:
        """The port of /healthz and /metrics (the rig asks for any free one), once serving."""
        found = wait_for("the operator serving /healthz", lambda: HEALTH_PORT.search(self.output()))
        return int(found.group(1))

    def http_get(self, path: str) -> tuple[int, str]:
        """GET /healthz or /metrics: the status and the body."""
        url = f"http://127.0.0.1:{self.health_port()}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


HEALTH_PORT = re.compile(r"serving /healthz and /metrics on port (\d+)")

# What an operator must never log: each is a defect the real API server has shown.
FORBIDDEN_LOG = re.compile(
    r"reconciliation failed unexpectedly|was never awaited|Forbidden|\b403\b|\b422\b"
)


class Rig:
    def __init__(self, workdir: Path, cluster: Cluster, emulator: Emulator) -> None:
        self.workdir, self.cluster, self.emulator = workdir, cluster, emulator
        self.operators: list[Operator] = []
        self.outages: list[tuple[float, float]] = []  # the API server down: (from, to), epoch

    def operator(self, *extra: str, env: dict[str, str] | None = None) -> Operator:
        operator = Operator(self.workdir, self.cluster, self.emulator, *extra, env=env)
        self.operators.append(operator)
        return operator

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = self.cluster.kubectl(*args, stdin=stdin)
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def apply(self, *manifests: dict[str, Any]) -> None:
        self.kubectl(
            "apply", *self.cluster.validate_flags(), "-f", "-", stdin=yaml.safe_dump_all(manifests)
        )

    def create(self, *objects: dict[str, Any]) -> None:
        """Create objects as users do (kubectl create); a pod's status is then set through its
        status subresource, as a kubelet would (none runs: pods stay Pending until then)."""
        manifests = [{k: v for k, v in obj.items() if k != "status"} for obj in objects]
        # The stand-in serves no OpenAPI for kubectl's client-side validation.
        validate = [] if self.cluster.real else ["--validate=false"]
        self.kubectl("create", *validate, "-f", "-", stdin=yaml.safe_dump_all(manifests))
        for obj in objects:
            if obj["kind"] == "Pod" and "status" in obj:
                meta = obj["metadata"]
                self.cluster.call(
                    "PATCH",
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                    {"status": obj["status"]},
                    content_type="application/merge-patch+json",
                )

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.cluster.call("GET", path)  # type: ignore[no-any-return]
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def route(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"{ROUTES.format(namespace=namespace)}/{name}")

    def condition(self, namespace: str, name: str, type_: str = "Ready") -> dict[str, Any]:
        route = self.route(namespace, name) or {}
        conditions = (route.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def wait_condition(
        self,
        namespace: str,
        name: str,
        status: str,
        reason: str | None = None,
        type_: str = "Ready",
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            route = self.route(namespace, name) or {}
            conditions = (route.get("status") or {}).get("conditions") or []
            found = next((c for c in conditions if c["type"] == type_), {})
            current = (route.get("metadata") or {}).get("generation")
            if (
                found.get("status") == status
                and (reason is None or found.get("reason") == reason)
                and found.get("observedGeneration") == current
            ):
                return found
            return None

        return wait_for(f"{namespace}/{name} {type_}={status} {reason or ''}", check, timeout)

    def ledger(self, gateway: str = GATEWAY_ID) -> dict[str, Any]:
        from appgw_sse.adapters.kube import ledger_name

        found = self.get(
            f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/configmaps/{ledger_name(gateway)}"
        )
        assert found is not None, f"no ledger for {gateway}"
        return found

    def admin_puts(self) -> int:
        """PUTs to any gateway."""
        return self.emulator.puts()

    def events(self, namespace: str, reason: str | None = None) -> list[dict[str, Any]]:
        listing = self.get(f"/api/v1/namespaces/{namespace}/events") or {}
        return [e for e in listing.get("items", []) if reason is None or e.get("reason") == reason]

    def install_crd_without_cel_rules(self) -> None:
        """The CRD as it was before it had CEL rules (as clusters that kept an old one have):
        a spec only a rule refuses then reaches the operator, which re-validates. Where nothing
        enforces the rules (the stand-in, a server before 1.25) the CRD stays as it is."""
        if self.cluster.validate_flags():
            return

        def without_rules(node: Any) -> Any:
            if isinstance(node, dict):
                return {
                    k: without_rules(v) for k, v in node.items() if k != "x-kubernetes-validations"
                }
            if isinstance(node, list):
                return [without_rules(v) for v in node]
            return node

        self.kubectl("apply", "-f", "-", stdin=json.dumps(without_rules(build_crd())))

    def restart_apiserver(self) -> None:
        """The API server crashes and comes back. What the operator was told meanwhile
        (connections refused, 403s before the new server's RBAC cache is warm) is no
        misbehaviour: check_operator_behaved forgives that window."""
        assert isinstance(self.cluster, clusters.RealCluster)
        began = time.time()
        self.cluster.restart_apiserver()
        self.outages.append((began, time.time() + 1.0))

    def _in_outage(self, when: float) -> bool:
        return any(began <= when <= ended for began, ended in self.outages)

    def check_operator_behaved(self) -> None:
        """The operator's logs and its answers from the API: no failure, no 4xx but 429, which
        is the server asking for a retry (a current server's answer while the watch cache of a
        CRD just created is still filling, or API Priority and Fairness shedding load)."""
        problems = [
            f"operator log: {line}"
            for operator in self.operators
            for line in operator.output().splitlines()
            if FORBIDDEN_LOG.search(line) and not self._in_outage(_logged_at(line))
        ]
        problems += [
            f"API answered {r.code} to the operator's {r.verb} {r.resource}/{r.subresource} "
            f"{r.namespace}/{r.name}"
            for r in self.cluster.operator_requests()
            if 400 <= r.code < 500
            and r.code != 429
            and not _finalizer_conflict(r)
            and not self._in_outage(r.time)
        ]
        if problems:
            pytest.fail("the operator misbehaved:\n" + "\n".join(problems[:20]))


def _finalizer_conflict(request: ApiRequest) -> bool:
    """A finalizer write refused because the route changed since the version it was computed
    from (e.g. by the operator's own status write racing it): a compare-and-swap by design,
    written again on the newer version the watch brings."""
    return (
        request.code == 409
        and request.verb == "patch"
        and request.resource == "sseroutes"
        and not request.subresource
    )


def _logged_at(line: str) -> float:
    """When the operator logged this line (epoch seconds); 0 for a line without a time."""
    found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
    return datetime.fromisoformat(found.group(1) + "+00:00").timestamp() if found else 0.0


def route_ready(route: dict[str, Any]) -> bool:
    """Ready=True for the route's current generation."""
    conditions = (route.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c["type"] == "Ready"), {})
    return bool(
        ready.get("status") == "True"
        and ready.get("observedGeneration") == route["metadata"].get("generation")
    )


def route_manifest(
    name: str,
    namespace: str = "shop",
    settings: tuple[str, ...] = ("notifications-http",),
    idle: str = "45s",
    gateway_id: str = GATEWAY_ID,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "sse.appgw.dev/v1alpha1",
        "kind": "SseRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gateway": {"id": gateway_id, "backendSettings": list(settings)},
            "idleInterval": idle,
            **spec,
        },
    }


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with running_rig(tmp_path) as started:
        yield started
        started.check_operator_behaved()


@contextlib.contextmanager
def running_rig(tmp_path: Path) -> Iterator[Rig]:
    seeds = tmp_path / "seeds.json"
    example = json.loads((EXAMPLES / "gateway.json").read_text())
    seeds.write_text(json.dumps([example, *extra_gateways(example)]))
    emulator = Emulator(tmp_path, [seeds], lro_seconds=1.0)
    try:
        with clusters.running(tmp_path) as cluster:
            rig = Rig(tmp_path, cluster, emulator)
            try:
                yield rig
            finally:
                for operator in rig.operators:
                    operator.stop()
                if os.environ.get("APPGW_SSE_E2E_LOGS"):
                    for operator in rig.operators:
                        print(operator.output())
    finally:
        emulator.stop()


def extra_gateways(example: dict[str, Any]) -> list[dict[str, Any]]:
    """A second v2 gateway, a v1 (Standard) gateway, an AGIC-managed one, a disallowed one."""

    def variant(name: str, group: str = "rg-shop-prod", **changes: Any) -> dict[str, Any]:
        text = json.dumps(example).replace("agw-shop-prod", name).replace("rg-shop-prod", group)
        document = json.loads(text)
        for key, value in changes.items():
            if key == "sku":
                document["properties"]["sku"] = value
                document["properties"].pop("globalConfiguration", None)
            else:
                document[key] = value
        return document

    return [
        variant("agw-shop-second"),
        variant("agw-shop-v1", sku={"name": "Standard_Medium", "tier": "Standard", "capacity": 2}),
        variant(
            "agw-shop-agic",
            tags={
                "managed-by-k8s-ingress": "1.8.1",
                "ingress-for-aks-cluster-id": "/subscriptions/x/aks",
            },
        ),
        variant("agw-finance", group="rg-finance"),
    ]


def gateway_id(name: str, group: str = "rg-shop-prod") -> str:
    return GATEWAY_ID.replace("agw-shop-prod", name).replace("rg-shop-prod", group)
