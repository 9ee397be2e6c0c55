"""Kubernetes access for the reconciler: route status, Events, and the ledger ConfigMaps.

The official client is synchronous; every call runs in a thread so the event loop (kopf's
watches, the gateway workers) never blocks.
"""

import asyncio
import datetime
import hashlib
import logging
from typing import Any

import kubernetes
from kubernetes.client import CoreV1Event, V1ConfigMap, V1DeleteOptions, V1Preconditions
from kubernetes.client.exceptions import ApiException

from appgw_sse.core.agic import Ingress, IngressLedger, agic_ingress
from appgw_sse.core.contract import API_GROUP, API_VERSION, KIND, PLURAL
from appgw_sse.core.ledger import Ledger

log = logging.getLogger(__name__)
_MANAGED_BY = {"app.kubernetes.io/managed-by": "appgw-sse-operator"}
_PENDING = "intent"  # the ConfigMap key of the pending ledger (its name in stored ledgers)


def load_config() -> None:
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


def ledger_name(gateway_id: str) -> str:
    digest = hashlib.sha256(gateway_id.lower().encode()).hexdigest()[:12]
    return f"appgw-sse-ledger-{digest}"


def ingress_ledger_name(namespace: str) -> str:
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:12]
    return f"appgw-sse-ingresses-{digest}"


def _resource_version(config_map: V1ConfigMap) -> str:
    assert config_map.metadata is not None and config_map.metadata.resource_version
    return config_map.metadata.resource_version


class Kube:
    def __init__(self, ledger_namespace: str) -> None:
        load_config()
        self.ledger_namespace = ledger_namespace
        self.core = kubernetes.client.CoreV1Api()
        self.custom = kubernetes.client.CustomObjectsApi()
        self.networking = kubernetes.client.NetworkingV1Api()
        # The ledger ConfigMaps' resourceVersions as last read or written, by gateway id.
        self._ledger_versions: dict[str, str] = {}

    async def patch_route_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object_status,
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                {"status": status},
            )
        except ApiException as exc:
            if exc.status != 404:  # a route deleted meanwhile needs no status
                raise

    async def patch_pod_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None:
        """Merge-patch only the given annotation keys (None removes one); labels untouched."""
        try:
            await asyncio.to_thread(
                self.core.patch_namespaced_pod,
                name,
                namespace,
                {"metadata": {"annotations": patch}},
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status != 404:  # a pod gone meanwhile needs nothing
                raise

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
            "source": {"component": "appgw-sse-operator"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "appgw-sse-operator",
        }
        try:
            await asyncio.to_thread(
                self.core.create_namespaced_event,
                route["namespace"],
                CoreV1Event.model_validate(event),
            )
        except (ApiException, OSError) as exc:
            log.warning(
                "could not record event %s on %s/%s: %s",
                reason,
                route["namespace"],
                route["name"],
                exc,
            )

    async def load_ledger(self, gateway_id: str) -> tuple[Ledger, Ledger | None]:
        """The confirmed ledger and a pending one (present after a crash mid-PUT)."""
        # A list by name answers an absent ledger with an empty list rather than a 404.
        found = await asyncio.to_thread(
            self.core.list_namespaced_config_map,
            self.ledger_namespace,
            field_selector=f"metadata.name={ledger_name(gateway_id)}",
        )
        if not found.items:
            self._ledger_versions.pop(gateway_id.lower(), None)
            return Ledger(gateway_id=gateway_id), None
        config_map = found.items[0]
        self._ledger_versions[gateway_id.lower()] = _resource_version(config_map)
        data = config_map.data or {}
        pending = Ledger.from_json(data[_PENDING]) if data.get(_PENDING) else None
        return Ledger.from_json(data["ledger"]), pending

    async def save_ledger(self, confirmed: Ledger, pending: Ledger | None = None) -> None:
        """Create or replace the ledger. The replace carries the resourceVersion last read or
        written, so a concurrent writer (another replica) gets a conflict instead of a silent
        overwrite."""
        key = confirmed.gateway_id.lower()
        name = ledger_name(confirmed.gateway_id)
        data = {"gatewayId": confirmed.gateway_id, "ledger": confirmed.to_json()}
        if pending is not None:
            data[_PENDING] = pending.to_json()
        version = self._ledger_versions.get(key)
        body = V1ConfigMap.model_validate(
            {
                "metadata": {
                    "name": name,
                    "namespace": self.ledger_namespace,
                    "labels": _MANAGED_BY,
                    "resourceVersion": version,
                },
                "data": data,
            }
        )
        if version is None:
            written = await asyncio.to_thread(
                self.core.create_namespaced_config_map, self.ledger_namespace, body
            )
        else:
            written = await asyncio.to_thread(
                self.core.replace_namespaced_config_map, name, self.ledger_namespace, body
            )
        self._ledger_versions[key] = _resource_version(written)

    async def delete_ledger(self, gateway_id: str) -> None:
        """Delete the ledger, if one was read or written (no request, and no 404, otherwise)."""
        version = self._ledger_versions.pop(gateway_id.lower(), None)
        if version is None:
            return
        await asyncio.to_thread(
            self.core.delete_namespaced_config_map,
            ledger_name(gateway_id),
            self.ledger_namespace,
            body=V1DeleteOptions(preconditions=V1Preconditions(resource_version=version)),
        )

    # -- AGIC mode: Ingress annotations, and their ledger ---------------------------------

    async def list_agic_ingresses(self, namespace: str) -> list[Ingress]:
        """The Ingresses (networking.k8s.io/v1) of AGIC's class in the namespace."""
        found = await asyncio.to_thread(self.networking.list_namespaced_ingress, namespace)
        listing = self.networking.api_client.sanitize_for_serialization(found)
        items = listing.get("items") or []
        return [i for i in map(agic_ingress, items) if i is not None]

    async def patch_ingress_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None:
        """Merge-patch only the given annotation keys (None removes one)."""
        try:
            await asyncio.to_thread(
                self.networking.patch_namespaced_ingress,
                name,
                namespace,
                {"metadata": {"annotations": patch}},
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status != 404:  # an Ingress gone meanwhile needs nothing
                raise

    async def load_ingress_ledger(self, namespace: str) -> IngressLedger:
        found = await asyncio.to_thread(
            self.core.list_namespaced_config_map,
            self.ledger_namespace,
            field_selector=f"metadata.name={ingress_ledger_name(namespace)}",
        )
        key = f"ingresses/{namespace}"
        if not found.items:
            self._ledger_versions.pop(key, None)
            return IngressLedger(namespace=namespace)
        self._ledger_versions[key] = _resource_version(found.items[0])
        return IngressLedger.from_json((found.items[0].data or {})["ledger"])

    async def save_ingress_ledger(self, ledger: IngressLedger) -> None:
        """Create, replace (with the resourceVersion last seen) or, when empty, delete it."""
        key, name = f"ingresses/{ledger.namespace}", ingress_ledger_name(ledger.namespace)
        version = self._ledger_versions.get(key)
        if ledger.is_empty:
            if version is not None:
                await asyncio.to_thread(
                    self.core.delete_namespaced_config_map,
                    name,
                    self.ledger_namespace,
                    body=V1DeleteOptions(preconditions=V1Preconditions(resource_version=version)),
                )
                self._ledger_versions.pop(key, None)
            return
        body = V1ConfigMap.model_validate(
            {
                "metadata": {
                    "name": name,
                    "namespace": self.ledger_namespace,
                    "labels": _MANAGED_BY,
                    "resourceVersion": version,
                },
                "data": {"namespace": ledger.namespace, "ledger": ledger.to_json()},
            }
        )
        if version is None:
            written = await asyncio.to_thread(
                self.core.create_namespaced_config_map, self.ledger_namespace, body
            )
        else:
            written = await asyncio.to_thread(
                self.core.replace_namespaced_config_map, name, self.ledger_namespace, body
            )
        self._ledger_versions[key] = _resource_version(written)
