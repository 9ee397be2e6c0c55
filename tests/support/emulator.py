"""Fixtures around the project's ARM emulator, served over HTTPS in the test's event loop."""

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from appgw_sse import EXAMPLES
from appgw_sse.emulator.server import RunningEmulator, serve

API = "api-version=2024-05-01"
DATA = Path(__file__).resolve().parent.parent / "data"


def example_gateway() -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / "gateway.json").read_text()))


def sample_gateway() -> dict[str, Any]:
    """azure-sdk-for-python's sample for ApplicationGateways_CreateOrUpdate, as sent."""
    return dict(json.loads((DATA / "application_gateway_sample.json").read_text()))


class Arm:
    """A raw HTTPS client of the emulator: the ARM surface and its /_emulator/ admin API."""

    def __init__(self, running: RunningEmulator, session: aiohttp.ClientSession) -> None:
        self.running, self.session = running, session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        token: str | None = "test-token",
        query: str = API,
    ) -> tuple[int, Any, dict[str, str]]:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        url = f"{self.running.url}{path}" + (f"?{query}" if query else "")
        async with self.session.request(method, url, json=body, headers=all_headers) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None, dict(response.headers)

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        status, payload, _ = await self.call(method, f"/_emulator/{path}", body, query="")
        assert status == 200, payload
        return payload

    async def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        log = await self.admin("GET", "requests")
        return [entry for entry in log if method is None or entry["method"] == method]


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with serve(lro_seconds=0.2, seeds=[example_gateway()]) as running:
        yield running


@pytest.fixture
async def arm(emulator: RunningEmulator) -> AsyncIterator[Arm]:
    context = ssl.create_default_context(cafile=str(emulator.ca_bundle))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield Arm(emulator, session)
