"""Local SSE backends for the doctor and data-plane tests, each emitting on its own schedule.

Every event carries its id (a counter) and a JSON `ts` (when it was sent), so buffering shows
as events held past their timestamps. Query parameters shape the schedule:
`interval` (s between events), `count` (events, then the stream ends), `pad` (bytes of filler
per event), `after` (seconds before /cut drops the connection), `delay` (before the headers).
"""

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from aiohttp import web
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.routing import Route

from appgw_sse.emulator.server import RunningEmulator, serve
from tests.support.gateways import gateway_document

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def event(number: int, pad: int = 0) -> bytes:
    data = json.dumps({"n": number, "ts": time.time(), "pad": "x" * pad})
    return f"id: {number}\ndata: {data}\n\n".encode()


async def _stream(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    interval = float(request.query.get("interval", "0.1"))
    count = int(request.query.get("count", "0")) or None
    pad = int(request.query.get("pad", "0"))
    await asyncio.sleep(float(request.query.get("delay", "0")))
    await response.prepare(request)
    number = 0
    while count is None or number < count:
        number += 1
        await response.write(event(number, pad))
        if count is None or number < count:
            await asyncio.sleep(interval)
    await response.write_eof()
    return response


async def live(request: web.Request) -> web.StreamResponse:
    return await _stream(request, web.StreamResponse(headers=SSE_HEADERS))


async def gzipped(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE_HEADERS)
    response.enable_compression(web.ContentCoding.gzip)
    return await _stream(request, response)


async def with_length(request: web.Request) -> web.Response:
    body = b"".join(event(n) for n in range(1, 6))
    return web.Response(body=body, headers=SSE_HEADERS)


async def cut(request: web.Request) -> web.StreamResponse:
    """Streams, then drops the connection after `after` seconds without ending the body."""
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    deadline = time.monotonic() + float(request.query.get("after", "1"))
    number = 0
    while time.monotonic() < deadline:
        number += 1
        await response.write(event(number))
        await asyncio.sleep(float(request.query.get("interval", "0.1")))
    assert request.transport is not None
    request.transport.abort()
    return response


async def quiet(request: web.Request) -> web.StreamResponse:
    """`count` events, then silence with the connection open."""
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    for number in range(1, int(request.query.get("count", "3")) + 1):
        await response.write(event(number))
        await asyncio.sleep(0.05)
    await asyncio.sleep(3600)
    return response


@asynccontextmanager
async def sse_server() -> AsyncIterator[str]:
    """The backends above on 127.0.0.1; yields the base URL."""
    app = web.Application()
    for path, handler in (
        ("/live", live),
        ("/gzip", gzipped),
        ("/length", with_length),
        ("/cut", cut),
        ("/quiet", quiet),
    ):
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _starlette_events(request: Request) -> EventSourceResponse:
    """sse-starlette's EventSourceResponse: an event every `interval` s, id and JSON `ts`."""
    interval = float(request.query_params.get("interval", "0.1"))

    async def events() -> AsyncIterator[ServerSentEvent]:
        number = 0
        while True:
            number += 1
            yield ServerSentEvent(data=json.dumps({"n": number, "ts": time.time()}), id=str(number))
            await asyncio.sleep(interval)

    return EventSourceResponse(events())


@asynccontextmanager
async def starlette_server(gzip: bool = False) -> AsyncIterator[str]:
    """A real third-party SSE server: sse-starlette on uvicorn, at /events; yields the base URL.
    `gzip`: behind Starlette's GZipMiddleware, which flushes its compressor per message (it
    skips text/event-stream by default; told not to, it compresses the stream as older
    Starlette releases did)."""
    middleware = [Middleware(GZipMiddleware, minimum_size=0, exclude_content_types=())]
    app = Starlette(routes=[Route("/events", _starlette_events)], middleware=middleware * gzip)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until uvicorn accepts them
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


@asynccontextmanager
async def behind_gateway(
    backend: str,
    *,
    request_timeout: int = 30,
    buffering: bool = False,
    drain: int | None = None,
    buffer_bytes: int | None = None,
) -> AsyncIterator[tuple[RunningEmulator, str]]:
    """The emulator with one gateway whose only rule sends everything to `backend`; yields it
    and the gateway's frontend URL."""
    document = gateway_document(
        {"sse": request_timeout},
        name="agw",
        buffering=buffering,
        pools={"pool": [{"ipAddress": "10.0.0.4"}]},
        rules=[("sse", "pool")],
    )
    if drain is not None:
        setting = document["properties"]["backendHttpSettingsCollection"][0]["properties"]
        setting["connectionDraining"] = {"enabled": True, "drainTimeoutInSec": drain}
    async with serve(lro_seconds=0.2, seeds=[document]) as running:
        await running.app.dataplane.admin("POST", {"pool": backend})
        if buffer_bytes is not None:
            running.app.dataplane.buffer_bytes = buffer_bytes
        yield running, running.frontends["agw"]
