"""Which real kube-apiserver the sandbox (and the test suite) starts on this machine.

All are started by `../shared/k8s/start-apiserver` (same flags, tokens, kubeconfigs, audit log);
what differs is the binaries it runs, chosen in this order:
1. `APPGW_SSE_KUBE=standin`: none (the embedded stand-in).
2. `KUBEBUILDER_ASSETS` (envtest's convention: a folder holding `kube-apiserver` and `etcd`):
   those. Set but empty: the floor (4).
3. Unset: the current release `hack/envtest-assets` builds, when its folder is complete.
4. The floor: kube-apiserver v1.20.2 from ../shared/k8s, with the etcd on PATH.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[3]
FLOOR_VERSION = "v1.20.2"
_PINNED = re.compile(r"^require k8s\.io/kubernetes (v\S+)$", re.M)


@dataclass(frozen=True)
class ApiServerBuild:
    """The start script and the binaries it is told to run (None: the script's own)."""

    script: Path
    apiserver: Path | None = None
    etcd: Path | None = None
    origin: str = "../shared/k8s"

    def environment(self) -> dict[str, str]:
        """What the start script reads to run these binaries instead of its own."""
        chosen = {"KUBE_APISERVER": self.apiserver, "ETCD": self.etcd}
        return {name: str(path) for name, path in chosen.items() if path is not None}

    @cached_property
    def version(self) -> str:
        """`v1.37.2`, as the binary says of itself."""
        if self.apiserver is None:
            return FLOOR_VERSION
        said = subprocess.run(
            [str(self.apiserver), "--version"], capture_output=True, text=True, timeout=30
        ).stdout.split()
        return said[-1] if said else "unknown"

    @property
    def minor(self) -> int:
        """1.37 -> 37; 0 when the binary names no release."""
        found = re.match(r"v1\.(\d+)\.", self.version)
        return int(found.group(1)) if found else 0

    def describe(self) -> str:
        return f"real kube-apiserver {self.version} ({self.origin})"


def _script_places(roots: Sequence[Path] | None) -> list[Path]:
    named = os.environ.get("APPGW_SSE_START_APISERVER")
    if named:
        return [Path(named)]
    roots = roots if roots is not None else (Path.cwd(), CHECKOUT)
    return [r.resolve().parent / "shared" / "k8s" / "start-apiserver" for r in roots]


def start_script(roots: Sequence[Path] | None = None) -> Path | None:
    """../shared/k8s/start-apiserver beside this checkout or the working directory (`roots`),
    or the script `APPGW_SSE_START_APISERVER` names."""
    return next((p for p in _script_places(roots) if p.is_file()), None)


def pinned_assets() -> Path | None:
    """The folder `hack/envtest-assets` fills for the release this checkout pins."""
    module = CHECKOUT / "hack" / "envtest" / "go.mod"
    found = _PINNED.search(module.read_text()) if module.is_file() else None
    if found is None:
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "appgw-sse" / "envtest" / found.group(1).removeprefix("v")


def missing(roots: Sequence[Path] | None = None) -> str | None:
    """Why no real API server can start here, naming what is missing (None: one can)."""
    if os.environ.get("APPGW_SSE_KUBE") == "standin":
        return "APPGW_SSE_KUBE=standin"
    script = start_script(roots)
    if script is None:
        return "no " + " or ".join(dict.fromkeys(str(p) for p in _script_places(roots)))
    needed = ["xz", "openssl", "curl"] if _assets() else ["etcd", "xz", "openssl", "curl"]
    absent = [tool for tool in needed if shutil.which(tool) is None]
    return f"{script} needs {', '.join(absent)}, not on PATH" if absent else None


def _assets() -> Path | None:
    named = os.environ.get("KUBEBUILDER_ASSETS")
    if named is not None:
        return Path(named) if named else None
    pinned = pinned_assets()
    complete = pinned is not None and all(
        (pinned / b).is_file() for b in ("kube-apiserver", "etcd")
    )
    return pinned if complete else None


def real_apiserver() -> ApiServerBuild | None:
    """The API server this machine runs for the sandbox and the tests, None when it runs none.
    A KUBEBUILDER_ASSETS folder without both binaries is a mistake to report, not to skip."""
    if missing() is not None:
        return None
    script = start_script()
    assert script is not None
    assets = _assets()
    if assets is None:
        return ApiServerBuild(script)
    absent = [b for b in ("kube-apiserver", "etcd") if not os.access(assets / b, os.X_OK)]
    if absent:
        raise RuntimeError(
            f"KUBEBUILDER_ASSETS={assets} has no executable {' or '.join(absent)}: "
            "run hack/envtest-assets to build them"
        )
    origin = "KUBEBUILDER_ASSETS" if os.environ.get("KUBEBUILDER_ASSETS") else "hack/envtest-assets"
    return ApiServerBuild(script, assets / "kube-apiserver", assets / "etcd", f"{origin}: {assets}")


def stop(pids: Sequence[int]) -> None:
    """Stop what the start script started ([etcd, kube-apiserver]). The API server is killed:
    a current one shutting down gracefully keeps retrying an etcd that is gone and never
    exits, and a sandbox's server has nothing to keep. etcd then stops on SIGTERM."""
    etcd, *apiservers = pids
    for pid, sig in [*((p, signal.SIGKILL) for p in apiservers), (etcd, signal.SIGTERM)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
