"""Pods and Services, listed in pages and watched by the operator itself.

kopf takes in every listed body at once and queues them faster than its handlers drain them: at
10,000 pods the operator peaked above 350 MiB and the allocator never gave it back. Here each
object is handed to its consumer as it is parsed (which keeps only a small view of it) and one
page of 500 is the most ever held. A watch resumes from the last resourceVersion seen (bookmarks
keep it fresh); an expired one (410 Gone) lists again and reports what vanished meanwhile as
deleted.
"""

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import kubernetes

from appgw_sse import __version__

log = logging.getLogger(__name__)

Sink = Callable[[str, Mapping[str, Any]], None]  # (event type, object body)

PAGE = 500
WATCH_SECONDS = 600  # the server ends each watch after this; it is resumed at once
_MAX_LINE = 16 * 2**20  # one watch event: a whole object
_RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


class _Expired(Exception):
    """410 Gone: the resourceVersion resumed from is older than the server keeps."""


@dataclass(frozen=True)
class ApiServer:
    """Where and how to reach the API server, from the same kubeconfig or in-cluster config the
    rest of the operator loaded."""

    url: str
    ssl: ssl.SSLContext | bool
    authorization: Callable[[], str | None]

    @classmethod
    def from_configuration(
        cls, config: kubernetes.client.Configuration | None = None
    ) -> "ApiServer":
        """From a client configuration; by default the one `load_config` made the default."""
        config = config or kubernetes.client.Configuration.get_default_copy()
        context: ssl.SSLContext | bool = False
        if config.verify_ssl:
            context = ssl.create_default_context(cafile=config.ssl_ca_cert)
            if config.cert_file:
                context.load_cert_chain(config.cert_file, config.key_file)

        def authorization() -> str | None:
            # Asked per request: in-cluster, the client re-reads the rotated token file.
            token: str | None = config.get_api_key_with_prefix("BearerToken", alias="authorization")
            return token

        return cls(str(config.host).rstrip("/"), context, authorization)


class ListWatch:
    """One kind of object at one collection path (`/api/v1/pods` or one namespace's), kept in
    step with the server for as long as `run` runs. `listed` is set once the first listing has
    been handed over in full."""

    def __init__(self, server: ApiServer, path: str, sink: Sink, page: int = PAGE) -> None:
        self.server, self.path, self.sink, self.page = server, path, sink, page
        self.listed = asyncio.Event()
        self._known: set[tuple[str, str]] = set()  # (namespace, name) handed over and not deleted

    async def run(self) -> None:
        failures = 0
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=WATCH_SECONDS + 60)
        ) as session:
            version: str | None = None
            while True:
                try:
                    if version is None:
                        version = await self._list(session)
                    began = time.monotonic()
                    version = await self._watch(session, version)
                    failures = 0
                    if time.monotonic() - began < 1:  # a server that ends watches at once
                        await asyncio.sleep(1)
                except _Expired:
                    log.info("%s: the watch expired; listing again", self.path)
                    version = None
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    delay = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
                    failures += 1
                    log.warning("%s: %s; again in %gs", self.path, exc or type(exc).__name__, delay)
                    await asyncio.sleep(delay)

    def _headers(self) -> dict[str, str]:
        token = self.server.authorization()
        return {
            "Accept": "application/json",
            "User-Agent": f"appgw-sse-operator/{__version__}",
            **({"Authorization": token} if token else {}),
        }

    def _get(
        self, session: aiohttp.ClientSession, params: dict[str, str]
    ) -> "aiohttp.client._RequestContextManager":
        return session.get(
            self.server.url + self.path, params=params, headers=self._headers(), ssl=self.server.ssl
        )

    async def _list(self, session: aiohttp.ClientSession) -> str:
        started, seen, token = time.monotonic(), set(), ""
        while True:
            params = {"limit": str(self.page), **({"continue": token} if token else {})}
            async with self._get(session, params) as response:
                if response.status == 410:  # the continue token outlived the snapshot
                    raise _Expired
                response.raise_for_status()
                listing = await response.json()
            for item in listing.get("items") or ():
                meta = item["metadata"]
                key = (meta.get("namespace", ""), meta["name"])
                seen.add(key)
                self.sink("ADDED" if key not in self._known else "MODIFIED", item)
            del listing["items"]  # the page's bodies go before the next page arrives
            token = listing["metadata"].get("continue") or ""
            if not token:
                break
        for namespace, name in sorted(self._known - seen):
            self.sink("DELETED", {"metadata": {"namespace": namespace, "name": name}})
        self._known = seen
        if not self.listed.is_set():
            log.info("%s: listed %d in %.1fs", self.path, len(seen), time.monotonic() - started)
        self.listed.set()
        return str(listing["metadata"]["resourceVersion"])

    async def _watch(self, session: aiohttp.ClientSession, version: str) -> str:
        """Follow the watch until the server ends it; the resourceVersion to resume from."""
        params = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async with self._get(session, params) as response:
            if response.status == 410:
                raise _Expired
            response.raise_for_status()
            while line := await response.content.readuntil(b"\n", max_size=_MAX_LINE):
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if body.get("code") == 410:
                        raise _Expired
                    raise ValueError(f"watch error: {body.get('message') or body}")
                version = str(body["metadata"]["resourceVersion"])
                if kind == "BOOKMARK":
                    continue
                meta = body["metadata"]
                key = (meta.get("namespace", ""), meta["name"])
                if kind == "DELETED":
                    self._known.discard(key)
                else:
                    self._known.add(key)
                self.sink(kind, body)
        return version


def collection_paths(resource: str, namespaces: Sequence[str]) -> list[str]:
    """The core/v1 collection(s) to watch: cluster-wide, or one per watched namespace."""
    if not namespaces:
        return [f"/api/v1/{resource}"]
    return [f"/api/v1/namespaces/{namespace}/{resource}" for namespace in namespaces]
