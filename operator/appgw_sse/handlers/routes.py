"""kopf handlers. They only feed the route book; the gateway and pod workers do the work. Pods
and Services are watched by `adapters.watch`, not by kopf, which would hold every listed body."""

import asyncio
import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from appgw_sse import metrics
from appgw_sse.adapters.azure_gateway import AzureGateways
from appgw_sse.adapters.kube import Kube
from appgw_sse.adapters.watch import ApiServer, ListWatch, collection_paths
from appgw_sse.config import OperatorConfig
from appgw_sse.core.contract import API_GROUP, API_VERSION, FINALIZER, PLURAL
from appgw_sse.leader import LEASE_NAME
from appgw_sse.pods import PodReconciler, ProbeSettings
from appgw_sse.reconciler import GatewayReconciler
from appgw_sse.routebook import RouteBook
from appgw_sse.streamcheck import StreamChecker

log = logging.getLogger(__name__)

# How long one run of the delete handler waits for its gateway before kopf retries it.
_RELEASE_WAIT_SECONDS = 30.0


@kopf.index(API_GROUP, API_VERSION, PLURAL)
async def listed_routes(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], str] | None:
    """Routes handled before (they carry our finalizer), by gateway and by namespace. kopf
    fills this from its first listing; the workers wait until the route book has observed each
    of them, so a restarted operator never plans from part of the routes."""
    if FINALIZER not in (body.get("metadata", {}).get("finalizers") or ()):
        return None
    gateway = str((body.get("spec") or {}).get("gateway", {}).get("id", "")).lower()
    key = f"{namespace}/{name}"
    return {("gateway", gateway): key, ("namespace", str(namespace)): key}


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    config: OperatorConfig = memo["config"]
    settings.persistence.finalizer = FINALIZER
    # Keep kopf's bookkeeping in our own annotation prefix, not in status or kopf.zalando.org.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # our own Events say what happened
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    fence = memo.get("fence")  # the leader's (see running.py)
    kube = Kube(config.ledger_namespace, fence, LEASE_NAME)
    book = RouteBook(kube, config.allowed_gateways)
    book.listed = kwargs["listed_routes"]  # kopf passes each index by its handler's name
    try:
        book.posted = await kube.posted_messages(config.namespaces)
    except (ApiException, OSError) as exc:  # e.g. an older chart's RBAC: warnings come again
        log.warning("could not list the Events already posted: %s", exc)
    gateways = GatewayReconciler(config, book, AzureGateways(config.arm, fence), kube)
    probe = ProbeSettings(enabled=config.probe, interval=config.probe_interval)
    memo["book"], memo["gateways"] = book, gateways
    pods = memo["pods"] = PodReconciler(book, kube, config.debounce, probe)
    memo["streams"] = StreamChecker(book, kube, interval=config.stream_check_interval)
    server = ApiServer.from_configuration()
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
    await memo["streams"].close()
    await memo["pods"].close()
    await memo["gateways"].close()


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def route_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    book: RouteBook = memo["book"]
    if type == "DELETED":
        book.forget(str(namespace), name)
    else:
        await book.observe(body)


async def ingress_event(namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """AGIC mode: an Ingress changed, so its namespace's AGIC gateways are planned again."""
    memo["gateways"].ingress_changed(str(namespace))


def watch_ingresses() -> None:
    """Watch Ingresses (AGIC mode); not registered with --no-agic, whose RBAC has no rights
    on them."""
    kopf.on.event("networking.k8s.io", "v1", "ingresses")(ingress_event)


@kopf.on.delete(API_GROUP, API_VERSION, PLURAL)
async def route_deleted(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Hold the finalizer until the gateway is settled without the route and no pod carries
    its annotations any more."""
    try:
        async with asyncio.timeout(_RELEASE_WAIT_SECONDS):
            await memo["gateways"].released(str(namespace), name)
            await memo["pods"].released(str(namespace), name)
    except TimeoutError:
        raise kopf.TemporaryError(
            "waiting until the gateway is settled without it", delay=5
        ) from None
    log.info(
        "route %s/%s deleted: its gateway is settled without it and no pod carries it",
        namespace,
        name,
        extra={"route": f"{namespace}/{name}"},
    )
