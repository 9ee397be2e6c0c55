"""The image as users run it: built from the Dockerfile by hack/image (podman), run as the chart
runs it (uid 10001, read-only root filesystem, a tmpfs on /tmp alone, no capabilities), against
the real API server and the emulator; and the sandbox extra it leaves out."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from appgw_sse import __version__
from tests.support.cluster import REPO
from tests.support.e2e import FORBIDDEN_LOG, POD_ENV, route_manifest, run_args, running_rig

SANDBOX_HINT = "pip install 'appgw-sse-operator[sandbox]'"
# The chart's podSecurityContext and securityContext, and its /tmp emptyDir (16Mi). podman's
# --read-only alone would add writable tmpfs on /tmp, /var/tmp and /run: only /tmp is given.
AS_THE_CHART_RUNS_IT = [
    "--user=10001:10001",
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs=/tmp:rw,size=16m",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    # This machine allows no higher limits (podman's defaults are higher).
    "--ulimit=nofile=4096:4096",
    "--ulimit=nproc=4096:4096",
]


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # runc: crun refuses this machine's hybrid cgroups.
    return subprocess.run(
        ["podman", "--runtime", "runc", *args], capture_output=True, text=True, timeout=timeout
    )


def why_no_containers() -> str | None:
    """Why podman cannot run containers here; None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed"
    if shutil.which("runc") is None:
        return "runc is not installed"
    info = podman("info")
    return f"podman info failed: {info.stderr.strip()[-300:]}" if info.returncode else None


@pytest.fixture(scope="module")
def image() -> str:
    """The image, built by hack/image (cached layers and base: seconds when nothing changed)."""
    reason = why_no_containers()
    if reason:
        if os.environ.get("APPGW_SSE_PODMAN") == "required":
            pytest.fail(f"APPGW_SSE_PODMAN=required but {reason}")
        pytest.skip(f"the image is not built nor run: {reason}")
    built = subprocess.run(
        [str(REPO / "hack" / "image")], capture_output=True, text=True, timeout=1800
    )
    if built.returncode != 0:
        pytest.fail(f"hack/image failed:\n{built.stderr[-3000:]}")
    return built.stdout.strip().splitlines()[-1]


def test_version_as_uid_10001_on_a_read_only_root(image: str) -> None:
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image)
    assert user.stdout.strip() == "10001:10001"  # numeric, so runAsNonRoot can check it
    ran = podman("run", "--rm", *AS_THE_CHART_RUNS_IT, image, "--version")
    assert (ran.returncode, ran.stdout.strip()) == (0, f"appgw-sse {__version__}"), ran.stderr

    # What the operator could write to: /tmp alone.
    probe = "for d in / /opt/appgw-sse /etc /var/tmp /run /tmp; do touch $d/w 2>/dev/null && echo $d; done"
    writable = podman("run", "--rm", *AS_THE_CHART_RUNS_IT, "--entrypoint=sh", image, "-c", probe)
    assert writable.stdout.split() == ["/tmp"], writable.stderr


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {normalized(re.split(r"[^A-Za-z0-9._-]", r, maxsplit=1)[0]) for r in requirements}


def test_the_runtime_dependencies_hold_no_sandbox_or_test_package() -> None:
    # What the Dockerfile installs into the image (checked there too when podman runs).
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    runtime = requirement_names(project["dependencies"])
    assert {"kmock", "trustme"} <= requirement_names(extras["sandbox"])
    assert runtime & requirement_names(extras["sandbox"] + extras["test"]) == set()
    assert "kopf" in runtime  # the list read is the one the operator runs on


def test_image_holds_the_operator_and_its_dependencies_only(image: str) -> None:
    # The virtualenv has no pip of its own; the base's pip reads it.
    freeze = podman(
        "run", "--rm", *AS_THE_CHART_RUNS_IT, "--env=PIP_NO_CACHE_DIR=1", "--entrypoint=pip",
        image, "--python", "/opt/appgw-sse/bin/python", "freeze", "--all",
    )  # fmt: skip
    assert freeze.returncode == 0, freeze.stderr
    installed = dict(
        (normalized(name), version)
        for name, _, version in (line.partition("==") for line in freeze.stdout.splitlines())
    )
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for pin in project["dependencies"]:
        name, _, version = pin.partition("==")
        if version:
            assert installed.get(normalized(name)) == version, f"{pin} is not what the image has"
    left_out = requirement_names(extras["sandbox"] + extras["test"]) - {normalized(project["name"])}
    assert left_out & set(installed) == set()

    # So the demo, in the image, names the extra instead of failing on an import.
    demo = podman("run", "--rm", *AS_THE_CHART_RUNS_IT, image, "demo")
    assert demo.returncode == 1
    assert demo.stderr.splitlines() == [
        f"error: appgw-sse demo needs kmock, trustme: {SANDBOX_HINT}"
    ]


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"appgw-sse-test-{uuid.uuid4().hex[:12]}"
    yield name
    podman("rm", "--force", "--time=0", name)


def test_operator_in_the_image_until_a_route_is_ready_then_sigterm(
    image: str, tmp_path: Path, container_name: str
) -> None:
    with running_rig(tmp_path) as rig:
        kubeconfig = rig.cluster.operator_kubeconfig
        # The chart's service account, mounted read-only as a Secret would be, with what its
        # kubeconfig and the emulator's flags name, each at the same path.
        clusters = yaml.safe_load(kubeconfig.read_text())["clusters"]
        files = [
            kubeconfig,
            *(c["cluster"]["certificate-authority"] for c in clusters if "certificate-authority" in c["cluster"]),
            rig.emulator.ready["ca_bundle"],
            rig.emulator.ready["token_file"],
        ]  # fmt: skip
        started = podman(
            "run", "--detach", f"--name={container_name}", "--network=host",
            *AS_THE_CHART_RUNS_IT,
            *(f"--volume={path}:{path}:ro" for path in files),
            f"--env=KUBECONFIG={kubeconfig}",
            *(f"--env={key}={value}" for key, value in POD_ENV.items()),
            image, *run_args(rig.emulator),
        )  # fmt: skip
        assert started.returncode == 0, started.stderr

        rig.apply(route_manifest("through-the-image"))
        rig.wait_condition("shop", "through-the-image", "True", timeout=90)

        assert podman("kill", "--signal=TERM", container_name).returncode == 0
        exited = podman("wait", container_name, timeout=60)
        logs = podman("logs", container_name)
        output = logs.stdout + logs.stderr
        assert exited.stdout.strip() == "0", f"exit status {exited.stdout.strip()}:\n{output}"
        assert not [line for line in output.splitlines() if FORBIDDEN_LOG.search(line)], output
        rig.check_operator_behaved()  # the API server's audit: no 4xx to the operator


ABSENT = """
import sys

class Absent:
    # As if the sandbox extra were not installed.
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("kmock", "trustme"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from appgw_sse.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("command", "missing"), [("demo", "kmock, trustme"), ("emulator", "trustme")]
)
def test_without_the_sandbox_extra_the_command_names_it(command: str, missing: str) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", ABSENT, command], capture_output=True, text=True, timeout=60
    )
    assert (ran.returncode, ran.stdout) == (1, "")
    assert ran.stderr.splitlines() == [
        f"error: appgw-sse {command} needs {missing}: {SANDBOX_HINT}"
    ]
