"""Our finalizer on SseRoutes, held by the operator itself rather than by kopf.

kopf's resource handlers each hold a worker task for as long as they run: a delete handler
waiting for its gateway held one, so bounding kopf's workers (which bounds its memory when 1,000
routes come at once) queued new routes behind deletions, and routes deleted together were released
in batches. Here kopf's raw-event handler hands each route over and returns: a new route gets the
finalizer through one of a few writers; a deleted route's finalizer goes once its gateway is
settled without it and no pod carries it. That wait holds no writer and no kopf worker, so
whatever the gateways do, new routes get their finalizer at once, and routes deleted together are
released by the one update that restores their gateway.

The same writes drop what kopf kept on routes for earlier versions of the operator (its
diff-base, a stale copy of an old spec under our prefix): once per route, in the write that adds
the finalizer, or in one of its own on a route that has it already.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from appgw_sse.core.contract import API_GROUP, FINALIZER
from appgw_sse.fence import LeadershipLost
from appgw_sse.ports import FinalizerPort

log = logging.getLogger(__name__)

WRITERS = 4  # finalizer writes in flight at once
RETRY_SECONDS = 5.0  # after a write failed for another reason than a newer version or a 404
# kopf's diff-base on routes, written by versions whose kopf handlers took routes in.
LEGACY_ANNOTATIONS = (f"{API_GROUP}/last-handled-configuration",)


class _Write(NamedTuple):
    """The route's metadata to write, computed from its `version`."""

    finalizers: list[str]
    version: str
    drop_annotations: tuple[str, ...] = ()


class Finalizers:
    """`observe` every route event (before the route book does), `forget` a route gone from the
    API. `released(namespace, name)` returns once the route may go."""

    def __init__(
        self,
        kube: FinalizerPort,
        released: Callable[[str, str], Awaitable[None]],
        writers: int = WRITERS,
    ) -> None:
        self.kube, self._released = kube, released
        # What to write, by route key: a key is queued once however many events come before
        # its write.
        self._wanted: dict[str, _Write] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._waiting: dict[str, asyncio.Task[None]] = {}  # deleted routes, until released
        self._deleting: dict[str, _Write] = {}  # their latest finalizers without ours
        self._writers = [
            asyncio.create_task(self._write(), name=f"finalizer writer {i}") for i in range(writers)
        ]
        self._closed = False

    def observe(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key, version = f"{namespace}/{name}", str(meta.get("resourceVersion", ""))
        finalizers = list(meta.get("finalizers") or ())
        if not meta.get("deletionTimestamp"):
            legacy = tuple(k for k in LEGACY_ANNOTATIONS if k in (meta.get("annotations") or {}))
            if FINALIZER not in finalizers:
                self._want(key, _Write([*finalizers, FINALIZER], version, legacy))
            elif legacy:
                self._want(key, _Write(finalizers, version, legacy))
            return
        if FINALIZER not in finalizers:
            return
        self._deleting[key] = _Write([f for f in finalizers if f != FINALIZER], version)
        task = self._waiting.get(key)
        if task is None:
            self._waiting[key] = asyncio.create_task(
                self._release(namespace, name), name=f"release {key}"
            )
        elif task.done():  # released, but the write met a newer version: write onto that one
            self._want(key, self._deleting[key])

    def forget(self, namespace: str, name: str) -> None:
        key = f"{namespace}/{name}"
        self._wanted.pop(key, None)
        self._deleting.pop(key, None)
        task = self._waiting.pop(key, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        self._closed = True
        tasks = [*self._writers, *self._waiting.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _want(self, key: str, write: _Write) -> None:
        if key not in self._wanted:
            self._queue.put_nowait(key)
        self._wanted[key] = write

    async def _release(self, namespace: str, name: str) -> None:
        key = f"{namespace}/{name}"
        await self._released(namespace, name)
        log.info(
            "route %s deleted: its gateway is settled without it and no pod carries it",
            key,
            extra={"route": key},
        )
        self._want(key, self._deleting[key])

    async def _write(self) -> None:
        while True:
            key = await self._queue.get()
            wanted = self._wanted.pop(key, None)
            if wanted is None:  # forgotten meanwhile
                continue
            namespace, _, name = key.partition("/")
            try:
                await self.kube.patch_route_finalizers(
                    namespace, name, wanted.finalizers, wanted.version, wanted.drop_annotations
                )
            except LeadershipLost as exc:
                log.warning("finalizers: %s; stopping this writer", exc)
                return
            except Exception as exc:
                log.warning("route %s: could not write its finalizers: %s; again soon", key, exc)
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self._retry, key, wanted)

    def _retry(self, key: str, wanted: _Write) -> None:
        if not self._closed and key not in self._wanted:  # a newer event's write wins
            self._want(key, wanted)
