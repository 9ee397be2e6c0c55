"""The emulator's data plane: each gateway's frontend, proxying to its first rule's backend.

Every decision reads the gateway document as it is at that moment (the stored one, also while a
PUT is `Updating`): the route when a request arrives; response buffering and the backend
setting's requestTimeout again every `POLL_SECONDS` while a response streams, so a change made
mid-stream applies from then on.
"""

import asyncio
import functools
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict

from appgw_sse.core.contract import ARM_DEFAULT_REQUEST_TIMEOUT, DEFAULT_UPDATE_DRAIN_SECONDS
from appgw_sse.emulator.state import Emulator, Operation

# Emulator's choice: Azure documents no size for the response buffer, only that it collects
# all or part of the response before delivering it.
RESPONSE_BUFFER_BYTES = 64 * 1024
# Docs (configuration-http-settings, "Connection draining"): when draining is not enabled on a
# backend setting, an update still lets its connections live 30 s; enabled, drainTimeoutInSec.
DEFAULT_DRAIN_SECONDS = DEFAULT_UPDATE_DRAIN_SECONDS
# How often a waiting proxy re-reads the document (a raised requestTimeout, buffering turned off).
POLL_SECONDS = 0.25
# Hop-by-hop headers, plus those the proxy recomputes for its own connection.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# What aiohttp's client would add on its own: an honest proxy sends only what the client sent.
_NOT_INVENTED = (hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.USER_AGENT, hdrs.CONTENT_TYPE)
# Set on a proxied request whose backend sent no Server header: the response gets none either.
_NO_SERVER = "appgw_sse.no_server"
T = TypeVar("T")


def _name(reference: Any) -> str:
    """The last segment of an `{"id": ...}` reference ("" when absent)."""
    reference_id = reference.get("id") if isinstance(reference, dict) else None
    return str(reference_id).rstrip("/").rsplit("/", 1)[-1] if reference_id else ""


def _path_matches(pattern: str, path: str) -> bool:
    # Application Gateway path patterns allow one trailing "*" (a prefix); otherwise exact.
    return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern


def route(document: dict[str, Any], path: str) -> tuple[str, str] | None:
    """(pool name, backend setting name) serving `path` under the gateway's first routing rule
    (lowest priority, then document order); None when that rule has no backend (a redirect)."""
    props = document.get("properties") or {}
    rules = props.get("requestRoutingRules") or []
    if not rules:
        return None
    rule = (
        min(
            enumerate(rules),
            key=lambda item: ((item[1].get("properties") or {}).get("priority") or 0, item[0]),
        )[1].get("properties")
        or {}
    )
    pool, setting = rule.get("backendAddressPool"), rule.get("backendHttpSettings")
    path_map_name = _name(rule.get("urlPathMap"))
    if path_map_name:
        path_map = next(
            (
                m.get("properties") or {}
                for m in props.get("urlPathMaps") or []
                if str(m.get("name", "")).lower() == path_map_name.lower()
            ),
            {},
        )
        pool = path_map.get("defaultBackendAddressPool")
        setting = path_map.get("defaultBackendHttpSettings")
        for path_rule in path_map.get("pathRules") or []:
            rule_props = path_rule.get("properties") or {}
            if any(_path_matches(p, path) for p in rule_props.get("paths") or []):
                pool = rule_props.get("backendAddressPool")
                setting = rule_props.get("backendHttpSettings")
                break
    if not _name(pool) or not _name(setting):
        return None
    return _name(pool), _name(setting)


def _setting(document: dict[str, Any] | None, name: str) -> dict[str, Any]:
    settings = ((document or {}).get("properties") or {}).get("backendHttpSettingsCollection")
    for setting in settings or []:
        if str(setting.get("name", "")).lower() == name.lower():
            return dict(setting.get("properties") or {})
    return {}


def request_timeout(document: dict[str, Any] | None, setting_name: str) -> int:
    return int(
        _setting(document, setting_name).get("requestTimeout") or ARM_DEFAULT_REQUEST_TIMEOUT
    )


def response_buffering(document: dict[str, Any] | None) -> bool:
    """Docs (proxy-buffers): response buffering is on unless turned off."""
    config = ((document or {}).get("properties") or {}).get("globalConfiguration") or {}
    return config.get("enableResponseBuffering") is not False


def drain_seconds(document: dict[str, Any] | None, setting_name: str) -> int:
    """How long a configuration update lets an open connection of this setting live."""
    draining = _setting(document, setting_name).get("connectionDraining") or {}
    if draining.get("enabled"):
        return int(draining.get("drainTimeoutInSec") or DEFAULT_DRAIN_SECONDS)
    return DEFAULT_DRAIN_SECONDS


class _Cut(Exception):
    """The gateway ends the request: `timeout` (requestTimeout) or `drain` (after a PUT)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class _Connection:
    gateway_key: str
    setting_name: str
    cut: asyncio.Event = field(default_factory=asyncio.Event)


class DataPlane:
    """One HTTP listener per gateway on 127.0.0.1, proxying like the gateway would."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.backends: dict[str, str] = {}  # gateway or pool, id or name -> local base URL
        self.buffer_bytes = RESPONSE_BUFFER_BYTES
        self._listeners: dict[str, tuple[web.AppRunner, str]] = {}
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    @property
    def frontends(self) -> dict[str, str]:
        """Frontend URL per gateway name (its id when two gateways share the name)."""
        names = [self._gateway_name(key) for key in self._listeners]
        return {
            (name if names.count(name) == 1 else self._gateway_id(key)): url
            for (key, (_, url)), name in zip(self._listeners.items(), names, strict=True)
        }

    def _gateway_id(self, key: str) -> str:
        return str(self.emulator.gateways.get(key, {}).get("id", key))

    def _gateway_name(self, key: str) -> str:
        return str(self.emulator.gateways.get(key, {}).get("name", key))

    async def start(self) -> None:
        # Bytes pass through as the backend sent them (gzip included): no decompression.
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            skip_auto_headers=_NOT_INVENTED,
            timeout=aiohttp.ClientTimeout(total=None),
            connector=aiohttp.TCPConnector(limit=0),
        )
        await self.sync()

    async def sync(self) -> None:
        """Start a listener for every gateway that has none yet."""
        for key in list(self.emulator.gateways):
            if key in self._listeners:
                continue
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", functools.partial(self._serve, key))
            app.on_response_prepare.append(_drop_own_server_header)
            # A client that goes away cancels its proxy, which closes the backend request.
            runner = web.AppRunner(
                app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
            )
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._listeners[key] = (runner, f"http://127.0.0.1:{runner.addresses[0][1]}")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for connection in self._connections:
            connection.cut.set()
        for runner, _ in self._listeners.values():
            await runner.cleanup()
        self._listeners.clear()
        if self._session is not None:
            await self._session.close()

    async def admin(self, method: str, payload: Any) -> dict[str, Any]:
        """`/_emulator/backends`: POST merges `{gateway or pool, id or name: URL}`, DELETE
        clears; every call answers the map and the frontends (starting missing ones)."""
        if method == "POST":
            if not isinstance(payload, dict):
                raise ValueError(
                    'expected {"<gateway or pool, id or name>": "http://127.0.0.1:PORT"}'
                )
            for target, url in payload.items():
                parts = urlsplit(str(url))
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    raise ValueError(f"{target}: {url!r} is not an http(s) URL")
            self.backends.update({str(k): str(v) for k, v in payload.items()})
        elif method == "DELETE":
            self.backends.clear()
        elif method != "GET":
            raise ValueError(f"{method} is not supported on /_emulator/backends")
        await self.sync()
        return {"backends": dict(self.backends), "frontends": self.frontends}

    def _backend_url(self, key: str, pool_name: str) -> str | None:
        gateway_id = self._gateway_id(key)
        candidates = (
            f"{gateway_id}/backendAddressPools/{pool_name}",
            pool_name,
            gateway_id,
            self._gateway_name(key),
        )
        lowered = {k.lower(): v for k, v in self.backends.items()}
        return next((lowered[c.lower()] for c in candidates if c.lower() in lowered), None)

    # -- configuration updates ------------------------------------------------------------

    def put_accepted(self, operation: Operation) -> None:
        """Called when a PUT is accepted: once it succeeds, the open connections end."""
        task = asyncio.get_running_loop().create_task(self._after_put(operation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_put(self, operation: Operation) -> None:
        while operation.status == "InProgress":
            if operation.id not in self.emulator.operations:  # the emulator was reset
                return
            # Completion is otherwise noticed lazily, on the next ARM request: look ourselves.
            await asyncio.sleep(max(operation.finishes_at - self.emulator.clock(), 0.05))
            self.emulator.advance()
        if operation.status != "Succeeded":
            return
        document = self.emulator.gateways.get(operation.gateway_key)
        loop = asyncio.get_running_loop()
        for connection in self._connections:
            if connection.gateway_key == operation.gateway_key:
                delay = drain_seconds(document, connection.setting_name)
                loop.call_later(delay, connection.cut.set)
        await self.sync()  # a PUT may have created a gateway

    # -- proxying -------------------------------------------------------------------------

    async def _serve(self, key: str, request: web.Request) -> web.StreamResponse:
        document = self.emulator.gateways.get(key)
        if document is None:
            return _plain(502, "this gateway no longer exists in the emulator")
        target = route(document, request.path)
        if target is None:
            return _plain(502, "no routing rule with a backend serves this path")
        pool_name, setting_name = target
        base = self._backend_url(key, pool_name)
        if base is None:
            return _plain(
                502,
                f"backend pool {pool_name!r} has no local URL: map it with POST /_emulator/backends",
            )
        connection = _Connection(key, setting_name)
        self._connections.add(connection)
        try:
            return await self._proxy(connection, request, base.rstrip("/") + request.path_qs)
        finally:
            self._connections.discard(connection)

    async def _next(self, connection: _Connection, task: asyncio.Future[Any], since: float) -> None:
        """Wait at most one poll for `task`. Raises _Cut when the setting's requestTimeout
        (as the document says now) has passed since `since`, or a PUT's drain ran out."""
        loop = asyncio.get_running_loop()
        timeout = request_timeout(
            self.emulator.gateways.get(connection.gateway_key), connection.setting_name
        )
        remaining = since + timeout - loop.time()
        if remaining <= 0:
            raise _Cut("timeout")
        cut: asyncio.Future[Any] = asyncio.ensure_future(connection.cut.wait())
        try:
            await asyncio.wait(
                {task, cut},
                timeout=min(remaining, POLL_SECONDS),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            cut.cancel()
        if connection.cut.is_set():
            raise _Cut("drain")

    async def _until_done(self, connection: _Connection, aw: Awaitable[T], since: float) -> T:
        task = asyncio.ensure_future(aw)
        try:
            while not task.done():
                await self._next(connection, task, since)
            return task.result()
        finally:
            task.cancel()

    async def _proxy(
        self, connection: _Connection, request: web.Request, url: str
    ) -> web.StreamResponse:
        assert self._session is not None
        loop = asyncio.get_running_loop()
        headers = forwarded_headers(request)
        body = await request.read()
        last_byte = loop.time()
        try:
            backend = await self._until_done(
                connection,
                self._session.request(request.method, url, headers=headers, data=body or None),
                last_byte,
            )
        except _Cut as cut:
            if cut.reason == "timeout":
                return _plain(504, "the backend did not answer within the requestTimeout")
            return _abort(request)
        except (aiohttp.ClientError, OSError) as exc:
            return _plain(502, f"the backend could not be reached: {exc}")
        response = web.StreamResponse(status=backend.status, reason=backend.reason)
        request[_NO_SERVER] = hdrs.SERVER not in backend.headers
        for name, value in backend.headers.items():
            if name.lower() not in _NOT_FORWARDED:
                response.headers.add(name, value)
        if backend.content_length is not None:
            response.content_length = backend.content_length
        held = bytearray()
        read: asyncio.Task[bytes] | None = None
        try:
            while True:
                read = read or asyncio.ensure_future(backend.content.readany())
                await self._next(connection, read, last_byte)
                buffering = response_buffering(self.emulator.gateways.get(connection.gateway_key))
                chunk = read.result() if read.done() else None
                if chunk is not None:
                    read = None
                    last_byte = loop.time()
                    held += chunk
                if held and (not buffering or len(held) >= self.buffer_bytes or chunk == b""):
                    await response.prepare(request)
                    await response.write(bytes(held))
                    held.clear()
                if chunk == b"":
                    await response.prepare(request)
                    await response.write_eof()
                    return response
        except _Cut as cut:
            if cut.reason == "timeout" and not response.prepared:
                return _plain(504, "the backend sent nothing within the requestTimeout")
            return _abort(request, response)
        except (aiohttp.ClientError, OSError):
            return _abort(request, response)
        finally:
            if read is not None:
                read.cancel()
            backend.release()


def forwarded_headers(request: web.Request) -> CIMultiDict[str]:
    """The request's headers as the gateway forwards them: every end-to-end header as sent,
    repeats kept, plus the X-Forwarded-For (client IP:port, appended), X-Forwarded-Proto,
    X-Forwarded-Port and X-Original-Host the gateway inserts."""
    headers = CIMultiDict(
        (k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED
    )
    peer = request.transport.get_extra_info("peername") if request.transport else None
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if peer:
        client = f"{peer[0]}:{peer[1]}"
        forwarded = ", ".join(headers.getall(hdrs.X_FORWARDED_FOR, []))
        headers.popall(hdrs.X_FORWARDED_FOR, None)
        headers[hdrs.X_FORWARDED_FOR] = f"{forwarded}, {client}" if forwarded else client
    headers[hdrs.X_FORWARDED_PROTO] = request.scheme
    if sockname:
        headers["X-Forwarded-Port"] = str(sockname[1])
    if hdrs.HOST in request.headers:
        headers["X-Original-Host"] = request.headers[hdrs.HOST]
    return headers


async def _drop_own_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp names itself in a Server header when the response has none: a proxied
    response carries the backend's Server header or none."""
    if request.get(_NO_SERVER):
        response.headers.popall(hdrs.SERVER, None)


def _plain(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=f"{status}: {message} (appgw-sse emulator)\n")


def _abort(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Drop the client's connection: it sees the stream end without its last chunk."""
    if request.transport is not None:
        request.transport.abort()
    return response if response is not None else web.StreamResponse()
