"""The gateway adapter: the real azure-mgmt-network async client against the emulator (HTTPS)."""

import copy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appgw_sse.adapters.azure_gateway import ArmSettings, AzureGateways
from appgw_sse.adapters.credentials import TokenFileCredential
from appgw_sse.adapters.errors import TerminalGatewayError, TransientGatewayError
from appgw_sse.core.planner import Change, Plan, Reason, RouteIntent, plan_gateway
from appgw_sse.emulator.server import RunningEmulator
from tests.support.emulator import Arm, example_gateway
from tests.support.gateways import without_owned_fields

GW = example_gateway()["id"]
VOLATILE = ("etag", "provisioningState", "resourceGuid", "operationalState", "id")


def _stable(value: object) -> object:
    """The document without fields ARM recomputes on every write."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def route(settings: tuple[str, ...] = ("notifications-http",), idle: int = 45) -> RouteIntent:
    return RouteIntent(
        key="shop/notifications",
        gateway_id=GW,
        backend_settings=settings,
        request_timeout=idle + 23,
        idle_seconds=idle,
        disable_buffering=True,
    )


@pytest.fixture
async def gateways(emulator: RunningEmulator) -> AsyncIterator[AzureGateways]:
    adapter = AzureGateways(ArmSettings(
        endpoint=emulator.url, ca_bundle=emulator.ca_bundle, token_file=emulator.token_file,
        polling_interval=0.05, sdk_retries=3, lro_timeout=30,
    ))  # fmt: skip
    yield adapter
    await adapter.close()


async def test_apply_changes_only_owned_fields_in_one_put(
    gateways: AzureGateways, arm: Arm
) -> None:
    before = await gateways.get(GW.lower())
    plan = plan_gateway(GW, [route()], before.document)
    assert len(plan.changes) == 2
    result = await gateways.apply(plan)
    puts = await arm.requests("PUT")
    assert len(puts) == 1 and puts[0]["ifMatch"] == before.etag
    assert result["properties"]["globalConfiguration"]["enableResponseBuffering"] is False
    assert result["properties"]["globalConfiguration"]["enableRequestBuffering"] is True
    stored = (await gateways.get(GW)).document
    assert _stable(without_owned_fields(stored)) == _stable(without_owned_fields(before.document))
    replan = plan_gateway(GW, [route()], stored, plan.ledger)
    assert replan.changes == ()


async def test_a_writer_before_our_fresh_read_keeps_their_change(
    gateways: AzureGateways, arm: Arm
) -> None:
    plan = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    _, theirs, _ = await arm.call("GET", GW)
    theirs = copy.deepcopy(theirs)
    theirs["tags"]["owner"] = "someone-else"
    theirs["properties"]["autoscaleConfiguration"]["maxCapacity"] = 20
    await arm.call("PUT", GW, theirs)
    await gateways.apply(plan)  # waits for their Updating gateway, then re-reads
    stored = (await gateways.get(GW)).document
    assert stored["tags"]["owner"] == "someone-else"
    assert stored["properties"]["autoscaleConfiguration"]["maxCapacity"] == 20
    assert stored["properties"]["globalConfiguration"]["enableResponseBuffering"] is False


async def test_a_writer_between_our_read_and_put_gets_412_then_converges(
    gateways: AzureGateways, arm: Arm
) -> None:
    await arm.admin(
        "POST",
        "faults",
        {"target": "interleave", "method": "PUT", "patch": {"tags": {"owner": "racer"}}},
    )
    plan = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    with pytest.raises(TransientGatewayError) as caught:
        await gateways.apply(plan)
    assert caught.value.code == "PreconditionFailed"
    assert [p["status"] for p in await arm.requests("PUT")] == [412]  # no blind resend
    await gateways.apply(plan)
    stored = (await gateways.get(GW)).document
    assert stored["tags"]["owner"] == "racer"
    assert stored["properties"]["globalConfiguration"]["enableResponseBuffering"] is False


async def test_stale_plan_is_refused_before_any_put(gateways: AzureGateways, arm: Arm) -> None:
    plan = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    _, theirs, _ = await arm.call("GET", GW)
    theirs["properties"]["backendHttpSettingsCollection"][0]["properties"]["requestTimeout"] = 31
    await arm.call("PUT", GW, theirs)
    with pytest.raises(TransientGatewayError) as caught:
        await gateways.apply(plan)
    assert caught.value.code == "StalePlan"
    assert len(await arm.requests("PUT")) == 1  # only theirs


async def test_short_429_storm_is_absorbed_by_sdk_retries(
    gateways: AzureGateways, arm: Arm
) -> None:
    await arm.admin(
        "POST",
        "faults",
        {
            "method": "PUT",
            "status": 429,
            "count": 2,
            "code": "RetryableErrorDueToAnotherOperation",
            "headers": {"Retry-After": "1"},
        },
    )
    plan = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    await gateways.apply(plan)
    assert [p["status"] for p in await arm.requests("PUT")] == [429, 429, 200]


async def test_long_429_storm_is_transient_throttled_with_retry_after(
    gateways: AzureGateways, arm: Arm
) -> None:
    await arm.admin(
        "POST",
        "faults",
        {
            "method": "PUT",
            "status": 429,
            "count": 10,
            "code": "TooManyRequests",
            "headers": {"Retry-After": "1"},
        },
    )
    plan = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    with pytest.raises(TransientGatewayError) as caught:
        await gateways.apply(plan)
    assert caught.value.reason is Reason.THROTTLED and caught.value.delay == 1.0
    assert len(await arm.requests("PUT")) == 4  # first try + 3 bounded SDK retries


@pytest.mark.parametrize(
    ("fault", "reason", "code"),
    [
        (
            {"method": "PUT", "status": 409, "code": "AnotherOperationInProgress", "count": 9},
            Reason.APPLYING,
            "AnotherOperationInProgress",
        ),
        (
            {
                "target": "lro",
                "outcome": "Canceled",
                "code": "CanceledAndSupersededDueToAnotherOperation",
            },
            Reason.AZURE_ERROR,
            "CanceledAndSupersededDueToAnotherOperation",
        ),
        (
            {"target": "lro", "code": "InternalServerError"},
            Reason.AZURE_ERROR,
            "InternalServerError",
        ),
        (
            {"method": "PUT", "status": 500, "code": "InternalServerError", "count": 9},
            Reason.AZURE_ERROR,
            "InternalServerError",
        ),
    ],
)
async def test_transient_faults(
    gateways: AzureGateways, arm: Arm, fault: dict, reason: Reason, code: str
) -> None:
    await arm.admin("POST", "faults", fault)
    plan = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    with pytest.raises(TransientGatewayError) as caught:
        await gateways.apply(plan)
    assert (caught.value.reason, caught.value.code) == (reason, code)
    await arm.admin("DELETE", "faults")
    retry = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    await gateways.apply(retry)  # converges once the fault is gone


async def test_poll_failures_are_retried_by_the_sdk(gateways: AzureGateways, arm: Arm) -> None:
    await arm.admin("POST", "config", {"lroSeconds": 0.3})
    await arm.admin(
        "POST", "faults", {"target": "poll", "status": 503, "code": "ServerBusy", "count": 2}
    )
    plan = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    await gateways.apply(plan)
    polls = [r for r in await arm.requests("GET") if "/operations/" in r["path"]]
    assert [p["status"] for p in polls][:2] == [503, 503]


@pytest.mark.parametrize(
    ("fault", "reason", "code"),
    [
        (
            {"method": "PUT", "status": 403, "code": "AuthorizationFailed"},
            Reason.AZURE_AUTH_FAILED,
            "AuthorizationFailed",
        ),
        (
            {"method": "GET", "status": 401, "code": "InvalidAuthenticationToken"},
            Reason.AZURE_AUTH_FAILED,
            "",
        ),
    ],
)
async def test_terminal_faults(
    gateways: AzureGateways, arm: Arm, fault: dict, reason: Reason, code: str
) -> None:
    plan = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    await arm.admin("POST", "faults", fault)
    with pytest.raises(TerminalGatewayError) as caught:
        await gateways.apply(plan)
    assert caught.value.reason is reason
    assert code in caught.value.code


async def test_validation_error_is_terminal_with_arm_code(gateways: AzureGateways) -> None:
    document = (await gateways.get(GW)).document
    plan = Plan(
        gateway_id=GW,
        ledger=plan_gateway(GW, [], document).ledger,
        outcomes={},
        changes=(Change(setting="notifications-http", before=30, after=90000, kind="apply"),),
    )
    with pytest.raises(TerminalGatewayError) as caught:
        await gateways.apply(plan)
    assert caught.value.code == "ApplicationGatewayBackendHttpSettingsInvalidRequestTimeout"


async def test_v1_sku_rejection_maps_to_unsupported_sku(gateways: AzureGateways, arm: Arm) -> None:
    _, document, _ = await arm.call("GET", GW)
    document["properties"]["sku"] = {"name": "Standard_Medium", "tier": "Standard", "capacity": 2}
    del document["properties"]["globalConfiguration"]
    await arm.admin("POST", "gateways", document)
    plan = Plan(
        gateway_id=GW,
        ledger=plan_gateway(GW, [], document).ledger,
        outcomes={},
        changes=(Change(setting=None, before=True, after=False, kind="apply"),),
    )
    with pytest.raises(TerminalGatewayError) as caught:
        await gateways.apply(plan)
    assert caught.value.reason is Reason.UNSUPPORTED_SKU


async def test_missing_gateway_is_terminal_not_found(gateways: AzureGateways) -> None:
    with pytest.raises(TerminalGatewayError) as caught:
        await gateways.get(GW.replace("agw-shop-prod", "gone"))
    assert (caught.value.reason, caught.value.code) == (
        Reason.GATEWAY_NOT_FOUND,
        "ResourceNotFound",
    )


async def test_unreachable_endpoint_is_transient(tmp_path: Path, emulator: RunningEmulator) -> None:
    adapter = AzureGateways(
        ArmSettings(
            endpoint="https://127.0.0.1:9",
            ca_bundle=emulator.ca_bundle,
            token_file=emulator.token_file,
            sdk_retries=0,
        )
    )
    try:
        with pytest.raises(TransientGatewayError):
            await adapter.get(GW)
    finally:
        await adapter.close()


async def test_token_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    credential = TokenFileCredential(token)
    assert (await credential.get_token("scope")).token == "first"
    token.write_text("second\n")
    import os

    os.utime(token, (1, 1))  # a distinct mtime even within the filesystem's time resolution
    assert (await credential.get_token("scope")).token == "second"
