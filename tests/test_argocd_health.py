"""The Argo CD health check (deploy/argocd/) under gopher-lua, the Lua engine Argo CD runs, on
routes recorded from the real API server: the verdict kstatus gave each, in Argo CD's terms.
tests/test_gitops_e2e.py runs the same check on live routes."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gitops import ARGO_FOR_KSTATUS, ARGOCD_CM, HEALTH_KEY, argo_health

RECORDED = Path(__file__).resolve().parent / "data" / "gitops_routes.yaml"


def ready_reason(route: dict[str, Any]) -> str | None:
    conditions = (route.get("status") or {}).get("conditions") or ()
    return next((c["reason"] for c in conditions if c["type"] == "Ready"), None)


def test_argo_cd_health_matches_kstatus_on_recorded_routes(tmp_path: Path) -> None:
    recorded = yaml.safe_load(RECORDED.read_text())
    # Every state: not reconciled yet, behind, applying, ready, and three stalled reasons.
    assert {r["kstatus"] for r in recorded} == {"Current", "InProgress", "Failed"}
    assert {ready_reason(r["object"]) for r in recorded} >= {
        "Applying",
        "Applied",
        "InvalidSpec",
        "GatewayNotAllowed",
        "BackendSettingsNotFound",
    }
    script = yaml.safe_load(ARGOCD_CM.read_text())["data"][HEALTH_KEY]
    health = argo_health(tmp_path, script, [r["object"] for r in recorded])
    for route, verdict in zip(recorded, health, strict=True):
        assert verdict["status"] == ARGO_FOR_KSTATUS[route["kstatus"]], (verdict, route)
        assert verdict["message"]
    degraded = [v["message"] for v in health if v["status"] == "Degraded"]
    assert any(m.startswith("BackendSettingsNotFound: ") for m in degraded), degraded


@pytest.mark.parametrize("returned", ["Fine", None])
def test_a_status_argo_cd_does_not_know_is_unknown(tmp_path: Path, returned: str | None) -> None:
    """The driver reads the script's answer as Argo CD does (else this test proves little)."""
    script = "return {status = %s}" % ("nil" if returned is None else f'"{returned}"')
    assert argo_health(tmp_path, script, [{}])[0]["status"] == "Unknown"
