"""The operator's permissions, as the Helm chart grants them, read back from a real API server by
the operator's own identity. Widening RBAC changes this table: a reviewed diff."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import cluster as clusters
from tests.support.cluster import OPERATOR_NAMESPACE, Cluster

# What every authenticated identity may do (review its own access and identity; read the
# cluster's trust bundles, since 1.33); not the chart's doing.
_DEFAULTS = {
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
    "selfsubjectreviews.authentication.k8s.io",
    "clustertrustbundles.certificates.k8s.io",
}

CLUSTER_WIDE = {
    "sseroutes.sse.appgw.dev": "get list patch watch",
    "sseroutes.sse.appgw.dev/status": "get patch",
    "events": "create list",
    "pods": "list patch watch",
    "services": "list watch",
    "ingresses.networking.k8s.io": "list patch watch",
    "customresourcedefinitions.apiextensions.k8s.io": "list watch",
    # Only kube-system (resourceNames): its uid makes the default owner id of the claim tags.
    "namespaces": "get",
}
EXPECTED = {
    "shop": CLUSTER_WIDE,
    # The ownership ledger's ConfigMaps, only in the operator's own namespace.
    OPERATOR_NAMESPACE: CLUSTER_WIDE
    | {
        "configmaps": "create delete list update",
        "leases.coordination.k8s.io": "create list update",
    },
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    clusters.require_real("the RBAC table")
    with clusters.running(tmp_path) as started:
        yield started


def can_i(cluster: Cluster, namespace: str) -> dict[str, str]:
    result = cluster.kubectl("auth", "can-i", "--list", "-n", namespace, as_operator=True)
    assert result.returncode == 0, result.stderr
    table: dict[str, str] = {}
    for line in result.stdout.splitlines()[1:]:
        resource = line.split()[0] if not line.startswith(" ") else ""
        if resource and resource not in _DEFAULTS:  # non-resource URLs have no first column
            verbs = line[line.rindex("[") + 1 : line.rindex("]")].split()
            table[resource] = " ".join(sorted(set(table.get(resource, "").split()) | set(verbs)))
    return table


@pytest.mark.floor
@pytest.mark.parametrize("namespace", sorted(EXPECTED))
def test_the_operator_can_do_exactly_what_the_table_says(cluster: Cluster, namespace: str) -> None:
    assert can_i(cluster, namespace) == EXPECTED[namespace]
