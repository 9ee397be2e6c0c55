"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Only the holder runs the operator; the others stand by, reading the Lease every `retry_period`
and writing nothing. The holder renews every `retry_period`; if no renewal succeeded for
`renew_deadline` (< `duration`) it stops working before anyone else may take over. A standby
takes the Lease once its record has not changed for `duration`, measured on its own clock
(from when it last saw the record change), so clock skew between nodes does not matter. Every
write carries the resourceVersion read, so two standbys never both win.

No renewal outlives the renew deadline: each request is bounded by the time left until it
(socket timeouts, and none of the client's retries), and the holder stops as soon as that time
is up, whatever the request in flight is doing. Writers check the same clock (`fence`).
"""

import asyncio
import concurrent.futures
import copy
import datetime
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client import V1Lease
from kubernetes.client.exceptions import ApiException

from appgw_sse.adapters.kube import load_config
from appgw_sse.fence import Fence, LeadershipLost

__all__ = ["LeaderElector", "LeadershipLost", "LeaseSettings", "default_identity"]

log = logging.getLogger(__name__)

T = TypeVar("T")
LEASE_NAME = "appgw-sse-operator"
# What a request to the API server can fail with: an error status, or no answer (urllib3 raises
# its own exceptions for timeouts and refused connections once its retries are spent).
_FAILURES = (ApiException, OSError, urllib3.exceptions.HTTPError)


def default_identity() -> str:
    """The pod's name in a cluster (a restarted container takes its own Lease back at once);
    elsewhere unique per process."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


@dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    identity: str
    name: str = LEASE_NAME
    duration: int = 15  # client-go's defaults; the Lease counts whole seconds
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class NamespaceNotFound(Exception):
    """The Lease's namespace does not exist: retrying cannot help."""

    def __init__(self, namespace: str) -> None:
        super().__init__(f"namespace {namespace} does not exist")
        self.namespace = namespace


def _describe(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return str(exc)


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


class LeaderElector:
    def __init__(
        self, settings: LeaseSettings, client: kubernetes.client.ApiClient | None = None
    ) -> None:
        self.settings = settings
        if client is None:
            load_config()
            client = kubernetes.client.ApiClient()
        # A client of its own without urllib3's retries: three of them at a 5 s timeout each
        # let one renewal hang 22 s, past the 15 s Lease.
        configuration = copy.copy(client.configuration)
        configuration.retries = False
        self.api = kubernetes.client.CoordinationV1Api(kubernetes.client.ApiClient(configuration))
        self.fence = Fence(settings.identity, settings.renew_deadline)
        # Its own connection and thread: renewals never queue behind a burst of status or pod
        # patches in the shared pool, which could cost the Lease.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lease")
        self._holder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lease-renew")
        self._lease: V1Lease | None = None  # as last read or written
        self._observed: tuple[str, object] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0  # monotonic time it was first seen
        # While standing by, a hung request must not outlast the renew deadline unnoticed;
        # while holding, each is bounded by the time left until the renew deadline instead.
        self._timeout = settings.renew_deadline / 2

    async def acquire(self) -> None:
        """Return once this process holds the Lease."""
        waiting_for = None
        while True:
            try:
                holder = await self._try_acquire()
            except _FAILURES as exc:
                log.warning("lease %s: %s; retrying", self.settings.name, _describe(exc))
                holder = None
            if holder == self.settings.identity:
                log.info("lease %s acquired by %s: leading", self.settings.name, holder)
                return
            if holder and holder != waiting_for:
                log.info("standing by: lease %s is held by %s", self.settings.name, holder)
                waiting_for = holder
            await asyncio.sleep(self.settings.retry_period)

    async def hold(self) -> None:
        """Renew every retry_period; raise LeadershipLost once the Lease was taken over or the
        renew deadline has passed since the last renewal sent that succeeded. The renewals run
        in a thread of their own, as client-go's do in a goroutine: an event loop busy for
        seconds (a slow start under CPU pressure) neither delays them nor costs the Lease."""
        stop = threading.Event()
        try:
            await asyncio.get_running_loop().run_in_executor(self._holder, self._hold, stop)
        except LeadershipLost as exc:
            self.fence.lose(str(exc))
            raise
        finally:
            stop.set()  # e.g. cancelled on a normal stop: the thread ends at its next wait

    def _hold(self, stop: threading.Event) -> None:
        """The renewal loop (in the holder thread) until `stop` or LeadershipLost. Each request
        ends, on its socket timeouts, by the renew deadline: none can renew a Lease past it."""
        while not stop.wait(max(min(self.settings.retry_period, self.fence.remaining()), 0.0)):
            left = self.fence.remaining()
            if left <= 0:
                raise LeadershipLost(
                    f"lease {self.settings.name} not renewed for {self.settings.renew_deadline:g}s"
                )
            sent = time.monotonic()
            try:
                renewed = self._renew(deadline=sent + left)
            except _FAILURES as exc:
                log.warning("lease %s: renewal failed: %s", self.settings.name, _describe(exc))
                continue
            if not renewed:
                raise LeadershipLost(f"lease {self.settings.name} was taken over")
            self._renewed(sent)

    def _renewed(self, sent: float) -> None:
        spec = self._lease.spec if self._lease is not None else None
        self.fence.renewed(sent, (spec.lease_transitions or 0) if spec is not None else 0)

    async def release(self) -> None:
        """Hand the Lease over at once (a standby need not wait for it to expire)."""
        if self._lease is None or self._lease.spec is None:
            return
        spec = self._lease.spec
        spec.holder_identity, spec.lease_duration_seconds, spec.renew_time = None, 1, _now()
        try:
            await self._replace(self._lease)
            log.info("lease %s released", self.settings.name)
        except _FAILURES as exc:
            log.warning("lease %s: could not release it: %s", self.settings.name, _describe(exc))

    # -- the record ---------------------------------------------------------------------------

    def _request(
        self, method: Callable[..., T], *args: Any, deadline: float | None = None, **kwargs: Any
    ) -> T:
        """One request; with a deadline (monotonic), its timeouts end there."""
        timeout = self._timeout if deadline is None else max(deadline - time.monotonic(), 0.01)
        return method(*args, _request_timeout=timeout, **kwargs)

    async def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One request in the lease thread (acquiring, releasing)."""
        call = functools.partial(self._request, method, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    def _read_now(self, deadline: float | None = None) -> V1Lease | None:
        # A list by name answers an absent Lease with an empty list rather than a 404.
        found = self._request(
            self.api.list_namespaced_lease,
            self.settings.namespace,
            field_selector=f"metadata.name={self.settings.name}",
            deadline=deadline,
        )
        return found.items[0] if found.items else None

    def _replace_now(self, lease: V1Lease, deadline: float | None = None) -> None:
        self._lease = self._request(
            self.api.replace_namespaced_lease,
            self.settings.name,
            self.settings.namespace,
            lease,
            deadline=deadline,
        )

    async def _read(self) -> V1Lease | None:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._read_now)

    async def _replace(self, lease: V1Lease) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._replace_now, lease)

    def _spec(self, previous: V1Lease | None) -> dict[str, object]:
        now = _now()
        spec = previous.spec if previous is not None else None
        if spec is None:
            return {
                "holderIdentity": self.settings.identity,
                "acquireTime": now,
                "renewTime": now,
                "leaseDurationSeconds": self.settings.duration,
                "leaseTransitions": 0,
            }
        ours = spec.holder_identity == self.settings.identity
        return {
            "holderIdentity": self.settings.identity,
            "acquireTime": spec.acquire_time if ours else now,
            "renewTime": now,
            "leaseDurationSeconds": self.settings.duration,
            "leaseTransitions": (spec.lease_transitions or 0) + (0 if ours else 1),
        }

    async def _try_acquire(self) -> str | None:
        """Take the Lease if it is free or expired; the holder afterwards."""
        lease = await self._read()
        sent = time.monotonic()  # the renewTime written below is no earlier than this
        if lease is None:
            body = V1Lease.model_validate(
                {
                    "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
                    "spec": self._spec(None),
                }
            )
            try:
                self._lease = await self._call(
                    self.api.create_namespaced_lease, self.settings.namespace, body
                )
            except ApiException as exc:
                if exc.status == 409:  # another replica created it first
                    return None
                if exc.status == 404:  # a create answers 404 only for a missing namespace
                    raise NamespaceNotFound(self.settings.namespace) from None
                raise
            self._renewed(sent)
            return self.settings.identity
        spec = lease.spec
        assert spec is not None and lease.metadata is not None
        holder = spec.holder_identity or ""
        record = (holder, spec.renew_time)
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = spec.lease_duration_seconds or self.settings.duration
        if (
            holder
            and holder != self.settings.identity
            and time.monotonic() < self._observed_at + duration
        ):
            return holder
        if holder and holder != self.settings.identity:
            log.info(
                "lease %s: holder %s stopped renewing it %.0fs ago; taking over",
                self.settings.name,
                holder,
                time.monotonic() - self._observed_at,
            )
        body = V1Lease.model_validate(
            {
                "metadata": {
                    "name": self.settings.name,
                    "namespace": self.settings.namespace,
                    "resourceVersion": lease.metadata.resource_version,
                },
                "spec": self._spec(lease),
            }
        )
        try:
            await self._replace(body)
        except ApiException as exc:
            if exc.status == 409:  # another replica took it between our read and write
                return None
            raise
        self._renewed(sent)
        return self.settings.identity

    def _renew(self, deadline: float) -> bool:
        """Renew on the resourceVersion last written; False when someone else holds it now."""
        assert self._lease is not None and self._lease.metadata is not None
        body = V1Lease.model_validate(
            {
                "metadata": {
                    "name": self.settings.name,
                    "namespace": self.settings.namespace,
                    "resourceVersion": self._lease.metadata.resource_version,
                },
                "spec": self._spec(self._lease),
            }
        )
        try:
            self._replace_now(body, deadline)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = self._read_now(deadline)
            if (
                current is None
                or current.spec is None
                or (current.spec.holder_identity != self.settings.identity)
            ):
                return False
            self._lease = current  # still ours, touched by someone: renew on it next time
            raise
        return True
