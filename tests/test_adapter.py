"""The gateway adapter: the real azure-mgmt-network async client against the emulator (HTTPS)."""

import copy
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from appgw_sse.adapters.azure_gateway import AzureGateways
from appgw_sse.adapters.credentials import TokenFileCredential
from appgw_sse.config import OperatorConfig
from appgw_sse.core.conditions import Reason
from appgw_sse.core.fields import REQUEST_TIMEOUT, RESPONSE_BUFFERING
from appgw_sse.core.intent import RouteIntent
from appgw_sse.core.planner import Change, Plan, plan_gateway
from appgw_sse.emulator.server import RunningEmulator, token_fingerprint
from appgw_sse.ports import ArmSettings, TerminalGatewayError, TransientGatewayError
from appgw_sse.reconciler import GatewayReconciler
from appgw_sse.routebook import RouteBook
from tests.support.emulator import Arm, example_gateway
from tests.support.fakes import FakeKube
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


def settings(emulator: RunningEmulator, **overrides: Any) -> ArmSettings:
    return ArmSettings(
        **{
            "endpoint": emulator.url,
            "ca_bundle": emulator.ca_bundle,
            "token_file": emulator.token_file,
            "polling_interval": 0.05,
            "sdk_retries": 3,
            "lro_timeout": 30,
            **overrides,
        }
    )


@pytest.fixture
async def gateways(emulator: RunningEmulator) -> AsyncIterator[AzureGateways]:
    adapter = AzureGateways(settings(emulator))
    yield adapter
    await adapter.close()


def write(path: Path | str, text: str) -> None:
    """Rewrite a small file (synchronously: it takes no time worth yielding for)."""
    Path(path).write_text(text)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("token-1\n")
    return path


@pytest.fixture
async def file_gateways(
    emulator: RunningEmulator, token_file: Path
) -> AsyncIterator[AzureGateways]:
    """The adapter with a token file the test rewrites."""
    adapter = AzureGateways(settings(emulator, token_file=token_file))
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


async def throttle(arm: Arm, count: int, code: str) -> None:
    """The next `count` PUTs are answered 429 with `code` and Retry-After 1."""
    fault = {"method": "PUT", "status": 429, "count": count, "code": code}
    await arm.admin("POST", "faults", fault | {"headers": {"Retry-After": "1"}})


async def test_short_429_storm_is_absorbed_by_sdk_retries(
    gateways: AzureGateways, arm: Arm
) -> None:
    await throttle(arm, 2, "RetryableErrorDueToAnotherOperation")
    plan = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    await gateways.apply(plan)
    assert [p["status"] for p in await arm.requests("PUT")] == [429, 429, 200]


async def test_long_429_storm_is_transient_throttled_with_retry_after(
    gateways: AzureGateways, arm: Arm
) -> None:
    await throttle(arm, 10, "TooManyRequests")
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
    ("fault", "code", "awaited"),
    [
        (
            {"method": "PUT", "status": 403, "code": "AuthorizationFailed"},
            "AuthorizationFailed",
            "ARM answered 403 for gateway agw-shop-prod: Injected fault; waiting for the "
            "identity's role assignment on the gateway (assignments take minutes to propagate)",
        ),
        (
            {"method": "GET", "status": 401, "code": "InvalidAuthenticationToken"},
            "InvalidAuthenticationToken",
            "ARM answered 401 for gateway agw-shop-prod: Injected fault; waiting for a token ARM "
            "accepts",
        ),
    ],
)
async def test_auth_failures_are_transient_and_say_what_is_awaited(
    gateways: AzureGateways, arm: Arm, fault: dict, code: str, awaited: str
) -> None:
    plan = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    await arm.admin("POST", "faults", fault)
    with pytest.raises(TransientGatewayError) as caught:
        await gateways.apply(plan)
    assert (caught.value.reason, caught.value.code) == (Reason.AZURE_AUTH_FAILED, code)
    assert caught.value.message == awaited and caught.value.delay == 5
    await gateways.apply(plan)  # the identity got fixed: the retry converges


async def test_auth_backoff_doubles_to_a_cap_per_method_and_resets_on_success(
    gateways: AzureGateways, arm: Arm
) -> None:
    plan = plan_gateway(GW, [route()], (await gateways.get(GW)).document)
    await arm.admin(
        "POST",
        "faults",
        {"method": "PUT", "status": 403, "count": 7, "code": "AuthorizationFailed"},
    )
    delays = []
    for _ in range(7):
        with pytest.raises(TransientGatewayError) as caught:
            await gateways.apply(plan)  # each attempt's GETs succeed: reading is allowed
        delays.append(caught.value.delay)
    assert delays == [5, 10, 20, 40, 60, 60, 60]
    await gateways.apply(plan)
    reverted = plan_gateway(GW, [], (await gateways.get(GW)).document, plan.ledger)
    await arm.admin(
        "POST", "faults", {"method": "PUT", "status": 403, "code": "AuthorizationFailed"}
    )
    with pytest.raises(TransientGatewayError) as caught:
        await gateways.apply(reverted)
    assert caught.value.delay == 5  # the success reset the wait


@pytest.mark.parametrize("content", ["", "\n"])
async def test_an_empty_token_file_waits_for_a_token_instead_of_sending_none(
    file_gateways: AzureGateways, arm: Arm, token_file: Path, content: str
) -> None:
    write(token_file, content)
    with pytest.raises(TransientGatewayError) as caught:
        await file_gateways.get(GW)
    assert (caught.value.reason, caught.value.code) == (
        Reason.AZURE_AUTH_FAILED,
        "CredentialUnavailable",
    )
    assert f"token file {token_file} is empty" in caught.value.message
    assert caught.value.message.endswith("waiting for one to become available")
    assert caught.value.delay == 5
    assert await arm.requests() == []  # nothing was sent without a token
    write(token_file, "token-2\n")
    await file_gateways.get(GW)
    assert [r["token"] for r in await arm.requests()] == [token_fingerprint("token-2")]


async def test_a_missing_token_file_waits_for_it(
    file_gateways: AzureGateways, token_file: Path
) -> None:
    os.unlink(token_file)
    with pytest.raises(TransientGatewayError) as caught:
        await file_gateways.get(GW)
    assert caught.value.reason is Reason.AZURE_AUTH_FAILED
    assert f"token file {token_file}: No such file or directory" in caught.value.message
    write(token_file, "token-2")
    await file_gateways.get(GW)


async def test_the_request_after_a_token_rotation_carries_the_new_token(
    file_gateways: AzureGateways, arm: Arm, token_file: Path
) -> None:
    await file_gateways.get(GW)
    write(token_file, "token-2\n")  # same size, likely the same mtime tick
    await file_gateways.get(GW)
    rotated = f"{token_file}.new"
    write(rotated, "token-three")
    os.replace(rotated, token_file)  # rotation by rename, as Kubernetes projects tokens
    await file_gateways.get(GW)
    assert [r["token"] for r in await arm.requests("GET")] == [
        token_fingerprint("token-1"),
        token_fingerprint("token-2"),
        token_fingerprint("token-three"),
    ]


async def test_validation_error_is_terminal_with_arm_code(gateways: AzureGateways) -> None:
    document = (await gateways.get(GW)).document
    plan = Plan(
        gateway_id=GW,
        ledger=plan_gateway(GW, [], document).ledger,
        outcomes={},
        changes=(
            Change(REQUEST_TIMEOUT.at("notifications-http"), before=30, after=90000, kind="apply"),
        ),
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
        changes=(Change(RESPONSE_BUFFERING.at(), before=True, after=False, kind="apply"),),
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


async def test_a_token_rewritten_within_one_timestamp_tick_is_reread(token_file: Path) -> None:
    credential = TokenFileCredential(token_file)
    assert (await credential.get_token("scope")).token == "token-1"
    before = os.stat(token_file)
    write(token_file, "token-2\n")  # same size, in place (same inode)
    os.utime(token_file, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    assert (await credential.get_token("scope")).token == "token-2"


async def test_an_unchanged_token_file_costs_a_stat_not_a_read(
    token_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_minute_ago = time.time_ns() - 60_000_000_000
    os.utime(token_file, ns=(a_minute_ago, a_minute_ago))
    credential = TokenFileCredential(token_file)
    await credential.get_token("scope")
    reads = []
    read_text = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda *a, **k: reads.append(1) or read_text(*a, **k))
    for _ in range(20):
        token = await credential.get_token("scope")
    assert (token.token, reads) == ("token-1", [])
    # azure-core's policy asks again once the claimed expiry has passed: at once.
    assert token.expires_on <= time.time()


async def configured(kube: FakeKube, holds: Callable[[dict[str, str]], bool]) -> dict[str, str]:
    """The first GatewayConfigured condition written from now on for which `holds`."""
    seen, found = len(kube.statuses), []

    def check() -> bool:
        nonlocal seen
        found.extend(
            c
            for status in kube.statuses[seen:]
            for c in status["conditions"]
            if c["type"] == "GatewayConfigured" and holds(c)
        )
        seen = len(kube.statuses)
        return bool(found)

    await kube.wait_until(check)
    return dict(found[0])


ROUTE_BODY = {
    "metadata": {
        "namespace": "shop",
        "name": "notifications",
        "uid": "u1",
        "generation": 1,
        "finalizers": ["sse.appgw.dev/finalizer"],
    },
    "spec": {
        "gateway": {"id": GW, "backendSettings": ["notifications-http"]},
        "idleInterval": "45s",
    },
}


@pytest.mark.parametrize(
    ("broken", "awaited"),
    [
        (
            "403 on PUT",
            "the identity's role assignment on the gateway (assignments take minutes to propagate)",
        ),
        ("empty token file", "one to become available"),
    ],
)
async def test_the_operator_converges_once_credentials_are_fixed_without_a_resync(
    emulator: RunningEmulator, arm: Arm, token_file: Path, broken: str, awaited: str
) -> None:
    kube = FakeKube()
    adapter = AzureGateways(settings(emulator, token_file=token_file, auth_retry=0.01))
    config = OperatorConfig(allowed_gateways=("*",), debounce=0.01, resync=3600)
    book = RouteBook(kube, config.allowed_gateways)
    reconciler = GatewayReconciler(config, book, adapter, kube)
    if broken == "403 on PUT":
        await arm.admin(
            "POST",
            "faults",
            {"method": "PUT", "status": 403, "count": 3, "code": "AuthorizationFailed"},
        )
    else:
        write(token_file, "")
    try:
        await book.observe(ROUTE_BODY)
        waiting = await configured(kube, lambda c: c["reason"] == "AzureAuthFailed")
        assert waiting["status"] == "False"
        assert waiting["message"].endswith(f"waiting for {awaited}; retrying in 0.01s")
        if broken == "empty token file":
            write(token_file, "token-2")  # fixed out of band while the operator waits
        applied = await configured(kube, lambda c: c["status"] == "True")
    finally:
        await reconciler.close()
    assert applied["reason"] == "Applied"
    assert [reason for _, reason, _ in kube.events].count("AzureAuthFailed") == 1  # not per retry
    failed_puts = [r for r in await arm.requests("PUT") if r["status"] == 403]
    assert len(failed_puts) == (3 if broken == "403 on PUT" else 0)
    stored = (await arm.call("GET", GW))[1]
    assert stored["properties"]["globalConfiguration"]["enableResponseBuffering"] is False


@pytest.mark.parametrize("name", [".", "..", "agw?api-version=1", "agw%2Fother", "agw\n"])
async def test_a_gateway_id_the_http_client_would_rewrite_is_refused_before_any_request(
    emulator: RunningEmulator, arm: Arm, name: str
) -> None:
    kube = FakeKube()
    config = OperatorConfig(allowed_gateways=("*",), debounce=0.01, resync=3600)
    book = RouteBook(kube, config.allowed_gateways)
    reconciler = GatewayReconciler(config, book, AzureGateways(settings(emulator)), kube)
    body = copy.deepcopy(ROUTE_BODY)
    body["spec"]["gateway"]["id"] = GW.rsplit("/", 1)[0] + "/" + name
    try:
        await book.observe(body)
    finally:
        await reconciler.close()
    [status] = kube.statuses
    accepted = next(c for c in status["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    assert accepted["message"].startswith("spec.gateway.id: gateway name ")
    assert await arm.requests() == []
