"""Kubernetes access for the reconciler: route status, Events, and the ledger ConfigMaps.

The official client is synchronous; every call runs in a thread so the event loop (kopf's
watches, the gateway workers) never blocks.
"""

import asyncio
import datetime
import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import kubernetes
from kubernetes.client import CoreV1Event, V1ConfigMap, V1DeleteOptions, V1Preconditions
from kubernetes.client.exceptions import ApiException

from appgw_sse.core.agic import Ingress, IngressLedger, agic_ingress
from appgw_sse.core.contract import API_GROUP, API_VERSION, KIND, PLURAL
from appgw_sse.core.ledger import Ledger
from appgw_sse.fence import Fence, LeadershipLost, Unfenced
from appgw_sse.ports import IngressesUnavailable

log = logging.getLogger(__name__)
_MANAGED_BY = {"app.kubernetes.io/managed-by": "appgw-sse-operator"}
_COMPONENT = "appgw-sse-operator"  # the source of our Events
# Who owns the status in managedFields, beside the GitOps tool owning the spec (the client's
# default would be its User-Agent, "OpenAPI-Generator").
_FIELD_MANAGER = "appgw-sse-operator"
_PENDING = "intent"  # the ConfigMap key of the pending ledger (its name in stored ledgers)
# Who wrote a ledger ConfigMap: the Lease holder's identity and its holding (leaseTransitions).
_HOLDER, _EPOCH = f"{API_GROUP}/lease-holder", f"{API_GROUP}/lease-transitions"
_LEDGER_PREFIX = "appgw-sse-ledger-"


def load_config() -> None:
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


def cluster_uid() -> str:
    """kube-system's uid: the cluster's identity (kube-system is never deleted)."""
    load_config()
    namespace = kubernetes.client.CoreV1Api().read_namespace("kube-system")
    assert namespace.metadata is not None
    return str(namespace.metadata.uid)


def ledger_name(gateway_id: str) -> str:
    digest = hashlib.sha256(gateway_id.lower().encode()).hexdigest()[:12]
    return f"{_LEDGER_PREFIX}{digest}"


def ingress_ledger_name(namespace: str) -> str:
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:12]
    return f"appgw-sse-ingresses-{digest}"


def _discard(response: Any) -> None:
    """Let a write's answer go unread: the API server echoes the whole object, which the watch
    brings anyway, and decoding it into the client's models costs more than the request (at
    5,000 pods, a V1Pod model each)."""
    response.drain_conn()
    response.release_conn()


def _resource_version(config_map: V1ConfigMap) -> str:
    assert config_map.metadata is not None and config_map.metadata.resource_version
    return config_map.metadata.resource_version


class Kube:
    def __init__(
        self, ledger_namespace: str, fence: Fence | None = None, lease_name: str = ""
    ) -> None:
        load_config()
        self.ledger_namespace, self.lease_name = ledger_namespace, lease_name
        self.fence = fence or Unfenced()
        self.core = kubernetes.client.CoreV1Api()
        self.custom = kubernetes.client.CustomObjectsApi()
        self.networking = kubernetes.client.NetworkingV1Api()
        self.coordination = kubernetes.client.CoordinationV1Api()
        # The ledger ConfigMaps' resourceVersions as last read or written, by gateway id, and
        # the Lease holding that wrote each (as read).
        self._ledger_versions: dict[str, str] = {}
        self._ledger_epochs: dict[str, int] = {}

    async def patch_route_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            _discard(
                await asyncio.to_thread(
                    self.custom.patch_namespaced_custom_object_status,
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    name,
                    {"status": status},
                    field_manager=_FIELD_MANAGER,
                    _preload_content=False,
                )
            )
        except ApiException as exc:
            if exc.status != 404:  # a route deleted meanwhile needs no status
                raise

    async def patch_pod_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None:
        """Merge-patch only the given annotation keys (None removes one); labels untouched."""
        await _patch_annotations(self.core.patch_namespaced_pod, namespace, name, patch)

    async def post_event(
        self, route: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        """Record a Kubernetes Event on the route; failures are logged, never raised."""
        now = datetime.datetime.now(tz=datetime.UTC).isoformat()
        event = {
            "metadata": {"generateName": f"{route['name']}.", "namespace": route["namespace"]},
            "involvedObject": {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, **route},
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": _COMPONENT},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": _COMPONENT,
        }
        try:
            _discard(
                await asyncio.to_thread(
                    self.core.create_namespaced_event,
                    route["namespace"],
                    CoreV1Event.model_validate(event),
                    _preload_content=False,
                )
            )
        except (ApiException, OSError) as exc:
            log.warning(
                "could not record event %s on %s/%s: %s",
                reason,
                route["namespace"],
                route["name"],
                exc,
            )

    async def posted_messages(self, namespaces: Sequence[str]) -> dict[str, set[str]]:
        """The messages of the Events the operator posted that still live (an hour, by default),
        by the uid of the route they are on: read once at start, so that a restart does not
        post every route's standing warnings again."""
        selector = f"involvedObject.kind={KIND},source={_COMPONENT}"
        posted: dict[str, set[str]] = {}
        for namespace in namespaces or [""]:  # none: every namespace at once
            token = None
            while True:
                page = await asyncio.to_thread(
                    functools.partial(self.core.list_namespaced_event, namespace)
                    if namespace
                    else self.core.list_event_for_all_namespaces,
                    field_selector=selector,
                    limit=500,
                    _continue=token,
                )
                for event in page.items:
                    uid = event.involved_object.uid if event.involved_object else None
                    if uid and event.message:
                        posted.setdefault(uid, set()).add(event.message)
                token = page.metadata.var_continue if page.metadata else None
                if not token:
                    break
        return posted

    async def load_ledger(self, gateway_id: str) -> tuple[Ledger, Ledger | None]:
        """The confirmed ledger and a pending one (present after a crash mid-PUT)."""
        data = await self._read(gateway_id.lower(), ledger_name(gateway_id))
        if data is None:
            return Ledger(gateway_id=gateway_id), None
        pending = Ledger.from_json(data[_PENDING]) if data.get(_PENDING) else None
        return Ledger.from_json(data["ledger"]), pending

    async def save_ledger(self, confirmed: Ledger, pending: Ledger | None = None) -> None:
        data = {"gatewayId": confirmed.gateway_id, "ledger": confirmed.to_json()}
        if pending is not None:
            data[_PENDING] = pending.to_json()
        await self._write(confirmed.gateway_id.lower(), ledger_name(confirmed.gateway_id), data)

    async def delete_ledger(self, gateway_id: str) -> None:
        await self._delete(gateway_id.lower(), ledger_name(gateway_id))

    async def ledger_gateways(self) -> list[str]:
        """The ids of the gateways that have a ledger."""
        found = await asyncio.to_thread(
            self.core.list_namespaced_config_map,
            self.ledger_namespace,
            label_selector=",".join(f"{k}={v}" for k, v in _MANAGED_BY.items()),
        )
        return [
            (c.data or {})["gatewayId"]
            for c in found.items
            if c.metadata and str(c.metadata.name).startswith(_LEDGER_PREFIX)
            if "gatewayId" in (c.data or {})
        ]

    async def routed_gateways(self, namespaces: Sequence[str]) -> set[str]:
        """The gateways (lower-cased ids) that the SseRoutes in `namespaces` (none: all) name."""
        listings: list[Any] = []
        for namespace in namespaces or [""]:  # none: every namespace at once
            listings.append(
                await asyncio.to_thread(
                    functools.partial(
                        self.custom.list_namespaced_custom_object,
                        API_GROUP,
                        API_VERSION,
                        namespace,
                        PLURAL,
                    )
                    if namespace
                    else functools.partial(
                        self.custom.list_cluster_custom_object, API_GROUP, API_VERSION, PLURAL
                    )
                )
            )
        return {
            str(((item.get("spec") or {}).get("gateway") or {}).get("id", "")).lower()
            for listing in listings
            for item in listing.get("items") or ()
        }

    # -- AGIC mode: Ingress annotations, and their ledger ---------------------------------

    async def list_agic_ingresses(self, namespace: str) -> list[Ingress]:
        """The Ingresses (networking.k8s.io/v1) of AGIC's class in the namespace."""
        try:
            found = await asyncio.to_thread(self.networking.list_namespaced_ingress, namespace)
        except (ApiException, OSError) as exc:
            detail = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else str(exc)
            raise IngressesUnavailable(
                f"could not list the Ingresses of namespace {namespace}: {detail}"
            ) from exc
        listing = self.networking.api_client.sanitize_for_serialization(found)
        items = listing.get("items") or []
        return [i for i in map(agic_ingress, items) if i is not None]

    async def patch_ingress_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None:
        """Merge-patch only the given annotation keys (None removes one)."""
        await _patch_annotations(self.networking.patch_namespaced_ingress, namespace, name, patch)

    async def load_ingress_ledger(self, namespace: str) -> IngressLedger:
        data = await self._read(f"ingresses/{namespace}", ingress_ledger_name(namespace))
        return (
            IngressLedger(namespace=namespace)
            if data is None
            else IngressLedger.from_json(data["ledger"])
        )

    async def save_ingress_ledger(self, ledger: IngressLedger) -> None:
        """Create or replace it; when empty, delete it."""
        key, name = f"ingresses/{ledger.namespace}", ingress_ledger_name(ledger.namespace)
        if ledger.is_empty:
            await self._delete(key, name)
        else:
            await self._write(
                key, name, {"namespace": ledger.namespace, "ledger": ledger.to_json()}
            )

    # -- ledger ConfigMaps ----------------------------------------------------------------
    # Read by a list by name (an absent one is an empty list, not a 404); replaced and deleted
    # with the resourceVersion last read or written, so a concurrent writer (another replica)
    # gets a conflict instead of a silent overwrite.

    async def _read(self, key: str, name: str) -> dict[str, str] | None:
        found = await asyncio.to_thread(
            self.core.list_namespaced_config_map,
            self.ledger_namespace,
            field_selector=f"metadata.name={name}",
        )
        if not found.items:
            self._ledger_versions.pop(key, None)
            self._ledger_epochs.pop(key, None)
            return None
        config_map = found.items[0]
        self._ledger_versions[key] = _resource_version(config_map)
        annotations = (config_map.metadata.annotations if config_map.metadata else None) or {}
        self._ledger_epochs[key] = int(annotations.get(_EPOCH) or 0)
        return dict(config_map.data or {})

    async def _fenced(self, key: str, name: str) -> None:
        """Right before a ledger write: raise LeadershipLost unless this process leads now. The
        write itself is a compare-and-swap on the resourceVersion read, and each ledger carries
        the holding that wrote it: one written by a later holding of the Lease than ours means
        we were deposed (unless the Lease was recreated since: it still names us, as we knew
        it)."""
        self.fence.check()
        if not self.fence.enforced or self._ledger_epochs.get(key, 0) <= self.fence.epoch:
            return
        found = await asyncio.to_thread(
            self.coordination.list_namespaced_lease,
            self.ledger_namespace,
            field_selector=f"metadata.name={self.lease_name}",
        )
        spec = found.items[0].spec if found.items else None
        if spec is None or (spec.holder_identity, spec.lease_transitions or 0) != (
            self.fence.identity,
            self.fence.epoch,
        ):
            reason = f"ledger {name} was written by a later leader: this one was deposed"
            self.fence.lose(reason)
            raise LeadershipLost(reason)
        self.fence.check()

    async def _write(self, key: str, name: str, data: dict[str, str]) -> None:
        version = self._ledger_versions.get(key)
        metadata = {
            "name": name,
            "namespace": self.ledger_namespace,
            "labels": _MANAGED_BY,
            "annotations": {_HOLDER: self.fence.identity, _EPOCH: str(self.fence.epoch)},
        }
        body = V1ConfigMap.model_validate(
            {"metadata": {**metadata, "resourceVersion": version}, "data": data}
        )
        await self._fenced(key, name)
        if version is None:
            written = await asyncio.to_thread(
                self.core.create_namespaced_config_map, self.ledger_namespace, body
            )
        else:
            written = await asyncio.to_thread(
                self.core.replace_namespaced_config_map, name, self.ledger_namespace, body
            )
        self._ledger_versions[key] = _resource_version(written)
        self._ledger_epochs[key] = self.fence.epoch

    async def _delete(self, key: str, name: str) -> None:
        """Delete it if it was read or written (no request, and no 404, otherwise)."""
        version = self._ledger_versions.get(key)
        if version is None:
            return
        await self._fenced(key, name)
        del self._ledger_versions[key]
        await asyncio.to_thread(
            self.core.delete_namespaced_config_map,
            name,
            self.ledger_namespace,
            body=V1DeleteOptions(preconditions=V1Preconditions(resource_version=version)),
        )


async def _patch_annotations(
    patch_object: Callable[..., Any], namespace: str, name: str, patch: dict[str, str | None]
) -> None:
    """Merge-patch only the given annotation keys of an object (None removes one)."""
    try:
        _discard(
            await asyncio.to_thread(
                patch_object,
                name,
                namespace,
                {"metadata": {"annotations": patch}},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        )
    except ApiException as exc:
        if exc.status != 404:  # an object gone meanwhile needs nothing
            raise
