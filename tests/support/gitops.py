"""Argo CD's side of the GitOps tests: its health check for SseRoute (deploy/argocd/) run by
tests/gitops/argohealth, gopher-lua set up as Argo CD sets it up."""

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support import gobuild

ARGOCD_CM = Path(__file__).resolve().parents[2] / "deploy" / "argocd" / "argocd-cm.yaml"
HEALTH_KEY = "resource.customizations.health.sse.appgw.dev_SseRoute"
# The Argo CD health that must go with each kstatus verdict (what Flux reads).
ARGO_FOR_KSTATUS = {"Current": "Healthy", "InProgress": "Progressing", "Failed": "Degraded"}


def argo_health(workdir: Path, script: str, objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Argo CD's health of each object, from the Lua `script` run by gopher-lua."""
    lua = workdir / "health.lua"
    lua.write_text(script)
    done = subprocess.run(
        [str(gobuild.program("argohealth")), str(lua)],
        input="".join(json.dumps(o) + "\n" for o in objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]
