"""kopf wiring: the operator's lifecycle, and Ingresses in AGIC mode. SseRoutes, Pods and
Services are listed and watched by `adapters.watch`, not by kopf, which holds every listed body
and works each object in a task of its own; our finalizer on routes is held by `finalizers`."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from appgw_sse import metrics
from appgw_sse.adapters.azure_gateway import AzureGateways
from appgw_sse.adapters.kube import Kube
from appgw_sse.adapters.watch import ApiServer, ListWatch, collection_paths
from appgw_sse.config import OperatorConfig
from appgw_sse.core.contract import API_GROUP, API_VERSION, PLURAL
from appgw_sse.finalizers import Finalizers
from appgw_sse.health import ROUTE_WATCH
from appgw_sse.leader import LEASE_NAME
from appgw_sse.pods import PodReconciler, ProbeSettings
from appgw_sse.reconciler import GatewayReconciler
from appgw_sse.routebook import RouteBook
from appgw_sse.streamcheck import StreamChecker

log = logging.getLogger(__name__)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = memo["config"]
    settings.posting.level = logging.WARNING  # our own Events say what happened
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    fence = memo.get("fence")  # the leader's (see running.py)
    kube = Kube(config.ledger_namespace, fence, LEASE_NAME)
    book = RouteBook(kube, config.allowed_gateways)
    try:
        book.posted = await kube.posted_messages(config.namespaces)
    except (ApiException, OSError) as exc:  # e.g. an older chart's RBAC: warnings come again
        log.warning("could not list the Events already posted: %s", exc)
    gateways = GatewayReconciler(config, book, AzureGateways(config.arm, fence), kube)
    probe = ProbeSettings(enabled=config.probe, interval=config.probe_interval)
    memo["book"], memo["gateways"] = book, gateways
    pods = memo["pods"] = PodReconciler(book, kube, config.debounce, probe)
    memo["streams"] = StreamChecker(book, kube, interval=config.stream_check_interval)
    finalizers = memo["finalizers"] = Finalizers(kube, _released(gateways, pods))
    server = ApiServer.from_configuration()
    routes = [
        ListWatch(server, path, _route_sink(book, finalizers))
        for path in collection_paths(PLURAL, config.namespaces, f"/apis/{API_GROUP}/{API_VERSION}")
    ]
    book.listed = lambda: all(watch.listed.is_set() for watch in routes)
    watches = [
        ListWatch(server, path, sink)
        for resource, sink in (("pods", pods.observe_pod), ("services", pods.observe_service))
        for path in collection_paths(resource, config.namespaces)
    ]
    pods.listed = lambda: all(watch.listed.is_set() for watch in watches)
    memo["tasks"] = [
        asyncio.create_task(gateways.resync(), name="resync"),
        asyncio.create_task(_restore_orphans(kube, gateways, config), name="orphan ledgers"),
        *(asyncio.create_task(watch.run(), name=f"watch {watch.path}") for watch in watches),
        *(asyncio.create_task(watch.run(), name=f"{ROUTE_WATCH} {watch.path}") for watch in routes),
    ]
    metrics.ROUTES.source = book.routes.values
    log.info(
        "started: writing gateways matching %s%s; debounce %gs, resync %gs, probes %s",
        ", ".join(config.allowed_gateways) or "nothing",
        " (dry run)" if config.dry_run else "",
        config.debounce,
        config.resync,
        f"every {config.probe_interval:g}s" if config.probe else "off",
    )


async def _restore_orphans(kube: Kube, gateways: GatewayReconciler, config: OperatorConfig) -> None:
    """After a restart, a gateway with a ledger but no route left (e.g. its route's finalizer
    was removed by hand) gets a pass that restores its originals: nothing else would mark it."""
    try:
        ledgers = await kube.ledger_gateways()
        routed = await kube.routed_gateways(config.namespaces)
    except (ApiException, OSError) as exc:
        log.warning("could not look for ledgers without routes: %s", exc)
        return
    gateways.restore_orphans(ledgers, routed)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for task in memo["tasks"]:
        task.cancel()
    await asyncio.gather(*memo["tasks"], return_exceptions=True)
    metrics.ROUTES.source = tuple
    await memo["finalizers"].close()
    await memo["streams"].close()
    await memo["pods"].close()
    await memo["gateways"].close()


def _route_sink(
    book: RouteBook, finalizers: Finalizers
) -> Callable[[str, Mapping[str, Any]], Awaitable[None]]:
    """The route watch's consumer: each event is taken in before the next is read."""

    async def route_event(event_type: str, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        try:
            if event_type == "DELETED":
                finalizers.forget(meta["namespace"], meta["name"])
                book.forget(meta["namespace"], meta["name"])
            else:
                finalizers.observe(body)
                await book.observe(body)
        except Exception:  # e.g. a status write refused: the watch goes on with the next
            log.exception(
                "route %s/%s: taking in its %s event failed",
                meta.get("namespace"),
                meta.get("name"),
                event_type,
            )

    return route_event


def _released(
    gateways: GatewayReconciler, pods: PodReconciler
) -> Callable[[str, str], Awaitable[None]]:
    """When a deleted route may go: its gateway is settled without it and no pod carries it."""

    async def released(namespace: str, name: str) -> None:
        await gateways.released(namespace, name)
        await pods.released(namespace, name)

    return released


async def ingress_event(namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """AGIC mode: an Ingress changed, so its namespace's AGIC gateways are planned again."""
    memo["gateways"].ingress_changed(str(namespace))


def watch_ingresses() -> None:
    """Watch Ingresses (AGIC mode); not registered with --no-agic, whose RBAC has no rights
    on them."""
    kopf.on.event("networking.k8s.io", "v1", "ingresses")(ingress_event)
