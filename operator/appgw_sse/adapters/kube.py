"""Kubernetes access for the reconciler: route status, Events, and the ledger ConfigMaps.

The official client is synchronous; every call runs in a thread so the event loop (the
watches, the gateway workers) never blocks. Every request goes by path through its ApiClient
(`_Api`), not through its generated API classes: importing CoreV1Api and NetworkingV1Api for a
handful of calls cost 18 MiB of the operator's memory.
"""

import asyncio
import datetime
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple

import kubernetes
from kubernetes.client.exceptions import ApiException

from appgw_sse.core.agic import Ingress, IngressLedger, agic_ingress
from appgw_sse.core.contract import API_GROUP, API_VERSION, FINALIZER, KIND, PLURAL
from appgw_sse.core.ledger import Ledger
from appgw_sse.fence import Fence, LeadershipLost, Unfenced
from appgw_sse.ports import IngressesUnavailable

log = logging.getLogger(__name__)
_MANAGED_BY = {"app.kubernetes.io/managed-by": "appgw-sse-operator"}
_COMPONENT = "appgw-sse-operator"  # the source of our Events
# Who owns the status in managedFields, beside the GitOps tool owning the spec (the client's
# default would be its User-Agent, "OpenAPI-Generator").
_FIELD_MANAGER = "appgw-sse-operator"
# Who owns our finalizer (the status's manager owns nothing but the status).
_FINALIZER_MANAGER = "appgw-sse-operator-finalizer"
_PENDING = "intent"  # the ConfigMap key of the pending ledger (its name in stored ledgers)
# Who wrote a ledger ConfigMap: the Lease holder's identity and its holding (leaseTransitions).
_HOLDER, _EPOCH = f"{API_GROUP}/lease-holder", f"{API_GROUP}/lease-transitions"
_LEDGER_PREFIX = "appgw-sse-ledger-"
_INGRESSES = "/apis/networking.k8s.io/v1"


def load_config() -> None:
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


def cluster_uid() -> str:
    """kube-system's uid: the cluster's identity (kube-system is never deleted)."""
    load_config()
    namespace = _Api(kubernetes.client.ApiClient()).request("GET", "/api/v1/namespaces/kube-system")
    return str(namespace["metadata"]["uid"])


def ledger_name(gateway_id: str) -> str:
    digest = hashlib.sha256(gateway_id.lower().encode()).hexdigest()[:12]
    return f"{_LEDGER_PREFIX}{digest}"


def ingress_ledger_name(namespace: str) -> str:
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:12]
    return f"appgw-sse-ingresses-{digest}"


def _route_path(namespace: str, name: str) -> str:
    return f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def _discard(response: Any) -> None:
    """Let a write's answer go unread: the API server echoes the whole object, which the watch
    brings anyway, and decoding it into the client's models costs more than the request (at
    5,000 pods, a V1Pod model each)."""
    response.drain_conn()
    response.release_conn()


def _resource_version(config_map: dict[str, Any]) -> str:
    return str(config_map["metadata"]["resourceVersion"])


class RouteListing(NamedTuple):
    # The routes handled before (namespace/name: they carry our finalizer), which a restarted
    # operator must see before it plans.
    handled: set[str]
    # The gateways (lower-cased ids) the routes name: one with a ledger and none of them is
    # left to restore.
    gateways: set[str]


class _Api:
    """Requests by path through the official client's ApiClient: its configuration,
    authentication, TLS and ApiException, without a generated per-group API class."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str | int | None] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        decode: bool = True,
    ) -> Any:
        """The answer's JSON; with `decode` False, nothing (the answer is let go unread)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.client.param_serialize(
            method,
            path,
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.client.call_api(*request)
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        if not decode:
            _discard(response.response)
            return None
        return json.loads(response.read())  # type: ignore[no-untyped-call]


class Kube:
    def __init__(
        self, ledger_namespace: str, fence: Fence | None = None, lease_name: str = ""
    ) -> None:
        load_config()
        self.ledger_namespace, self.lease_name = ledger_namespace, lease_name
        self.fence = fence or Unfenced()
        self.api = _Api(kubernetes.client.ApiClient())
        # The ledger ConfigMaps' resourceVersions as last read or written, by gateway id, and
        # the Lease holding that wrote each (as read).
        self._ledger_versions: dict[str, str] = {}
        self._ledger_epochs: dict[str, int] = {}

    async def patch_route_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.fence.check()  # a deposed leader's status would contradict the new one's
        try:
            await self._merge_patch(
                f"{_route_path(namespace, name)}/status", {"status": status}, _FIELD_MANAGER
            )
        except ApiException as exc:
            if exc.status != 404:  # a route deleted meanwhile needs no status
                raise

    async def patch_route_finalizers(
        self,
        namespace: str,
        name: str,
        finalizers: list[str],
        resource_version: str,
        drop_annotations: Sequence[str] = (),
    ) -> bool:
        """Write the route's finalizers (and remove these annotations) if it is still at
        `resource_version` (another writer's change to the list is never lost); False when it
        changed meanwhile or is gone."""
        self.fence.check()
        metadata: dict[str, Any] = {"finalizers": finalizers, "resourceVersion": resource_version}
        if drop_annotations:
            metadata["annotations"] = dict.fromkeys(drop_annotations)
        try:
            await self._merge_patch(
                _route_path(namespace, name), {"metadata": metadata}, _FINALIZER_MANAGER
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def patch_pod_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None:
        """Merge-patch only the given annotation keys (None removes one); labels untouched."""
        await self._patch_annotations(f"/api/v1/namespaces/{namespace}/pods/{name}", patch)

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
            await asyncio.to_thread(
                self.api.request,
                "POST",
                f"/api/v1/namespaces/{route['namespace']}/events",
                body=event,
                decode=False,
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
        async for event in self._listed(
            "/api/v1", "events", namespaces, {"fieldSelector": selector}
        ):
            uid = (event.get("involvedObject") or {}).get("uid")
            if uid and event.get("message"):
                posted.setdefault(uid, set()).add(event["message"])
        return posted

    async def listed_routes(self, namespaces: Sequence[str]) -> RouteListing:
        """One listing of the SseRoutes in `namespaces` (none: all), kept as keys only."""
        handled: set[str] = set()
        gateways: set[str] = set()
        async for route in self._listed(f"/apis/{API_GROUP}/{API_VERSION}", PLURAL, namespaces):
            meta = route["metadata"]
            if FINALIZER in (meta.get("finalizers") or ()):
                handled.add(f"{meta['namespace']}/{meta['name']}")
            gateways.add(
                str(((route.get("spec") or {}).get("gateway") or {}).get("id", "")).lower()
            )
        return RouteListing(handled, gateways)

    async def _listed(
        self,
        group: str,
        plural: str,
        namespaces: Sequence[str],
        query: dict[str, str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Each object of a collection, read in pages of 500 (each let go before the next)."""
        for namespace in namespaces or [""]:  # none: every namespace at once
            path = f"{group}/namespaces/{namespace}/{plural}" if namespace else f"{group}/{plural}"
            token = None
            while True:
                page = await asyncio.to_thread(
                    self.api.request,
                    "GET",
                    path,
                    {**(query or {}), "limit": 500, "continue": token},
                )
                for item in page.get("items") or ():
                    yield item
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break

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
            self.api.request,
            "GET",
            self._config_maps,
            {"labelSelector": ",".join(f"{k}={v}" for k, v in _MANAGED_BY.items())},
        )
        return [
            (c.get("data") or {})["gatewayId"]
            for c in found.get("items") or ()
            if str(c["metadata"]["name"]).startswith(_LEDGER_PREFIX)
            if "gatewayId" in (c.get("data") or {})
        ]

    # -- AGIC mode: Ingress annotations, and their ledger ---------------------------------

    async def list_agic_ingresses(self, namespace: str) -> list[Ingress]:
        """The Ingresses (networking.k8s.io/v1) of AGIC's class in the namespace."""
        try:
            listing = await asyncio.to_thread(
                self.api.request, "GET", f"{_INGRESSES}/namespaces/{namespace}/ingresses"
            )
        except (ApiException, OSError) as exc:
            detail = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else str(exc)
            raise IngressesUnavailable(
                f"could not list the Ingresses of namespace {namespace}: {detail}"
            ) from exc
        items = listing.get("items") or []
        return [i for i in map(agic_ingress, items) if i is not None]

    async def patch_ingress_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None:
        """Merge-patch only the given annotation keys (None removes one)."""
        await self._patch_annotations(
            f"{_INGRESSES}/namespaces/{namespace}/ingresses/{name}", patch
        )

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
            self.api.request, "GET", self._config_maps, {"fieldSelector": f"metadata.name={name}"}
        )
        if not found.get("items"):
            self._ledger_versions.pop(key, None)
            self._ledger_epochs.pop(key, None)
            return None
        config_map = found["items"][0]
        self._ledger_versions[key] = _resource_version(config_map)
        annotations = config_map["metadata"].get("annotations") or {}
        self._ledger_epochs[key] = int(annotations.get(_EPOCH) or 0)
        return dict(config_map.get("data") or {})

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
            self.api.request,
            "GET",
            f"/apis/coordination.k8s.io/v1/namespaces/{self.ledger_namespace}/leases",
            query={"fieldSelector": f"metadata.name={self.lease_name}"},
        )
        spec = (found["items"][0].get("spec") or {}) if found["items"] else {}
        if (spec.get("holderIdentity"), spec.get("leaseTransitions") or 0) != (
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
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {**metadata, **({"resourceVersion": version} if version else {})},
            "data": data,
        }
        await self._fenced(key, name)
        if version is None:
            written = await asyncio.to_thread(
                self.api.request, "POST", self._config_maps, body=body
            )
        else:
            written = await asyncio.to_thread(
                self.api.request, "PUT", f"{self._config_maps}/{name}", body=body
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
            self.api.request,
            "DELETE",
            f"{self._config_maps}/{name}",
            body={"preconditions": {"resourceVersion": version}},
            decode=False,
        )

    @property
    def _config_maps(self) -> str:
        return f"/api/v1/namespaces/{self.ledger_namespace}/configmaps"

    async def _patch_annotations(self, path: str, patch: dict[str, str | None]) -> None:
        """Merge-patch only the given annotation keys of an object (None removes one). Fenced:
        AGIC turns an Ingress's annotations into gateway writes, and a pod's are read as ours."""
        self.fence.check()
        try:
            await self._merge_patch(path, {"metadata": {"annotations": patch}})
        except ApiException as exc:
            if exc.status != 404:  # an object gone meanwhile needs nothing
                raise

    async def _merge_patch(
        self, path: str, patch: dict[str, Any], field_manager: str | None = None
    ) -> None:
        """A JSON merge patch, its answer let go unread."""
        await asyncio.to_thread(
            self.api.request,
            "PATCH",
            path,
            query={"fieldManager": field_manager},
            body=patch,
            content_type="application/merge-patch+json",
            decode=False,
        )
