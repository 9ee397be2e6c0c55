"""The chart's ValidatingAdmissionPolicy: the operator's service account may change only its own
annotations on pods and AGIC's three on Ingresses (RBAC cannot limit a patch to annotations).
Enforced by the API server itself: tested on one that has admissionregistration.k8s.io/v1."""

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from tests.support import chart
from tests.support import cluster as clusters
from tests.support.cluster import Cluster
from tests.support.e2e import wait_for
from tests.test_chart import parse_run

AGIC = "appgw.ingress.kubernetes.io/request-timeout"


def ingress_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        rule
        for doc in docs
        if doc["kind"] in ("ClusterRole", "Role")
        for rule in doc["rules"]
        if "ingresses" in rule.get("resources", [])
    ]


def test_agic_off_drops_the_ingress_rights_and_the_ingress_watch() -> None:
    on = chart.render()
    assert ingress_rules(on) and parse_run(on).no_agic is False
    off = chart.render({"agic": {"enabled": False}, "namespaces": ["shop"]})
    assert ingress_rules(off) == []
    assert parse_run(off).no_agic is True


def test_notes_say_when_the_cluster_cannot_enforce_the_policy() -> None:
    # Rendered offline, as for a cluster without admissionregistration.k8s.io/v1 policies.
    assert chart.admission_policy(chart.render()) == []
    notes = chart.notes()
    assert "no admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy" in notes
    assert "operator's pod and Ingress patches" in notes
    assert "operator's pod patches" in chart.notes({"agic": {"enabled": False}})


@pytest.mark.parametrize(
    ("values", "rendered", "noted"),
    [
        ({"rbac": {"admissionPolicy": "always"}}, True, None),
        ({"rbac": {"admissionPolicy": "never"}}, False, "rbac.admissionPolicy is never"),
        ({"rbac": {"admissionPolicy": "always", "create": False}}, False, None),
    ],
)
def test_rbac_admission_policy_decides_where_no_cluster_does(
    values: dict[str, Any], rendered: bool, noted: str | None
) -> None:
    # `helm template` sees no cluster: `always` renders the policy anyway; without RBAC
    # there is no service account of ours to bind, so nothing renders and nothing is noted.
    kinds = [d["kind"] for d in chart.admission_policy(chart.render(values))]
    assert kinds == (["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"] * rendered)
    notes = chart.notes(values)
    assert (noted in notes) if noted else "NOTE: " not in notes


@pytest.fixture
def capable(tmp_path: Path) -> Iterator[Cluster]:
    # ValidatingAdmissionPolicy is GA (admissionregistration.k8s.io/v1) since 1.30; the chart
    # skips it below, with a NOTES line.
    clusters.require_minor(30, "the admission policy")
    with clusters.running(tmp_path) as cluster:
        yield cluster


# A release of its own beside the rig's RBAC: its service account is the operator here.
RELEASE, NAMESPACE = "vap", "vap-system"
OPERATOR = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-{chart.SERVICE_ACCOUNT}"


def operator_patch(
    cluster: Cluster, kind: str, name: str, patch: dict[str, Any], operator: str = OPERATOR
) -> str:
    """The operator's identity merge-patches an object in namespace vap (as the operator does,
    without reading it first): "" when allowed, else the API server's refusal."""
    client = kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
    client.set_default_header("Impersonate-User", operator)
    method = {
        "pod": kubernetes.client.CoreV1Api(client).patch_namespaced_pod,
        "ingress": kubernetes.client.NetworkingV1Api(client).patch_namespaced_ingress,
    }[kind]
    try:
        method(name, "vap", patch, _content_type="application/merge-patch+json")
    except ApiException as exc:
        return f"{exc.status} {exc.body}"
    finally:
        client.close()
    return ""


def create_pod_and_ingress(cluster: Cluster) -> None:
    assert cluster.kubectl("create", "namespace", "vap").returncode == 0
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "vap", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1"}]},
    }
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "vap"},
        "spec": {
            "ingressClassName": "azure-application-gateway",
            "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
        },
    }
    created = cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump_all([pod, ingress]))
    assert created.returncode == 0, created.stderr


# Each use asks for a new image: a patch that lands before the API server enforces the policy
# would make a repeat of it a no-op, which the policy rightly allows.
_images = itertools.count()


def new_image() -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "web", "image": f"evil:{next(_images)}"}]}}


def wait_until_enforced(cluster: Cluster, operator: str) -> str:
    """The refusal of the operator's first spec patch once the API server enforces the policy.
    Until then a patch may land, or be refused for another reason (RBAC not yet in effect for a
    binding just made, 429 under load): only the policy's refusal ends the wait."""

    def refused_by_the_policy() -> str | None:
        answer = operator_patch(cluster, "pod", "web", new_image(), operator)
        return answer if "annotations-only" in answer else None

    refused = wait_for("the policy to be enforced", refused_by_the_policy)
    assert "never the spec" in refused
    return refused


def test_the_operator_may_patch_only_its_annotations(capable: Cluster) -> None:
    cluster = capable
    installed = chart.install(
        cluster.kubeconfig, {"crds": {"enabled": False}}, release=RELEASE, namespace=NAMESPACE
    )
    policy = chart.admission_policy(installed)
    assert len(policy) == 2
    assert OPERATOR in json.dumps(policy)
    create_pod_and_ingress(cluster)
    wait_until_enforced(cluster, OPERATOR)
    ours = {"metadata": {"annotations": {"sse.appgw.dev/route": "shop.notifications"}}}
    assert operator_patch(cluster, "pod", "web", ours) == ""
    other = operator_patch(cluster, "pod", "web", {"metadata": {"annotations": {"x/y": "1"}}})
    assert "x/y" in other
    assert "never labels" in operator_patch(
        cluster, "pod", "web", {"metadata": {"labels": {"app": "other"}}}
    )
    assert (
        operator_patch(cluster, "ingress", "web", {"metadata": {"annotations": {AGIC: "90"}}}) == ""
    )
    assert "sse.appgw.dev/x" in operator_patch(
        cluster, "ingress", "web", {"metadata": {"annotations": {"sse.appgw.dev/x": "1"}}}
    )
    # Anyone else is not bound by it.
    admin = cluster.kubectl(
        "patch", "pod", "web", "-n", "vap", "--type=merge", "-p", json.dumps(new_image())
    )
    assert admin.returncode == 0, admin.stderr  # a pod's image is mutable


def test_kubectl_apply_k_deploy_binds_the_operator_by_the_policy_too(capable: Cluster) -> None:
    # The kustomize install users run without Helm: the base plus the admission-policy component.
    cluster = capable
    applied = cluster.kubectl("apply", "--server-side", "-k", str(chart.REPO / "deploy"))
    assert applied.returncode == 0, applied.stderr
    assert "validatingadmissionpolicybinding" in applied.stdout
    create_pod_and_ingress(cluster)
    operator = f"system:serviceaccount:{chart.NAMESPACE}:{chart.SERVICE_ACCOUNT}"
    wait_until_enforced(cluster, operator)
    ours = {"metadata": {"annotations": {"sse.appgw.dev/route": "shop.notifications"}}}
    assert operator_patch(cluster, "pod", "web", ours, operator) == ""
