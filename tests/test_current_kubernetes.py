"""What only a current API server enforces, on one (hack/envtest-assets builds it): the CRD's CEL
rules and their cost budget, applied as users apply it, and Pod Security admission of the chart's
pod. Each test is skipped, naming the version it needs, on an older server."""

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from appgw_sse import EXAMPLES
from tests.support import chart
from tests.support import cluster as clusters
from tests.support.cluster import REPO, Cluster
from tests.support.route_cases import VALID_SPECS, invalid_cases, manifest_of

ROUTES = "/apis/sse.appgw.dev/v1alpha1/namespaces/shop/sseroutes"
# Validation rules are GA (and on by default) since 1.29; admission's Pod Security since 1.25.
CEL_MINOR = 29


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    clusters.require_minor(CEL_MINOR, "the CRD's CEL rules")
    with clusters.running(tmp_path_factory.mktemp("current")) as started:
        yield started


def dry_run_create(cluster: Cluster, manifest: dict[str, Any]) -> None:
    """Create in `shop` as `kubectl apply` would (strict field validation), stored nowhere."""
    manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": "shop"}}
    cluster.call("POST", f"{ROUTES}?dryRun=All&fieldValidation=Strict", manifest)


def test_the_crd_installs_with_its_cel_rules_as_users_install_it(cluster: Cluster) -> None:
    # The rig applied crds/ as a user does; again here from the folder the README names, and by
    # server-side apply as Helm 4 and Flux do. Over the cost budget, the server refuses it.
    for apply in (("apply",), ("apply", "--server-side", "--field-manager=flux-like")):
        result = cluster.kubectl(*apply, "-f", str(REPO / "crds"))
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr, result.stderr
    stored = json.loads(
        cluster.kubectl("get", "crd", "sseroutes.sse.appgw.dev", "-o", "json").stdout
    )
    version = stored["spec"]["versions"][0]
    rules = re.findall(r'"rule": "([^"]+)"', json.dumps(version["schema"]))
    assert len(rules) >= 3, "the server dropped the CRD's CEL rules"


@pytest.mark.parametrize(("spec", "field"), invalid_cases())
def test_every_invalid_route_is_refused_by_the_server_naming_the_field(
    cluster: Cluster, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as refused:
        dry_run_create(cluster, manifest_of(spec))
    assert refused.value.status in (400, 422), refused.value.body
    status = json.loads(refused.value.body)
    causes = [c.get("field", "") for c in (status.get("details") or {}).get("causes", [])]
    # Named as a cause (a list's element as field[i]), or, for an unknown field, in the message.
    named = [c for c in causes if c == field or re.fullmatch(rf"{re.escape(field)}\[\d+\]", c)]
    assert named or f'"{field}"' in status["message"], (causes, status["message"])


@pytest.mark.parametrize("spec", VALID_SPECS)
def test_valid_routes_are_accepted_by_the_server(cluster: Cluster, spec: dict[str, Any]) -> None:
    dry_run_create(cluster, manifest_of(spec))


def documented_routes() -> list[dict[str, Any]]:
    """The SseRoutes shown in yaml blocks of the README and docs/."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    blocks = [b for p in pages for b in re.findall(r"```yaml\n(.*?)```", p.read_text(), re.S)]
    docs = [d for block in blocks for d in yaml.safe_load_all(block)]
    return [d for d in docs if isinstance(d, dict) and d.get("kind") == "SseRoute"]


def example_routes() -> list[dict[str, Any]]:
    shipped = [*(REPO / "deploy" / "examples").glob("*.yaml"), *EXAMPLES.glob("*.yaml")]
    return [d for path in shipped for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_shipped_and_documented_example_is_accepted(cluster: Cluster) -> None:
    routes = example_routes() + documented_routes()
    assert len(documented_routes()) >= 1 and len(routes) >= 4
    for route in routes:
        dry_run_create(cluster, route)


def test_pod_security_restricted_admits_the_charts_pod(cluster: Cluster) -> None:
    namespace = "restricted-ns"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    cluster.call(
        "POST",
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": labels},
        },
    )
    deployment = next(d for d in chart.render(namespace=namespace) if d["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator", "labels": template["metadata"]["labels"]},
        "spec": {**template["spec"], "serviceAccountName": "default"},
    }
    path = f"/api/v1/namespaces/{namespace}/pods"
    created = cluster.call("POST", path, pod)
    assert created["metadata"]["name"] == "operator"
    # The check is live: the same pod running as root is refused by the same admission.
    pod["metadata"]["name"] = "as-root"
    pod["spec"]["securityContext"] = {"runAsNonRoot": False, "runAsUser": 0}
    with pytest.raises(ApiException) as refused:
        cluster.call("POST", path, pod)
    assert refused.value.status == 403 and "restricted" in refused.value.body


def test_kubectl_explain_teaches_the_stream_check(cluster: Cluster) -> None:
    result = cluster.kubectl("explain", "sseroute.spec.streamCheck")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "StreamVerified (not part of Ready)" in text
    for field, phrase in (
        ("url", "as clients open it, through the gateway"),
        ("interval", "from 1m to 24h; default 5m"),
        ("listen", "Default: twice idleInterval, at most 10m"),
    ):
        assert field in text and phrase in text, (field, text)
