"""Go test drivers under tests/gitops/ (each its own module, go.mod and go.sum committed): built
once per content and cached in ${XDG_CACHE_HOME:-~/.cache}/appgw-sse/go/, so only the first run
on a machine pays the build (several minutes cold for Flux's libraries)."""

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import cluster as clusters

PROGRAMS = Path(__file__).resolve().parents[1] / "gitops"


def program(name: str) -> Path:
    """The built binary of tests/gitops/NAME; the test is skipped on a machine without Go."""
    source = PROGRAMS / name
    go = shutil.which("go")
    if go is None:
        pytest.skip(f"tests/gitops/{name} needs Go (https://go.dev/dl/) to build")
    # Keyed by go.sum (the pinned dependencies) and by the program's own files.
    digest = hashlib.sha256()
    for path in sorted(p for p in source.iterdir() if p.suffix in (".go", ".mod", ".sum")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    cache = Path(clusters._cache_home()) / "appgw-sse" / "go"
    binary = cache / f"{name}-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions build it once
        if not binary.exists():
            partial = binary.with_suffix(".partial")
            built = subprocess.run(
                [go, "build", "-trimpath", "-mod=readonly", "-o", str(partial), "."],
                cwd=source,
                capture_output=True,
                text=True,
                timeout=1800,
                # The machine's Go builds it (no toolchain download): the pins must suit it.
                env=dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-buildvcs=false"),
            )
            if built.returncode != 0:
                pytest.fail(f"building tests/gitops/{name} failed:\n{built.stderr}")
            partial.rename(binary)
    return binary
