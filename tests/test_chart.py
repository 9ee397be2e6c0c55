"""The Helm chart, the kustomize base and the image, as a new user meets them: the chart rendered
by real Helm 4 (helm-python-sdk), its values checked by values.schema.json, the Deployment's
arguments parsed by `appgw-sse run`'s own parser, every manifest validated against Kubernetes'
published schemas, `helm install`/`helm uninstall` on a real kube-apiserver, `kubectl kustomize`,
and hadolint on the Dockerfile."""

import argparse
import json
import os
import re
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from appgw_sse.cli import build_parser
from appgw_sse.sandbox import apiserver as apiserver_choice
from appgw_sse.sandbox.demo import wait_until
from tests.support import chart
from tests.support import cluster as clusters
from tests.support.chart import CHART_DIR, REPO, render

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
# What the operator does where it watches: never granted cluster-wide unless it watches all.
WATCH_RESOURCES = {"sseroutes", "sseroutes/status", "events", "pods", "services", "ingresses"}
GATEWAYS = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-shop-*"
    "/providers/Microsoft.Network/applicationGateways/*"
)
CLIENT_ID = "6f1c1c9e-3b1a-4c55-9a3e-2f7d9e0b1a22"


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = of_kind(docs, kind)
    return doc


def identity(doc: dict[str, Any]) -> tuple[str, str, str | None, str]:
    """What the API server keys an object by."""
    group = doc["apiVersion"].rpartition("/")[0]
    return group, doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (operator,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(operator)


def parse_run(docs: list[dict[str, Any]]) -> argparse.Namespace:
    """The operator's arguments as `appgw-sse run` parses them in the container: the parser takes
    its defaults from the environment, so it is built under the container's environment."""
    operator = container(docs)
    assert operator["args"][0] == "run"
    with pytest.MonkeyPatch.context() as env:
        for name in [name for name in os.environ if name.startswith("APPGW_SSE_")]:
            env.delenv(name)
        for var in operator["env"]:
            if "value" in var:
                env.setenv(var["name"], var["value"])
        try:
            return build_parser().parse_args(operator["args"])
        except SystemExit:
            pytest.fail(f"appgw-sse {' '.join(operator['args'])} exits: the pod would crash-loop")


def rules(role: dict[str, Any]) -> set[tuple[str, str]]:
    """(resource, verb) pairs a Role or ClusterRole grants."""
    return {
        (resource, verb)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def validate_strictly(docs: list[dict[str, Any]]) -> None:
    version = kubernetes_validate.latest_version()
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is invalid: {exc}")


# Defaults and namespaced mode -------------------------------------------------------------------


def test_defaults_watch_all_namespaces_with_one_cluster_role() -> None:
    docs = render()
    assert sorted(doc["kind"] for doc in docs) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    account = one(docs, "ServiceAccount")["metadata"]
    assert (account["namespace"], account["name"]) == (chart.NAMESPACE, chart.SERVICE_ACCOUNT)
    cluster_role = one(docs, "ClusterRole")
    assert {resource for resource, _ in rules(cluster_role)} == WATCH_RESOURCES | {
        "customresourcedefinitions",
        "namespaces",
    }
    assert ("pods", "patch") in rules(cluster_role)
    # kopf lists namespaces only to resolve a namespace list: never needed cluster-wide. The one
    # namespace read is kube-system (its uid derives the default owner id of the claim tags).
    assert {verb for resource, verb in rules(cluster_role) if resource == "namespaces"} == {"get"}
    assert [
        r["resourceNames"] for r in cluster_role["rules"] if "namespaces" in r["resources"]
    ] == [["kube-system"]]
    roles = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Role"}
    assert {role["metadata"]["namespace"] for role in roles.values()} == {chart.NAMESPACE}
    assert rules(roles[f"{chart.SERVICE_ACCOUNT}-ledger"]) == {
        ("configmaps", "list"),
        ("configmaps", "create"),
        ("configmaps", "update"),
        ("configmaps", "delete"),
    }
    assert rules(roles[f"{chart.SERVICE_ACCOUNT}-leader-election"]) == {
        ("leases", "list"),
        ("leases", "create"),
        ("leases", "update"),
    }

    args = parse_run(docs)
    assert (args.namespace, args.allowed_gateway) == ([], [])
    assert (args.resync, args.debounce, args.probe_interval) == (300, 2, 60)
    assert (args.dry_run, args.no_probe) == (False, False)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == chart.SERVICE_ACCOUNT
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container(docs)["securityContext"]["readOnlyRootFilesystem"] is True


def test_namespaced_mode_grants_nothing_on_pods_cluster_wide() -> None:
    docs = render({"namespaces": ["shop", "web"]})
    cluster_role = one(docs, "ClusterRole")
    assert rules(cluster_role) == {
        ("customresourcedefinitions", "list"),
        ("customresourcedefinitions", "watch"),
        ("namespaces", "get"),  # kube-system only (resourceNames): the default owner id
        ("namespaces", "list"),
        ("namespaces", "watch"),
    }
    roles = {
        role["metadata"]["namespace"]: role
        for role in of_kind(docs, "Role")
        if role["metadata"]["namespace"] != chart.NAMESPACE
    }
    assert set(roles) == {"shop", "web"}
    for namespace in ("shop", "web"):
        assert {resource for resource, _ in rules(roles[namespace])} == WATCH_RESOURCES
        assert ("pods", "patch") in rules(roles[namespace])
    own = {
        resource
        for role in of_kind(docs, "Role")
        if role["metadata"]["namespace"] == chart.NAMESPACE
        for resource, _ in rules(role)
    }
    assert own == {"configmaps", "leases"}  # the ledger and leader election, nothing else
    names = {
        (role["metadata"]["namespace"], role["metadata"]["name"]) for role in of_kind(docs, "Role")
    }
    for binding in of_kind(docs, "RoleBinding"):
        assert (binding["metadata"]["namespace"], binding["roleRef"]["name"]) in names
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": chart.SERVICE_ACCOUNT, "namespace": chart.NAMESPACE}
        ]
    assert parse_run(docs).namespace == ["shop", "web"]


def test_two_releases_in_two_namespaces_share_no_object() -> None:
    """The same release name in two namespaces, both watching `shop`; the second leaves the CRD
    (cluster-wide, one owner) to the first."""
    first = render({"namespaces": ["shop"]}, release="appgw-sse", namespace="team-a")
    second = render(
        {"namespaces": ["shop"], "crds": {"enabled": False}},
        release="appgw-sse",
        namespace="team-b",
    )
    assert not {identity(doc) for doc in first} & {identity(doc) for doc in second}
    # And another release name next to the first, watching everything.
    third = render({"crds": {"enabled": False}}, release="edge", namespace="team-a")
    assert not {identity(doc) for doc in first} & {identity(doc) for doc in third}
    assert one(third, "ServiceAccount")["metadata"]["name"] == "edge-appgw-sse-operator"


# Values: the schema, every knob, and the arguments they produce ---------------------------------


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"allowedGateway": [GATEWAYS]}, "'allowedGateway'"),  # typo of allowedGateways
        ({"resync": "5x"}, "'5x'"),
        ({"azure": {"clientID": "y"}}, "'clientID'"),
        ({"azure": {"clientId": "y"}}, "'y'"),
        ({"resync": "0s"}, "'0s'"),
        ({"probe": {"interval": "0m"}}, "'0m'"),
        ({"debounce": "2"}, "'2'"),
        ({"resync": 300}, "/resync"),
        ({"namespaces": ["Shop"]}, "'Shop'"),
        ({"namespaces": ["shop-*"]}, "'shop-*'"),
        ({"allowedGateways": [""]}, "/allowedGateways/0"),
        ({"image": {"digest": "latest"}}, "'latest'"),
        ({"dryRun": "yes"}, "/dryRun"),
        ({"ownerId": "Blue_1"}, "/ownerId"),
        ({"serviceAccount": {"annotation": {}}}, "'annotation'"),
        ({"extraArgs": ["resync=1m"]}, "'resync=1m'"),
    ],
)
def test_schema_rejects_bad_values_naming_them(values: dict[str, Any], named: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as error:
        render(values)
    assert named in str(error.value)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"extraArgs": ["--resync=1m"]}, "--resync is set through the value resync"),
        ({"extraArgs": ["--help"]}, "--help"),
        ({"extraEnv": [{"name": "APPGW_SSE_DRY_RUN", "value": "1"}]}, "APPGW_SSE_DRY_RUN"),
        (
            {"azure": {"armCaBundle": {"configMap": "ca", "secret": "ca"}}},
            "azure.armCaBundle: set configMap or secret, not both",
        ),
    ],
)
def test_values_the_schema_cannot_judge_fail_the_render(values: dict[str, Any], named: str) -> None:
    with pytest.raises(helm_python.HelmRenderError) as error:
        render(values)
    assert named in str(error.value)


def test_every_knob_lands_where_users_expect_it() -> None:
    values = {
        "fullnameOverride": "sse",
        "image": {"digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "allowedGateways": [GATEWAYS],
        "resync": "10m",
        "debounce": "0s",
        "dryRun": True,
        "ownerId": "blue",
        "probe": {"enabled": False},
        "azure": {
            "clientId": CLIENT_ID,
            "armEndpoint": "https://management.usgovcloudapi.net",
            "armCaBundle": {"configMap": "arm-ca", "key": "bundle.pem"},
            "armTokenFile": {"secret": "arm-token"},
        },
        "serviceAccount": {"name": "sse-operator", "annotations": {"team": "edge"}},
        "podAnnotations": {"prometheus.io/scrape": "false"},
        "podLabels": {"team": "edge"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "affinity": {"podAntiAffinity": {}},
        "priorityClassName": "system-cluster-critical",
        "resources": {"requests": {"cpu": "10m"}},
        "podSecurityContext": {"fsGroup": 10001},
        "securityContext": {"runAsUser": 20000},
        "extraArgs": ["--future-flag=on"],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    }
    docs = render(values)
    account = one(docs, "ServiceAccount")["metadata"]
    assert account["name"] == "sse-operator"
    assert account["annotations"] == {
        "team": "edge",
        "azure.workload.identity/client-id": CLIENT_ID,
    }
    deployment = one(docs, "Deployment")
    assert deployment["metadata"]["name"] == "sse"
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "false"}
    assert pod["metadata"]["labels"]["team"] == "edge"
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "sse-operator"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"] == values["tolerations"]
    assert spec["affinity"] == {"podAntiAffinity": {}}
    assert spec["priorityClassName"] == "system-cluster-critical"
    # Helm merges maps into the defaults: the restricted settings stay unless set to null.
    assert spec["securityContext"]["fsGroup"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    operator = container(docs)
    assert operator["image"] == "ghcr.io/appgw-sse/appgw-sse-operator@sha256:" + "a" * 64
    assert operator["imagePullPolicy"] == "Always"
    assert operator["resources"]["requests"] == {"cpu": "10m", "memory": "192Mi"}
    assert operator["securityContext"]["runAsUser"] == 20000
    assert operator["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in operator["env"]
    assert operator["args"][-1] == "--future-flag=on"
    assert "--owner-id=blue" in operator["args"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["arm-ca"]["configMap"] == {
        "name": "arm-ca",
        "items": [{"key": "bundle.pem", "path": "ca.pem"}],
    }
    assert volumes["arm-token"]["secret"]["secretName"] == "arm-token"
    for binding in of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding"):
        assert binding["subjects"][0]["name"] == "sse-operator"
    validate_strictly(docs)

    # The image is a future one that knows --future-flag; this one's parser does not.
    operator["args"].remove("--future-flag=on")
    args = parse_run(docs)
    assert args.allowed_gateway == [GATEWAYS]
    assert (args.resync, args.debounce, args.dry_run, args.no_probe) == (600, 0, True, True)
    assert args.arm_endpoint == "https://management.usgovcloudapi.net"
    mounts = {mount["name"]: mount["mountPath"] for mount in operator["volumeMounts"]}
    assert args.arm_ca_bundle == Path(mounts["arm-ca"], "ca.pem")
    assert args.arm_token_file == Path(mounts["arm-token"], "token")


def test_service_account_and_rbac_can_be_left_to_the_user() -> None:
    docs = render({"serviceAccount": {"create": False, "name": "mine"}, "rbac": {"create": False}})
    assert sorted(doc["kind"] for doc in docs) == [
        "CustomResourceDefinition",
        "Deployment",
        "Service",
    ]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


def _pattern(definition: str) -> str:
    return str(SCHEMA["definitions"][definition]["pattern"])


DURATIONS = st.from_regex(_pattern("duration"), fullmatch=True).filter(lambda d: len(d) >= 2)
PERIODS = DURATIONS.filter(lambda d: re.search("[1-9]", d) is not None)
NAMESPACES = st.from_regex(_pattern("label"), fullmatch=True).filter(lambda n: 0 < len(n) <= 63)
GATEWAY_GLOBS = st.from_regex(
    SCHEMA["properties"]["allowedGateways"]["items"]["pattern"], fullmatch=True
)


@settings(max_examples=25)
@given(
    resync=PERIODS,
    debounce=DURATIONS,
    interval=PERIODS,
    probe=st.booleans(),
    dry_run=st.booleans(),
    namespaces=st.lists(NAMESPACES, max_size=3, unique=True),
    gateways=st.lists(GATEWAY_GLOBS, max_size=3, unique=True),
)
def test_any_value_the_schema_accepts_starts_the_operator(
    resync: str,
    debounce: str,
    interval: str,
    probe: bool,
    dry_run: bool,
    namespaces: list[str],
    gateways: list[str],
) -> None:
    docs = render(
        {
            "resync": resync,
            "debounce": debounce,
            "probe": {"enabled": probe, "interval": interval},
            "dryRun": dry_run,
            "namespaces": namespaces,
            "allowedGateways": gateways,
        }
    )
    args = parse_run(docs)
    assert args.resync > 0 and args.debounce >= 0 and args.probe_interval > 0
    assert (args.namespace, args.allowed_gateway) == (namespaces, gateways)
    assert (args.no_probe, args.dry_run) == (not probe, dry_run)


def test_rendered_manifests_pass_strict_schema_validation() -> None:
    for values in ({}, {"namespaces": ["shop", "web"], "allowedGateways": [GATEWAYS]}):
        validate_strictly(render(values))


def test_crd_is_the_generated_one_kept_on_uninstall_by_default() -> None:
    generated = yaml.safe_load((REPO / "crds" / "sseroutes.sse.appgw.dev.yaml").read_text())
    crd = one(render(), "CustomResourceDefinition")
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    unkept = one(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "annotations" not in unkept["metadata"]
    assert of_kind(render({"crds": {"enabled": False}}), "CustomResourceDefinition") == []


def test_notes_warn_when_no_gateway_may_be_written() -> None:
    assert "WARNING: allowedGateways is empty" in chart.notes()
    notes = chart.notes({"allowedGateways": [GATEWAYS], "namespaces": ["shop"]})
    assert "WARNING" not in notes
    assert "the namespaces shop" in notes
    assert f"{chart.NAMESPACE}/{chart.SERVICE_ACCOUNT}" in notes


def test_helm_lint_finds_nothing_to_warn_about() -> None:
    report = helm_python.lint(CHART_DIR, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_chart_readme_documents_every_value() -> None:
    readme = (CHART_DIR / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z.]+)` \|", readme, re.MULTILINE))

    def leaves(values: dict[str, Any], prefix: str = "") -> set[str]:
        keys = set()
        for key, value in values.items():
            if isinstance(value, dict) and value and key not in _FREE_FORM:
                keys |= leaves(value, f"{prefix}{key}.")
            else:
                keys.add(prefix + key)
        return keys

    assert documented == leaves(yaml.safe_load((CHART_DIR / "values.yaml").read_text()))


# Maps the chart passes through whole (Kubernetes' own types).
_FREE_FORM = {"podSecurityContext", "securityContext", "resources"}


# kustomize ---------------------------------------------------------------------------------------


def kubectl(home: Path, *args: str, kubeconfig: Path | None = None) -> str:
    """kubectl with its own HOME: its cache never lands in the working directory."""
    env = dict(os.environ, HOME=str(home))
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run(
        ["kubectl", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def test_kustomize_is_the_charts_defaults_on_a_current_cluster(tmp_path: Path) -> None:
    stale = "stale: python3 -m tests.support.chart"
    assert chart.KUSTOMIZE_BASE.read_text() == chart.kustomize_base(), stale
    assert chart.KUSTOMIZE_ADMISSION_POLICY.read_text() == chart.kustomize_admission_policy(), stale
    docs = list(yaml.safe_load_all(kubectl(tmp_path, "kustomize", str(REPO / "deploy"))))
    assert one(docs, "Namespace")["metadata"]["name"] == chart.NAMESPACE
    # What Helm installs on a cluster that serves admission policies (1.30+) ...
    assert {identity(doc) for doc in docs if doc["kind"] != "Namespace"} == {
        identity(doc) for doc in render({"rbac": {"admissionPolicy": "always"}})
    }
    # ... and the base alone is what it installs on an older one.
    base = kubectl(tmp_path, "kustomize", str(chart.KUSTOMIZE_BASE.parent))
    assert {identity(doc) for doc in yaml.safe_load_all(base) if doc["kind"] != "Namespace"} == {
        identity(doc) for doc in render()
    }
    validate_strictly(docs)
    assert parse_run(docs).allowed_gateway == []


def test_kustomize_example_overlay_allows_gateways_with_workload_identity(tmp_path: Path) -> None:
    overlay = REPO / "deploy" / "kustomize" / "overlays" / "example"
    docs = list(yaml.safe_load_all(kubectl(tmp_path, "kustomize", str(overlay))))
    validate_strictly(docs)
    args = parse_run(docs)
    assert len(args.allowed_gateway) == 1
    assert args.allowed_gateway[0].endswith("/applicationGateways/*")
    annotations = one(docs, "ServiceAccount")["metadata"]["annotations"]
    assert "azure.workload.identity/client-id" in annotations
    assert one(docs, "ValidatingAdmissionPolicyBinding")


# The image ---------------------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run(
        ["hadolint", str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_dependencies_before_copying_the_source() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    froms = [line for line in lines if line.startswith(("FROM", "ARG PYTHON_IMAGE"))]
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:\S+@sha256:[0-9a-f]{64}", froms[0])
    copies = [line for line in lines if line.startswith("COPY")]
    assert copies.index("COPY pyproject.toml ./") < copies.index("COPY operator ./operator")
    # The final stage takes the virtualenv only: no wheels, no sources.
    final = lines[len(lines) - lines[::-1].index("FROM ${PYTHON_IMAGE}") :]
    assert [line for line in final if line.startswith("COPY")] == [
        "COPY --from=build /opt/appgw-sse /opt/appgw-sse"
    ]
    assert re.search(r"^USER \d+", "\n".join(final), re.MULTILINE)
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert {"*", "**/__pycache__", "**/*.egg-info"} <= set(ignored)


def test_packaging_declares_its_license_with_a_setuptools_that_understands_it() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
    assert (REPO / "LICENSE").read_text().split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert ".kube/" in (REPO / ".gitignore").read_text().splitlines()


# A real API server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The suite's real API server (current when built, else v1.20.2), bare: no CRD, no RBAC."""
    build = clusters.require_real("helm install on an API server")
    workdir = tmp_path_factory.mktemp("apiserver")
    started = subprocess.run(
        [str(build.script), str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **build.environment()},
    )
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout.splitlines()[-1])
    try:
        yield Path(info["kubeconfig"])
    finally:
        apiserver_choice.stop(info["pids"])
        wait_until("the API server and etcd to stop", lambda: not running(info["pids"]), 30)


def running(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


@pytest.mark.floor
def test_helm_install_upgrade_and_uninstall_on_a_real_api_server(
    apiserver: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"

    def get(*args: str) -> str:
        return kubectl(home, "get", *args, kubeconfig=apiserver)

    def can(verb: str, resource: str, namespace: str, account: str) -> bool:
        result = subprocess.run(
            ["kubectl", "auth", "can-i", verb, resource, "-n", namespace, "--as", account],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=dict(os.environ, HOME=str(home), KUBECONFIG=str(apiserver)),
        )
        answer = result.stdout.strip()
        assert answer in ("yes", "no"), result.stderr
        return answer == "yes"

    operator = f"system:serviceaccount:{chart.NAMESPACE}:{chart.SERVICE_ACCOUNT}"
    installed = chart.install(apiserver)
    assert {doc["kind"] for doc in installed} >= {"CustomResourceDefinition", "Deployment"}
    crd = json.loads(get("crd", "sseroutes.sse.appgw.dev", "-o", "json"))
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == chart.RELEASE
    # Before 1.23 the API knows no CEL rules: the chart leaves them out (templates/crds.yaml).
    build = clusters.real_server()
    assert build is not None
    knows_cel = build.minor >= 23
    assert ("x-kubernetes-validations" in json.dumps(crd["spec"])) == knows_cel
    deployment = json.loads(
        get(
            "deployment",
            "-n",
            chart.NAMESPACE,
            chart.SERVICE_ACCOUNT,
            "-o",
            "json",
            "--show-managed-fields",
        )
    )
    # Helm 4 applies server-side (its field manager is its process's name, here python3).
    operations = {m["operation"] for m in deployment["metadata"]["managedFields"]}
    assert operations == {"Apply"}, deployment["metadata"]["managedFields"]
    assert can("patch", "pods", "default", operator)

    # An upgrade with changed values lands in the Deployment, applied over the same fields.
    chart.upgrade(apiserver, {"resync": "2m", "logFormat": "json"})
    deployment = json.loads(
        get("deployment", "-n", chart.NAMESPACE, chart.SERVICE_ACCOUNT, "-o", "json")
    )
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--resync=2m" in args and "--log-format=json" in args, args

    # A second release in another namespace, watching only `shop`, beside the first.
    kubectl(home, "create", "namespace", "shop", kubeconfig=apiserver)
    chart.install(
        apiserver, {"namespaces": ["shop"], "crds": {"enabled": False}}, namespace="team-b"
    )
    second = f"system:serviceaccount:team-b:{chart.SERVICE_ACCOUNT}"
    assert can("patch", "pods", "shop", second)
    assert not can("patch", "pods", "default", second)
    assert not can("list", "sseroutes", "default", second)
    chart.uninstall(apiserver, namespace="team-b")

    chart.uninstall(apiserver)
    assert "sseroutes.sse.appgw.dev" in get("crd", "-o", "name")  # crds.keep
    assert chart.SERVICE_ACCOUNT not in get("deployments", "-A", "-o", "name")
    assert not can("patch", "pods", "default", operator)

    # Installed again, the release adopts the CRD it left; without crds.keep it takes it along.
    chart.install(apiserver, {"crds": {"keep": False}})
    chart.uninstall(apiserver)
    deadline = time.monotonic() + 30
    while "sseroutes.sse.appgw.dev" in get("crd", "-o", "name"):
        assert time.monotonic() < deadline, "the CRD outlived its release without crds.keep"
        time.sleep(0.2)
    # kubectl's cache went to the temporary HOME, not to the working directory.
    assert (home / ".kube" / "cache").is_dir()
    assert not (Path.cwd() / ".kube").exists()
