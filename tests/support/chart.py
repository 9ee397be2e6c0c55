"""The Helm chart through real Helm (Helm 4's Go SDK via helm-python-sdk): render it as `helm
template` would, and install or uninstall it on an API server.

    render(values, release, namespace) -> the manifests, as dicts (NOTES.txt excluded)
    notes(values, release, namespace)  -> NOTES.txt as rendered
    install(kubeconfig, values, ...)    -> the manifests Helm installed
    upgrade(kubeconfig, values, ...)    -> the manifests Helm upgraded to
    uninstall(kubeconfig, release, namespace)

The operator's service account is the release's base name: `appgw-sse-operator` for the default
release `appgw-sse`, `<release>-appgw-sse-operator` for other names (see the chart's README).

`python3 -m tests.support.chart` regenerates the kustomize base and the admission-policy
component from the chart.
"""

import functools
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "deploy" / "helm" / "appgw-sse-operator"
KUSTOMIZE_BASE = REPO / "deploy" / "kustomize" / "base" / "appgw-sse-operator.yaml"
KUSTOMIZE_ADMISSION_POLICY = (
    REPO / "deploy" / "kustomize" / "components" / "admission-policy" / "admission-policy.yaml"
)
RELEASE = "appgw-sse"
NAMESPACE = "appgw-sse-system"
SERVICE_ACCOUNT = "appgw-sse-operator"


@functools.cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART_DIR)


def _documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _render(values: dict[str, Any] | None, release: str, namespace: str) -> dict[str, str]:
    # Sorted by template path: Helm returns a map, tests want a stable order.
    files = chart().render(values, name=release, namespace=namespace, is_install=True)
    return dict(sorted(files.items()))


def render(
    values: dict[str, Any] | None = None, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """What `helm template` prints, parsed. Raises helm_python.HelmValuesError when the values
    break values.schema.json, HelmRenderError when a template fails on them."""
    return [
        doc
        for path, text in _render(values, release, namespace).items()
        if not path.endswith("NOTES.txt")
        for doc in _documents(text)
    ]


def notes(
    values: dict[str, Any] | None = None, release: str = RELEASE, namespace: str = NAMESPACE
) -> str:
    files = _render(values, release, namespace)
    return next(text for path, text in files.items() if path.endswith("NOTES.txt"))


def install(
    kubeconfig: Path,
    values: dict[str, Any] | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """`helm install --create-namespace`; nothing waits for pods (there may be no kubelet)."""
    with helm_python.Config(kubeconfig_path=kubeconfig, namespace=namespace) as config:
        result = config.install(
            chart(), release, values, namespace=namespace, create_namespace=True, timeout=120
        )
    return _documents(str(result["manifest"]))


def upgrade(
    kubeconfig: Path,
    values: dict[str, Any] | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """`helm upgrade` with these values (not reusing the old ones)."""
    with helm_python.Config(kubeconfig_path=kubeconfig, namespace=namespace) as config:
        result = config.upgrade(chart(), release, values, namespace=namespace, timeout=120)
    return _documents(str(result["manifest"]))


def uninstall(kubeconfig: Path, release: str = RELEASE, namespace: str = NAMESPACE) -> None:
    with helm_python.Config(kubeconfig_path=kubeconfig, namespace=namespace) as config:
        config.uninstall(release, timeout=120)


def _for_kustomize(docs: list[dict[str, Any]]) -> str:
    """Manifests for kustomize: Helm's own labels and annotations dropped."""
    for doc in docs:
        metadata = doc["metadata"]
        labels = metadata.get("labels", {})
        labels.pop("helm.sh/chart", None)
        labels["app.kubernetes.io/managed-by"] = "kustomize"
        metadata.get("annotations", {}).pop("helm.sh/resource-policy", None)
        if metadata.get("annotations") == {}:
            del metadata["annotations"]
    header = "# Generated from the Helm chart by `python3 -m tests.support.chart`.\n"
    return header + yaml.safe_dump_all(docs, sort_keys=False, width=100)


def kustomize_base() -> str:
    """The chart's defaults as rendered without a cluster: no admission policy."""
    return _for_kustomize(render())


def admission_policy(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy and its binding among rendered or installed manifests."""
    return [doc for doc in docs if doc["kind"].startswith("ValidatingAdmissionPolicy")]


def kustomize_admission_policy() -> str:
    """The chart's admission policy alone, for the kustomize component that adds it."""
    return _for_kustomize(admission_policy(render({"rbac": {"admissionPolicy": "always"}})))


if __name__ == "__main__":
    for path, text in (
        (KUSTOMIZE_BASE, kustomize_base()),
        (KUSTOMIZE_ADMISSION_POLICY, kustomize_admission_policy()),
    ):
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
