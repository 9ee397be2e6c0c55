"""The emulator's HTTPS server: ARM's REST surface for applicationGateways, plus /_emulator/."""

import asyncio
import dataclasses
import hashlib
import json
import math
import re
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from appgw_sse.core.document import split_gateway_id
from appgw_sse.emulator.dataplane import DataPlane
from appgw_sse.emulator.state import (
    ArmError,
    Emulator,
    Fault,
    Operation,
    public_view,
    resource_key,
)

_GATEWAY = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Network"
    r"/applicationGateways(?:/(?P<name>[^/]+))?/?$",
    re.IGNORECASE,
)
_OPERATION = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Network/locations/(?P<loc>[^/]+)"
    r"/operations/(?P<op>[^/]+)$",
    re.IGNORECASE,
)
_SUBSCRIPTION = re.compile(r"^/subscriptions/(?P<sub>[^/]+)", re.IGNORECASE)
_LOOPBACK = ("127.0.0.1", "::1")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# An admin endpoint's handler: the request and its parsed JSON body (None when empty).
AdminHandler = Callable[[web.Request, Any], Awaitable[web.Response]]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _error(exc: ArmError) -> web.Response:
    return _json(exc.status, exc.body(), exc.headers)


def token_fingerprint(token: str) -> str:
    """What the request log keeps of a bearer token: enough to tell tokens apart."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _bearer_fingerprint(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token_fingerprint(token.strip()) if scheme == "Bearer" else None


class EmulatorApp:
    """Routes requests to the Emulator state and keeps the request log."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.requests: list[dict[str, Any]] = []
        self.dataplane = DataPlane(emulator)
        # The admin API: (endpoint, method) -> its handler; "*": any method.
        self._admin_routes: dict[tuple[str, str], AdminHandler] = {
            ("gateways", "GET"): self._list_gateways,
            ("gateways", "POST"): self._seed_gateways,
            ("faults", "GET"): self._list_faults,
            ("faults", "POST"): self._add_faults,
            ("faults", "DELETE"): self._clear_faults,
            ("requests", "GET"): self._list_requests,
            ("requests", "DELETE"): self._clear_requests,
            ("config", "POST"): self._configure,
            ("throttling", "GET"): self._throttling_report,
            ("backends", "*"): self._backends,
            ("reset", "POST"): self._reset,
        }

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._log_middleware])
        app.router.add_route("*", "/_emulator/{tail:.*}", self._admin)
        app.router.add_route("*", "/{tail:.*}", self._arm)
        return app

    @web.middleware
    async def _log_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        except Exception as exc:  # a bug must answer 500 like ARM, never drop the connection
            response = _error(ArmError(500, "InternalServerError", f"Emulator error: {exc!r}"))
        if not request.path.startswith("/_emulator/"):
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string,
                    "status": response.status,
                    "ifMatch": request.headers.get("If-Match"),
                    "token": _bearer_fingerprint(request),
                    "bodyDigest": hashlib.sha256(body).hexdigest() if body else None,
                    "time": time.time(),
                }
            )
        response.headers.setdefault(
            "x-ms-request-id", hashlib.md5(body + str(time.time()).encode()).hexdigest()
        )
        return response

    # -- ARM ------------------------------------------------------------------------------

    async def _arm(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._arm_checked(request)
        except ArmError as exc:
            return _error(exc)

    async def _arm_checked(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                {
                    "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common"'
                },
            )
        if "api-version" not in request.query:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        quota = self._take_token(request)
        try:
            response = await self._route(request)
        except ArmError as exc:
            response = _error(exc)
        response.headers.update(quota)
        return response

    def _take_token(self, request: web.Request) -> dict[str, str]:
        """ARM's throttling, ahead of the resource provider: the remaining-quota header."""
        subscription = _SUBSCRIPTION.match(request.path)
        if self.emulator.throttling is None or subscription is None:
            return {}
        kind = {"GET": "reads", "HEAD": "reads", "DELETE": "deletes"}.get(request.method, "writes")
        remaining = self.emulator.throttling.take(subscription["sub"], kind)
        return {f"x-ms-ratelimit-remaining-subscription-{kind}": str(remaining)}

    async def _route(self, request: web.Request) -> web.StreamResponse:
        operation = _OPERATION.match(request.path)
        gateway = _GATEWAY.match(request.path)
        kind = "poll" if operation else "resource"
        fault = self.emulator.take_fault(request.method, request.path, kind)
        if fault is not None:
            await asyncio.sleep(fault.delay)
            if fault.status:
                raise ArmError(fault.status, fault.code, fault.message, dict(fault.headers))
        if operation:
            if request.method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"{request.method} is not supported here.")
            return self._poll(operation["op"], request)
        if gateway is None:
            raise ArmError(
                404,
                "InvalidResourceType",
                f"The resource type for path '{request.path}' is not served by this emulator "
                "(Microsoft.Network/applicationGateways only).",
            )
        if gateway["name"] is None:
            if request.method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"{request.method} is not supported here.")
            return self._list(gateway["sub"], gateway["rg"])
        gateway_id = request.path.rstrip("/")
        interleave = self.emulator.take_fault(request.method, request.path, "interleave")
        if interleave is not None:
            self.emulator.interleave(gateway_id, interleave.patch)
        if request.method == "GET":
            return _json(200, public_view(self._get(gateway_id)))
        if request.method == "PUT":
            return await self._put(gateway_id, request)
        if request.method == "DELETE":
            return self._delete(gateway_id, request)
        raise ArmError(405, "MethodNotAllowed", f"{request.method} is not supported on gateways.")

    def _get(self, gateway_id: str) -> dict[str, Any]:
        self.emulator.advance()
        subscription, group, name = split_gateway_id(gateway_id)
        document = self.emulator.gateways.get(resource_key(subscription, group, name))
        if document is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Network/applicationGateways/{name}' under resource "
                f"group '{group}' was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
            )
        return document

    def _list(self, subscription: str, group: str) -> web.Response:
        self.emulator.advance()
        prefix = resource_key(subscription, group, "")
        values = [
            public_view(d)
            for k, d in sorted(self.emulator.gateways.items())
            if k.startswith(prefix)
        ]
        return _json(200, {"value": values})

    def _async_operation_headers(
        self, request: web.Request, operation: Operation
    ) -> dict[str, str]:
        subscription, _, _ = split_gateway_id(request.path.rstrip("/"))
        location = "westeurope"
        document = self.emulator.gateways.get(operation.gateway_key)
        if document is not None:
            location = str(document.get("location") or location)
        url = (
            f"{request.scheme}://{request.host}/subscriptions/{subscription}/providers/"
            f"Microsoft.Network/locations/{location}/operations/{operation.id}"
            f"?api-version={request.query['api-version']}"
        )
        return {"Azure-AsyncOperation": url} | self._retry_after(self.emulator.lro_seconds)

    @staticmethod
    def _retry_after(seconds: float) -> dict[str, str]:
        # Integers only (the SDK's parser fails on fractions in a 201); below a second, none,
        # so the client's own polling interval applies.
        return {"Retry-After": str(math.ceil(seconds))} if seconds >= 1 else {}

    async def _put(self, gateway_id: str, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"null")
        except json.JSONDecodeError as exc:
            raise ArmError(
                400, "InvalidRequestContent", f"The request content was invalid: {exc}"
            ) from None
        status, document, operation = self.emulator.put(
            gateway_id, body, request.headers.get("If-Match"), request.headers.get("If-None-Match")
        )
        lro = self.emulator.take_fault("PUT", request.path, "lro")
        if lro is not None:
            operation.forced_outcome = (lro.outcome, lro.code, lro.message)
        self.dataplane.put_accepted(operation)
        return _json(
            status, public_view(document), self._async_operation_headers(request, operation)
        )

    def _delete(self, gateway_id: str, request: web.Request) -> web.Response:
        operation = self.emulator.delete(gateway_id)
        if operation is None:
            return web.Response(status=204)
        headers = self._async_operation_headers(request, operation)
        return web.Response(
            status=202, headers=headers | {"Location": headers["Azure-AsyncOperation"]}
        )

    def _poll(self, operation_id: str, request: web.Request) -> web.Response:
        self.emulator.advance()
        operation = self.emulator.operations.get(operation_id)
        if operation is None:
            raise ArmError(404, "OperationNotFound", f"Operation {operation_id} was not found.")
        body: dict[str, Any] = {
            "id": request.path,
            "name": operation.id,
            "status": operation.status,
        }
        if operation.error is not None:
            body["error"] = operation.error
        headers = {}
        if operation.status == "InProgress":
            headers["Retry-After"] = str(
                max(1, round(operation.finishes_at - self.emulator.clock()))
            )
        return _json(200, body, headers)

    # -- admin ----------------------------------------------------------------------------

    async def _admin(self, request: web.Request) -> web.Response:
        """/_emulator/{endpoint}: loopback only; the body is parsed once, bad input is a 400."""
        if request.remote not in _LOOPBACK:
            return _json(
                403, {"error": {"code": "Forbidden", "message": "admin API is loopback only"}}
            )
        tail, method = request.match_info["tail"].strip("/"), request.method
        try:
            raw = await request.read()
            payload: Any = json.loads(raw) if raw else None
            handler = self._admin_routes.get((tail, method)) or self._admin_routes.get((tail, "*"))
            if handler is not None:
                return await handler(request, payload)
        except ArmError as exc:
            return _error(exc)
        except (TypeError, ValueError, AttributeError, json.JSONDecodeError) as exc:
            return _json(400, {"error": {"code": "BadRequest", "message": str(exc)}})
        return _json(
            404,
            {
                "error": {
                    "code": "NotFound",
                    "message": f"no admin route {method} /_emulator/{tail}",
                }
            },
        )

    async def _list_gateways(self, request: web.Request, _payload: Any) -> web.Response:
        # ?secrets=true: as stored, write-only certificate secrets included.
        secrets = request.query.get("secrets") == "true"
        stored = self.emulator.gateways.values()
        return _json(200, [d if secrets else public_view(d) for d in stored])

    async def _seed_gateways(self, _request: web.Request, payload: Any) -> web.Response:
        items = payload if isinstance(payload, list) else [payload]
        return _json(200, [public_view(self.emulator.seed(item)) for item in items])

    async def _add_faults(self, _request: web.Request, payload: Any) -> web.Response:
        items = payload if isinstance(payload, list) else [payload]
        faults = [Fault(**item) for item in items]
        self.emulator.faults.extend(faults)
        return _json(200, [dataclasses.asdict(f) for f in faults])

    async def _list_faults(self, _request: web.Request, _payload: Any) -> web.Response:
        return _json(200, [dataclasses.asdict(f) for f in self.emulator.faults])

    async def _clear_faults(self, _request: web.Request, _payload: Any) -> web.Response:
        self.emulator.faults.clear()
        return _json(200, [])

    async def _list_requests(self, _request: web.Request, _payload: Any) -> web.Response:
        return _json(200, self.requests)

    async def _clear_requests(self, _request: web.Request, _payload: Any) -> web.Response:
        self.requests.clear()
        return _json(200, [])

    async def _configure(self, _request: web.Request, payload: Any) -> web.Response:
        self.emulator.lro_seconds = float(payload.get("lroSeconds", self.emulator.lro_seconds))
        self.emulator.conflict_mode = payload.get("conflictMode", self.emulator.conflict_mode)
        if "throttling" in payload:
            self.emulator.set_throttling(payload["throttling"])
        throttling = self.emulator.throttling
        return _json(
            200,
            {
                "lroSeconds": self.emulator.lro_seconds,
                "conflictMode": self.emulator.conflict_mode,
                "throttling": None if throttling is None else throttling.settings(),
            },
        )

    async def _throttling_report(self, _request: web.Request, _payload: Any) -> web.Response:
        throttling = self.emulator.throttling
        return _json(200, {} if throttling is None else throttling.report())

    async def _backends(self, request: web.Request, payload: Any) -> web.Response:
        return _json(200, await self.dataplane.admin(request.method, payload))

    async def _reset(self, _request: web.Request, _payload: Any) -> web.Response:
        self.emulator.gateways.clear()
        self.emulator.operations.clear()
        self.emulator.faults.clear()
        if self.emulator.throttling is not None:
            self.emulator.throttling.buckets.clear()
        self.requests.clear()
        return _json(200, {})


@dataclass(frozen=True)
class Tls:
    ca_bundle: Path
    server_pem: Path

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_pem)
        return context


def ensure_tls(directory: Path) -> Tls:
    """A CA and a 127.0.0.1/localhost certificate in `directory`, made once and then reused."""
    tls = Tls(directory / "ca.pem", directory / "server.pem")
    if not (tls.ca_bundle.exists() and tls.server_pem.exists()):
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="appgw-sse emulator")
        ca.cert_pem.write_to_path(str(tls.ca_bundle))
        ca.issue_cert("127.0.0.1", "localhost", "::1").private_key_and_cert_chain_pem.write_to_path(
            str(tls.server_pem)
        )
    return tls


@dataclass
class RunningEmulator:
    url: str
    ca_bundle: Path
    token_file: Path
    app: EmulatorApp

    @property
    def emulator(self) -> Emulator:
        return self.app.emulator

    @property
    def frontends(self) -> dict[str, str]:
        return self.app.dataplane.frontends


@asynccontextmanager
async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    tls_dir: Path | None = None,
    lro_seconds: float = 1.0,
    seeds: list[dict[str, Any]] = (),  # type: ignore[assignment]
    throttling: bool = False,
) -> AsyncIterator[RunningEmulator]:
    with tempfile.TemporaryDirectory(prefix="appgw-sse-emulator-") as scratch:
        directory = tls_dir or Path(scratch)
        tls = ensure_tls(directory)
        token_file = directory / "token"
        if not token_file.exists():
            token_file.write_text("emulator-token\n")
        app = EmulatorApp(Emulator(lro_seconds=lro_seconds))
        app.emulator.set_throttling(throttling)
        for seed in seeds:
            app.emulator.seed(seed)
        runner = web.AppRunner(app.build(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=tls.context())
        await site.start()
        await app.dataplane.start()
        bound_host, bound_port = runner.addresses[0][:2]
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        try:
            yield RunningEmulator(
                f"https://{url_host}:{bound_port}", tls.ca_bundle, token_file, app
            )
        finally:
            await app.dataplane.stop()
            await runner.cleanup()


def load_seeds(paths: list[Path]) -> list[dict[str, Any]]:
    seeds: list[dict[str, Any]] = []
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        seeds += data if isinstance(data, list) else [data]
    return seeds


async def run_until_signalled(**options: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(**options) as running:
        ready = {
            "url": running.url,
            "ca_bundle": str(running.ca_bundle),
            "token_file": str(running.token_file),
            "frontends": running.frontends,
        }
        print(json.dumps(ready), flush=True)
        await stop.wait()
    print("emulator stopped", file=sys.stderr, flush=True)
