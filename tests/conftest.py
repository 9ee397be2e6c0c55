import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci")


@pytest.fixture
def gateway_id() -> str:
    return (
        "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg-shop-prod"
        "/providers/Microsoft.Network/applicationGateways/agw-shop-prod"
    )


pytest_plugins = ["tests.support.emulator", "tests.support.e2e"]


def pytest_report_header() -> str:
    from tests.support.cluster import describe

    return f"end-to-end Kubernetes API: {describe()}"


# Tests that use the suite's Kubernetes API (on the stand-in: under no identity of their own).
API_FIXTURES = frozenset({"rig", "cluster"})
_on_the_api: set[str] = set()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if API_FIXTURES & set(getattr(item, "fixturenames", ())):
        _on_the_api.add(item.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """On the stand-in, say at the end (not only in the header) which checks did not run."""
    from tests.support.cluster import not_run_on_standin

    stats = terminalreporter.stats
    reasons = [
        str(report.longrepr[2])
        for report in stats.get("skipped", [])
        if isinstance(report.longrepr, tuple)
    ]
    ran = [
        report
        for report in (*stats.get("passed", []), *stats.get("failed", []))
        if report.when == "call" and report.nodeid in _on_the_api
    ]
    line = not_run_on_standin(reasons, bool(ran))
    if line is not None:
        terminalreporter.write_sep("-", "stand-in Kubernetes API")
        terminalreporter.write_line(line)
