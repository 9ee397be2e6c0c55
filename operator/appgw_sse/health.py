"""`GET /healthz` (liveness) and `GET /metrics` (Prometheus) on one port.

A small aiohttp server of our own rather than kopf's liveness endpoint: kopf serves a single
path, only while the operator runs (a standby replica must answer its probe too), and does not
report the port it bound when asked for port 0.
"""

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from appgw_sse import metrics
from appgw_sse.core.contract import API_GROUP, API_VERSION, PLURAL

log = logging.getLogger(__name__)

# kopf names its watch task per resource; kopf is pinned exactly, and the e2e suite fails if
# this stops matching (the leader's /healthz would answer 503).
_ROUTE_WATCHER = f"watcher for {PLURAL}.{API_VERSION}.{API_GROUP}@"


@dataclass
class Health:
    """What /healthz reports. Answering at all proves the event loop runs; the leader must also
    have kopf running and, once started, its SseRoute watch alive (kopf exits when a watch fails
    for good, and re-opens one that hangs; this catches a watch task gone without either)."""

    identity: str
    operator: "asyncio.Task[Any] | None" = None  # kopf, while this replica leads
    started: "asyncio.Future[Any] | None" = None  # kopf's ready flag: its startup is done

    def check(self) -> tuple[bool, dict[str, Any]]:
        if self.operator is None:
            return True, {"role": "standby", "identity": self.identity}
        watching = any(
            task.get_name().startswith(_ROUTE_WATCHER) and not task.done()
            for task in asyncio.all_tasks()
        )
        running = not self.operator.done()
        ok = running and (watching or self.started is None or not self.started.done())
        return ok, {
            "role": "leader",
            "identity": self.identity,
            "running": running,
            "watching": watching,
        }


async def serve(health: Health, port: int) -> web.AppRunner:
    """Start serving on all interfaces; port 0 picks a free one (logged)."""

    async def healthz(request: web.Request) -> web.Response:
        ok, report = health.check()
        return web.json_response(
            {"status": "ok" if ok else "failing", **report}, status=200 if ok else 503
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.REGISTRY))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    sock = _listen(port)
    await web.SockSite(runner, sock).start()
    log.info("serving /healthz and /metrics on port %d", sock.getsockname()[1])
    return runner


def _listen(port: int) -> socket.socket:
    """One socket for IPv4 and IPv6 (a pod's IP is either), so port 0 means one port."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address = "::"
    except OSError:  # no IPv6 on this host
        sock, address = socket.socket(socket.AF_INET, socket.SOCK_STREAM), "0.0.0.0"
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    return sock
