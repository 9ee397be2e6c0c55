"""Print how the gateway adapter ends under each emulated ARM fault, and how long it took.

    python benchmarks/fault_table.py [--lro-seconds 1]

Each row: a fresh emulator seeded with the example gateway, one fault injected through the admin
API, one plan applied through the real SDK. Outcome is `applied` or the error class and code.
"""

import argparse
import asyncio
import json
import ssl
import time
from typing import Any

import aiohttp

from appgw_sse import EXAMPLES
from appgw_sse.adapters.azure_gateway import AzureGateways
from appgw_sse.core.intent import RouteIntent
from appgw_sse.core.planner import plan_gateway
from appgw_sse.emulator.server import serve
from appgw_sse.ports import ArmSettings, GatewayError

FAULTS: list[tuple[str, dict[str, Any] | None]] = [
    ("none", None),
    (
        "429 x2, Retry-After 1",
        {
            "method": "PUT",
            "status": 429,
            "count": 2,
            "code": "RetryableErrorDueToAnotherOperation",
            "headers": {"Retry-After": "1"},
        },
    ),
    (
        "429 x10, Retry-After 1",
        {
            "method": "PUT",
            "status": 429,
            "count": 10,
            "code": "TooManyRequests",
            "headers": {"Retry-After": "1"},
        },
    ),
    (
        "409 AnotherOperationInProgress",
        {"method": "PUT", "status": 409, "count": 9, "code": "AnotherOperationInProgress"},
    ),
    (
        "412 (writer between GET and PUT)",
        {"target": "interleave", "method": "PUT", "patch": {"tags": {"owner": "racer"}}},
    ),
    ("500 x9 on PUT", {"method": "PUT", "status": 500, "count": 9, "code": "InternalServerError"}),
    ("503 x2 on poll", {"target": "poll", "status": 503, "count": 2, "code": "ServerBusy"}),
    ("LRO Failed", {"target": "lro", "code": "InternalServerError"}),
    (
        "LRO Canceled (superseded)",
        {
            "target": "lro",
            "outcome": "Canceled",
            "code": "CanceledAndSupersededDueToAnotherOperation",
        },
    ),
    ("400 validation", {"method": "PUT", "status": 400, "code": "InvalidRequestFormat"}),
    ("403 AuthorizationFailed", {"method": "PUT", "status": 403, "code": "AuthorizationFailed"}),
    ("404 gateway gone", {"method": "GET", "status": 404, "code": "ResourceNotFound", "count": 9}),
    ("PUT answers after 3 s", {"method": "PUT", "status": 0, "delay": 3}),
]


async def row(name: str, fault: dict[str, Any] | None, lro_seconds: float) -> str:
    gateway = json.loads((EXAMPLES / "gateway.json").read_text())
    async with serve(lro_seconds=lro_seconds, seeds=[gateway]) as emulator:
        context = ssl.create_default_context(cafile=str(emulator.ca_bundle))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            if fault:
                await http.post(f"{emulator.url}/_emulator/faults", json=fault)
        adapter = AzureGateways(
            ArmSettings(
                endpoint=emulator.url,
                ca_bundle=emulator.ca_bundle,
                token_file=emulator.token_file,
                polling_interval=0.2,
            )
        )
        intent = RouteIntent(
            key="shop/notifications",
            gateway_id=gateway["id"],
            idle_seconds=45,
            backend_settings=("notifications-http",),
            request_timeout=68,
            disable_buffering=True,
        )
        started = time.perf_counter()
        try:
            snapshot = await adapter.get(gateway["id"])
            await adapter.apply(plan_gateway(gateway["id"], [intent], snapshot.document))
            outcome = "applied"
        except GatewayError as exc:
            outcome = f"{type(exc).__name__}({exc.reason.value}, {exc.code or '-'})"
        finally:
            await adapter.close()
        elapsed = time.perf_counter() - started
        puts = sum(1 for r in emulator.app.requests if r["method"] == "PUT")
        return f"| {name} | {outcome} | {puts} | {elapsed:.2f} |"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lro-seconds", type=float, default=1.0)
    args = parser.parse_args()
    print(f"LRO {args.lro_seconds}s, SDK retries 3, polling interval 0.2s")
    print("| fault | outcome | PUTs sent | seconds |\n| --- | --- | --- | --- |")
    for name, fault in FAULTS:
        print(await row(name, fault, args.lro_seconds), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
