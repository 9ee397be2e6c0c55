"""The emulator's data plane: routing, response buffering, requestTimeout and the end of open
connections after a configuration PUT, each read from the gateway document at that moment."""

import asyncio
import contextlib
import copy
import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from appgw_sse import EXAMPLES
from appgw_sse.emulator.dataplane import (
    DEFAULT_DRAIN_SECONDS,
    drain_seconds,
    request_timeout,
    response_buffering,
    route,
)
from appgw_sse.emulator.server import RunningEmulator
from tests.support.emulator import Arm, example_gateway
from tests.support.gateways import gateway_document
from tests.support.sse_servers import behind_gateway, sse_server


def setting_props(document: dict[str, Any]) -> dict[str, Any]:
    return dict(document["properties"]["backendHttpSettingsCollection"][0]["properties"])


def stored(running: RunningEmulator) -> dict[str, Any]:
    """The one gateway document as the emulator holds it now (edits apply at once)."""
    (document,) = running.emulator.gateways.values()
    return document


async def read_until_end(response: aiohttp.ClientResponse) -> tuple[list[float], str, float]:
    """Arrival times of each read, how the body ended (eof, or cut without its end) and when,
    in seconds since the call."""
    start, arrivals = time.monotonic(), []
    end = "eof"
    try:
        while await response.content.readany():
            arrivals.append(time.monotonic() - start)
    except aiohttp.ClientPayloadError:
        end = "cut"
    return arrivals, end, time.monotonic() - start


# -- reading the document -------------------------------------------------------------------


def test_route_follows_the_first_rule_and_its_path_map() -> None:
    example = example_gateway()
    # rule-https (priority 100) is path-based: /events/* goes to notifications, else api.
    assert route(example, "/events/orders") == ("pool-notifications", "notifications-http")
    assert route(example, "/chat/stream/1") == ("pool-chat", "chat-http")
    assert route(example, "/") == ("pool-api", "api-http")
    basic = gateway_document(
        {"a": 5, "b": 6}, pools={"p": [], "q": []}, rules=[("a", "p"), ("b", "q")]
    )
    rules = basic["properties"]["requestRoutingRules"]
    assert route(basic, "/x") == ("p", "a")
    rules[1]["properties"]["priority"] = 10  # a lower priority number is evaluated first
    assert route(basic, "/x") == ("q", "b")
    rules[1]["properties"].pop("backendAddressPool")  # e.g. a redirect
    assert route(basic, "/x") is None


def test_settings_read_from_the_document() -> None:
    document = gateway_document({"s": None}, buffering=None)
    assert request_timeout(document, "s") == 30  # what ARM assumes when omitted
    assert response_buffering(document)  # on unless turned off
    assert drain_seconds(document, "s") == DEFAULT_DRAIN_SECONDS == 30
    setting = document["properties"]["backendHttpSettingsCollection"][0]["properties"]
    setting["connectionDraining"] = {"enabled": True, "drainTimeoutInSec": 7}
    assert drain_seconds(document, "s") == 7
    setting["connectionDraining"]["enabled"] = False
    assert drain_seconds(document, "s") == 30
    document["properties"]["globalConfiguration"] = {"enableResponseBuffering": False}
    assert not response_buffering(document)


# -- serving traffic ------------------------------------------------------------------------


async def test_buffering_off_passes_each_event_as_it_comes() -> None:
    async with (
        sse_server() as base,
        behind_gateway(base) as (_, frontend),
        aiohttp.ClientSession() as session,
        session.get(f"{frontend}/live?count=5&interval=0.2") as response,
    ):
        assert response.headers["Content-Type"] == "text/event-stream"
        arrivals, end, _ = await read_until_end(response)
    assert end == "eof" and len(arrivals) == 5  # one read per event, 0.2 s apart
    assert arrivals[-1] - arrivals[0] >= 0.6


async def test_buffering_on_holds_the_response_until_it_ends() -> None:
    async with (
        sse_server() as base,
        behind_gateway(base, buffering=True) as (_, frontend),
        aiohttp.ClientSession() as session,
    ):
        start = time.monotonic()
        async with session.get(f"{frontend}/live?count=5&interval=0.2") as response:
            headers_after = time.monotonic() - start
            body = await response.read()
    assert headers_after >= 0.7  # nothing, not even the headers, before the backend ended
    assert body.count(b"data: ") == 5


async def test_buffering_on_flushes_when_the_buffer_fills() -> None:
    async with (
        sse_server() as base,
        behind_gateway(base, buffering=True, buffer_bytes=1000) as (_, frontend),
        aiohttp.ClientSession() as session,
        session.get(f"{frontend}/live?pad=200&interval=0.05") as response,
    ):
        sizes = []
        async with asyncio.timeout(5):
            while len(sizes) < 3:
                sizes.append(len(await response.content.readany()))
    assert all(size >= 1000 for size in sizes)  # whole buffers, not single events


async def test_turning_buffering_off_mid_stream_releases_what_was_held() -> None:
    async with (
        sse_server() as base,
        behind_gateway(base, buffering=True) as (running, frontend),
        aiohttp.ClientSession() as session,
    ):
        request = asyncio.ensure_future(session.get(f"{frontend}/live?interval=0.1"))
        with pytest.raises(TimeoutError):  # held: no headers while buffering is on
            await asyncio.wait_for(asyncio.shield(request), 0.6)
        stored(running)["properties"]["globalConfiguration"]["enableResponseBuffering"] = False
        async with asyncio.timeout(2):
            response = await request
            held = await response.content.readany()
            assert held.count(b"data: ") >= 3  # what was held, at once
            following = await response.content.readany()
            assert 1 <= following.count(b"data: ") < held.count(b"data: ")  # then live
        response.release()


async def test_a_silent_backend_is_cut_after_the_request_timeout() -> None:
    async with (
        sse_server() as base,
        behind_gateway(base, request_timeout=1) as (_, frontend),
        aiohttp.ClientSession() as session,
        session.get(f"{frontend}/quiet") as response,
    ):
        assert response.status == 200
        arrivals, end, ended = await read_until_end(response)
    assert end == "cut"  # the connection dropped without the body's last chunk
    assert arrivals  # the events before the silence came through
    assert 0.9 <= ended - arrivals[-1] < 2.5


async def test_no_headers_within_the_request_timeout_is_504() -> None:
    async with (
        sse_server() as base,
        behind_gateway(base, request_timeout=1) as (_, frontend),
        aiohttp.ClientSession() as session,
    ):
        start = time.monotonic()
        async with session.get(f"{frontend}/live?delay=3") as response:
            assert response.status == 504
        assert 0.9 <= time.monotonic() - start < 2.5


async def test_a_request_timeout_raised_mid_stream_applies_from_then_on() -> None:
    async with (
        sse_server() as base,
        behind_gateway(base, request_timeout=1) as (running, frontend),
        aiohttp.ClientSession() as session,
        session.get(f"{frontend}/quiet?count=1") as response,
    ):
        assert await response.content.readany()
        last_byte = time.monotonic()
        stored(running)["properties"]["backendHttpSettingsCollection"][0]["properties"][
            "requestTimeout"
        ] = 2
        _, end, _ = await read_until_end(response)
        silence = time.monotonic() - last_byte
    assert end == "cut" and 1.9 <= silence < 3.5


async def test_a_put_ends_open_streams_after_the_draining_timeout() -> None:
    async with (
        sse_server() as base,
        behind_gateway(base, drain=1) as (running, frontend),
        aiohttp.ClientSession() as session,
        session.get(f"{frontend}/live?interval=0.1") as response,
    ):
        assert await response.content.readany()
        context = ssl.create_default_context(cafile=str(running.ca_bundle))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as https:
            arm = Arm(running, https)
            document = stored(running)
            # A needless PUT: the same document. It still ends the streams.
            status, _, _ = await arm.call("PUT", document["id"], copy.deepcopy(document))
            assert status == 200
            put_at = time.monotonic()
            async with asyncio.timeout(5):
                arrivals, end, _ = await read_until_end(response)
        cut_after = time.monotonic() - put_at
    assert end == "cut"
    # The operation takes 0.2 s, then the connection lives for the 1 s draining timeout.
    assert 1.1 <= cut_after < 3.0
    assert len(arrivals) >= 5  # events kept flowing until then


# -- the admin API and the ready line -------------------------------------------------------


async def test_backends_admin_api(arm: Arm, emulator: RunningEmulator) -> None:
    status, body, _ = await arm.call(
        "POST", "/_emulator/backends", {"pool-api": "ftp://x"}, query=""
    )
    assert status == 400 and "not an http(s) URL" in body["error"]["message"]
    frontend = emulator.frontends["agw-shop-prod"]
    async with aiohttp.ClientSession() as session, session.get(f"{frontend}/") as response:
        assert response.status == 502  # pool-api has no local URL yet
        assert "POST /_emulator/backends" in await response.text()
    async with sse_server() as base:
        mapped = await arm.admin("POST", "backends", {"agw-shop-prod": base})
        assert mapped == {"backends": {"agw-shop-prod": base}, "frontends": emulator.frontends}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{frontend}/events/live?count=1") as response,
        ):
            assert response.status == 404  # reached the backend, which has no /events/live
        assert (await arm.admin("DELETE", "backends"))["backends"] == {}


def test_the_ready_line_names_each_gateways_frontend() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "appgw_sse", "emulator", "--seed", str(EXAMPLES / "gateway.json")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert list(ready["frontends"]) == ["agw-shop-prod"]
        assert ready["frontends"]["agw-shop-prod"].startswith("http://127.0.0.1:")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


# -- an honest proxy ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def echo_backend() -> AsyncIterator[str]:
    """A raw HTTP/1.1 backend that answers each request's header lines, in order, as JSON, and
    sends no header the test did not write (no Server, unlike aiohttp's and uvicorn's)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")[1:-2]
        body = json.dumps([line.split(": ", 1) for line in lines]).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def raw_get(url: str, lines: list[str]) -> tuple[str, Any, tuple[str, int]]:
    """GET with exactly these header lines; the response head, its JSON body and the client's
    own address."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = "\r\n".join(["GET /echo HTTP/1.1", *lines, "Connection: close", "", ""])
    writer.write(request.encode())
    async with asyncio.timeout(10):
        response = (await reader.read()).decode()
    address = writer.get_extra_info("sockname")
    writer.close()
    head, _, body = response.partition("\r\n\r\n")
    return head, json.loads(body), address


async def test_the_data_plane_forwards_what_the_client_sent_and_what_the_gateway_adds() -> None:
    async with echo_backend() as backend, behind_gateway(backend) as (_, frontend):
        head, seen, (client_ip, client_port) = await raw_get(
            frontend,
            ["Host: shop.example.com", "X-Tag: a", "X-Tag: b", "X-Forwarded-For: 203.0.113.7:5000"],
        )
    names = [name.lower() for name, _ in seen]
    # Nothing the client never sent: no Accept-Encoding (a client that asked for nothing must
    # not get gzip), Accept or User-Agent of the proxy's own.
    assert not {"accept-encoding", "accept", "user-agent", "content-type"} & set(names)
    assert [value for name, value in seen if name == "X-Tag"] == ["a", "b"]
    values = {name.lower(): value for name, value in seen}
    assert values["x-forwarded-for"] == f"203.0.113.7:5000, {client_ip}:{client_port}"
    assert values["x-forwarded-proto"] == "http"
    assert values["x-forwarded-port"] == frontend.rsplit(":", 1)[1]
    assert values["x-original-host"] == "shop.example.com"
    # No Server header of its own: the backend sent none.
    assert "\r\nserver:" not in head.lower() and head.startswith("HTTP/1.1 200")


async def test_the_backends_server_header_passes_through() -> None:
    async with (
        sse_server() as base,
        behind_gateway(base) as (_, frontend),
        aiohttp.ClientSession() as session,
    ):
        async with session.get(f"{base}/live?count=1") as direct:
            expected = direct.headers.getall("Server")
        async with session.get(f"{frontend}/live?count=1") as proxied:
            assert proxied.headers.getall("Server") == expected
