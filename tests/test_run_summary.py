"""The end of a run on the stand-in says which checks could not run and why."""

import os
import subprocess
import sys

from tests.support.cluster import REPO

HEADING = "stand-in Kubernetes API"


def pytest_on_standin(*selection: str) -> list[str]:
    """A pytest run of `selection` on the stand-in: its output's lines."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *selection],
        cwd=REPO,
        env={**os.environ, "APPGW_SSE_KUBE": "standin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_the_end_of_a_standin_run_names_what_did_not_run_and_why() -> None:
    lines = pytest_on_standin(
        "tests/test_rbac.py",  # two tests, one per namespace
        "tests/test_cli_run.py::test_a_missing_operator_namespace_names_pod_namespace",
        "tests/test_operator_e2e.py::test_dry_run_plans_and_never_puts",  # runs on the stand-in
    )
    heading = next(i for i, line in enumerate(lines) if HEADING in line)
    assert lines[heading + 1] == (
        "no real API server (APPGW_SSE_KUBE=standin); not run: the RBAC table, refusing to "
        "start without the operator's namespace (3 tests); the tests that ran on the stand-in "
        "accepted any identity (it authenticates nobody: the operator ran without its RBAC)"
    )


def test_skipped_checks_alone_claim_no_identity_and_a_run_without_any_says_nothing() -> None:
    lines = pytest_on_standin("tests/test_rbac.py", "tests/test_duration.py")
    heading = next(i for i, line in enumerate(lines) if HEADING in line)
    assert lines[heading + 1] == (
        "no real API server (APPGW_SSE_KUBE=standin); not run: the RBAC table (2 tests)"
    )
    lines = pytest_on_standin("tests/test_duration.py")
    assert not [line for line in lines if HEADING in line]
