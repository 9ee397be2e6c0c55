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
