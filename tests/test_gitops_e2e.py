"""GitOps with the tools' own code against the real API server and the running operator:
SseRoutes applied by Flux's apply library (github.com/fluxcd/pkg/ssa, field manager
kustomize-controller) and waited for with its WaitForSet (kstatus); Argo CD's health check
(deploy/argocd/) run by gopher-lua, the Lua engine Argo CD embeds, on the same objects.

Flux reads kstatus: status.observedGeneration and the Reconciling and Stalled conditions. Each
object kstatus judged is checked against what the route says: Current exactly when Ready is True
for its generation, Failed exactly when Stalled is True, InProgress otherwise; and Argo CD's
check must give Healthy, Degraded, Progressing for the same objects."""

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from appgw_sse.core.conditions import STALLED_REASONS
from tests.support import gobuild
from tests.support.cluster import require_real
from tests.support.e2e import Rig, gateway_id, route_manifest, wait_for
from tests.support.gitops import ARGO_FOR_KSTATUS, ARGOCD_CM, HEALTH_KEY, argo_health

pytestmark = pytest.mark.usefixtures("real_cluster")

FLUX = "kustomize-controller"


@pytest.fixture
def real_cluster(rig: Rig) -> None:
    require_real("Flux's server-side apply and kstatus")


class Flux:
    """fluxapply (tests/gitops/fluxapply) against the rig's API server."""

    def __init__(self, rig: Rig, workdir: Path) -> None:
        self.rig, self.workdir = rig, workdir
        self.binary = gobuild.program("fluxapply")
        self.seen: list[dict[str, Any]] = []  # every object kstatus judged, with its verdict

    def _run(self, flag: str, manifests: list[dict[str, Any]], *extra: str) -> dict[str, Any]:
        source = self.workdir / f"flux-{len(self.seen)}.yaml"
        source.write_text(yaml.safe_dump_all(manifests))
        kubeconfig = str(self.rig.cluster.kubeconfig)
        done = subprocess.run(
            [str(self.binary), "-kubeconfig", kubeconfig, flag, str(source), *extra],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            return {"error": done.stderr}
        result: dict[str, Any] = json.loads(done.stdout)
        for judged in result["status"]:
            check_kstatus_matches_route(judged)
        self.seen += result["status"]
        return result

    def apply(self, *manifests: dict[str, Any], wait: str = "0s") -> dict[str, Any]:
        return self._run("-f", list(manifests), "-wait", wait)

    def status(self, *manifests: dict[str, Any], wait: str = "0s") -> dict[str, str]:
        """kstatus of each route by name (after WaitForSet, when `wait`)."""
        result = self._run("-status-of", list(manifests), "-wait", wait)
        assert "error" not in result, result
        return {s["object"]["metadata"]["name"]: s["status"] for s in result["status"]}


def conditions_of(route: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (route.get("status") or {}).get("conditions") or ()}


def check_kstatus_matches_route(judged: dict[str, Any]) -> None:
    route, verdict = judged["object"], judged["status"]
    generation = route["metadata"]["generation"]
    observed = (route.get("status") or {}).get("observedGeneration")
    conditions = conditions_of(route) if observed == generation else {}
    ready, stalled = conditions.get("Ready", {}), conditions.get("Stalled", {})
    current = ready.get("status") == "True" and ready["observedGeneration"] == generation
    failed = stalled.get("status") == "True"
    expected = "Current" if current else "Failed" if failed else "InProgress"
    assert verdict == expected, (verdict, route.get("status"))
    if failed:
        assert ready["reason"] in STALLED_REASONS and ready["status"] == "False"


def owned_paths(fields: dict[str, Any], prefix: str = "") -> set[str]:
    """The leaf fields of a managedFields fieldsV1 tree, as dotted paths."""
    paths = set()
    for key, sub in fields.items():
        if key == ".":
            continue
        path = f"{prefix}.{key}" if prefix else key
        paths |= owned_paths(sub, path) if sub else {path}
    return paths


def test_flux_applies_and_waits_and_argo_cd_agrees(rig: Rig, tmp_path: Path) -> None:
    flux = Flux(rig, tmp_path)
    streams = route_manifest("streams")
    typo = route_manifest("typo", settings=("no-such-setting",))
    elsewhere = route_manifest("elsewhere", gateway_id=gateway_id("agw-finance", "rg-finance"))
    # Valid for the CRD's schema, refused by its CEL rule and by the operator.
    invalid = route_manifest("invalid", requestTimeout="45s")

    # Applied before any operator runs: the CRD's status default (observedGeneration 0) keeps
    # kstatus from calling a route nobody reconciled Current.
    first = flux.apply(streams, typo, elsewhere)
    assert sorted((a["subject"], a["action"]) for a in first["applied"]) == [
        ("SseRoute/shop/elsewhere", "created"),
        ("SseRoute/shop/streams", "created"),
        ("SseRoute/shop/typo", "created"),
    ]
    assert set(flux.status(streams, typo, elsewhere).values()) == {"InProgress"}

    refused = flux.apply(invalid)
    version = re.match(r"v(\d+)\.(\d+)", rig.cluster.call("GET", "/version")["gitVersion"])
    assert version is not None
    if (int(version[1]), int(version[2])) >= (1, 25):
        # The server enforces the CRD's CEL rules: Flux's apply fails, naming the field.
        assert "spec.requestTimeout" in refused.get("error", ""), refused
        assert rig.route("shop", "invalid") is None
        judged = [streams, typo, elsewhere]
    else:  # an older server drops the rules: the operator refuses it (InvalidSpec)
        assert refused["applied"] == [{"subject": "SseRoute/shop/invalid", "action": "created"}]
        judged = [streams, typo, elsewhere, invalid]

    rig.operator()
    waited = flux._run("-status-of", judged, "-wait", "90s")
    # WaitForSet stops once every object is Current or Failed, and fails on the Failed ones.
    assert waited["waitError"] is not None and "typo" in waited["waitError"]
    verdicts = {s["object"]["metadata"]["name"]: s["status"] for s in waited["status"]}
    assert verdicts == {"streams": "Current", "typo": "Failed", "elsewhere": "Failed"} | (
        {"invalid": "Failed"} if invalid in judged else {}
    )
    assert rig.condition("shop", "typo")["reason"] == "BackendSettingsNotFound"
    assert rig.condition("shop", "elsewhere")["reason"] == "GatewayNotAllowed"
    if invalid in judged:
        assert rig.condition("shop", "invalid")["reason"] == "InvalidSpec"

    # Flux applies a changed spec while the operator owns the status: no conflict. The
    # gateway's update is held (a long-running PUT) so that Applying can be seen.
    rig.emulator.admin("POST", "config", {"lroSeconds": 20})
    changed = route_manifest("streams", idle="90s")
    second = flux.apply(changed, typo)
    assert "error" not in second, second
    assert {(a["subject"], a["action"]) for a in second["applied"]} == {
        ("SseRoute/shop/streams", "configured"),
        ("SseRoute/shop/typo", "unchanged"),
    }
    assert flux.status(changed)["streams"] == "InProgress"

    def applying() -> bool:
        verdict = flux.status(changed)["streams"]
        configured = conditions_of(flux.seen[-1]["object"]).get("GatewayConfigured", {})
        return verdict == "InProgress" and configured.get("reason") == "Applying"

    wait_for("kstatus InProgress while the gateway is Applying", applying, timeout=60)
    assert flux.status(changed, wait="90s")["streams"] == "Current"
    ready = rig.wait_condition("shop", "streams", "True", "Applied")
    assert ready["observedGeneration"] == 2

    # A change the gateway does not see (nothing to PUT) is still observed: Current again.
    puts = rig.admin_puts()
    unseen = route_manifest("streams", idle="90s", restoreOnDelete=False)
    assert flux.apply(unseen)["applied"][0]["action"] == "configured"
    assert flux.status(unseen, wait="60s")["streams"] == "Current"
    assert flux.seen[-1]["object"]["status"]["observedGeneration"] == 3
    assert rig.admin_puts() == puts

    # Field ownership: Flux owns what it applied, the operator only its status and finalizer;
    # nothing Flux applied is owned by anyone else.
    route = rig.route("shop", "streams")
    assert route is not None
    managed = route["metadata"]["managedFields"]
    by_manager: dict[str, set[str]] = {}
    for entry in managed:
        key = f"{entry['manager']}/{entry['operation']}"
        by_manager.setdefault(key, set()).update(owned_paths(entry.get("fieldsV1") or {}))
        # Servers since 1.22 also say the operator's writes went through the status subresource.
        if entry["manager"] == "appgw-sse-operator" and "subresource" in entry:
            assert entry["subresource"] == "status"
    flux_owned = by_manager.pop(f"{FLUX}/Apply")
    assert "f:spec.f:idleInterval" in flux_owned
    assert "f:metadata.f:labels.f:kustomize.toolkit.fluxcd.io/name" in flux_owned
    assert not any(p.startswith("f:status") for p in flux_owned)
    operator_owned = by_manager.pop("appgw-sse-operator/Update")
    assert {"f:status.f:observedGeneration", "f:status.f:mode"} <= operator_owned
    assert all(p.startswith("f:status") for p in operator_owned)
    others = operator_owned.union(*by_manager.values())  # with our finalizer's manager
    assert not {p for p in others if p.startswith("f:spec")}, by_manager
    assert not others & flux_owned, by_manager

    # Argo CD's check on every object kstatus judged: the same verdict. And a route with no
    # status at all (a server that does not default it), or one written for the generation
    # before, is Progressing.
    assert {s["status"] for s in flux.seen} >= {"Current", "InProgress", "Failed"}
    current = next(s["object"] for s in reversed(flux.seen) if s["status"] == "Current")
    behind = json.loads(json.dumps(current))
    behind["metadata"]["generation"] += 1
    unwritten = {k: v for k, v in current.items() if k != "status"}
    judged_objects = [*flux.seen, {"status": "InProgress", "object": behind}]
    judged_objects.append({"status": "InProgress", "object": unwritten})
    argo = argo_health(tmp_path, installed_health_check(rig), [s["object"] for s in judged_objects])
    for judged_object, health in zip(judged_objects, argo, strict=True):
        assert health["status"] == ARGO_FOR_KSTATUS[judged_object["status"]], (
            health,
            judged_object["object"].get("status"),
        )


def installed_health_check(rig: Rig) -> str:
    """The check as docs/gitops.md installs it, into an argocd-cm that holds other settings."""
    rig.kubectl("create", "namespace", "argocd")
    rig.kubectl("create", "configmap", "argocd-cm", "-n", "argocd", "--from-literal=url=https://cd")
    rig.kubectl("-n", "argocd", "patch", "configmap", "argocd-cm", "--patch-file", str(ARGOCD_CM))
    installed = rig.get("/api/v1/namespaces/argocd/configmaps/argocd-cm")
    assert installed is not None and installed["data"]["url"] == "https://cd"
    script: str = installed["data"][HEALTH_KEY]
    return script
