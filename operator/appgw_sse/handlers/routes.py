"""kopf wiring: the operator's lifecycle, SseRoute events, and Ingresses in AGIC mode.

kopf watches SseRoutes through one raw-event handler that only hands each event to the route book
and to `finalizers` (which holds our finalizer) and returns: no kopf handler ever waits for a
gateway, so a worker slot is held only for one event, and kopf stores no state on routes. Pods
and Services are listed and watched by `adapters.watch`, not by kopf, which would hold every
listed body."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from appgw_sse import metrics
from appgw_sse.adapters.azure_gateway import AzureGateways
from appgw_sse.adapters.kube import Kube
from appgw_sse.adapters.watch import ApiServer, ListWatch, collection_paths
from appgw_sse.config import OperatorConfig
from appgw_sse.core.contract import API_GROUP, API_VERSION, PLURAL
from appgw_sse.fence import LeadershipLost
from appgw_sse.finalizers import Finalizers
from appgw_sse.leader import LEASE_NAME
from appgw_sse.pods import PodReconciler, ProbeSettings
from appgw_sse.reconciler import GatewayReconciler
from appgw_sse.routebook import RouteBook
from appgw_sse.streamcheck import StreamChecker

log = logging.getLogger(__name__)

UNSEEN_RECHECK_SECONDS = 30.0


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = memo["config"]
    fence = memo.get("fence")  # the leader's (see running.py)
    kube = Kube(config.ledger_namespace, fence, LEASE_NAME)
    try:
        # Before kopf watches (it starts once this handler is done): see route_event.
        listing = await kube.listed_routes(config.namespaces)
    except (ApiException, OSError) as exc:
        raise kopf.TemporaryError(f"could not list the SseRoutes: {exc}", delay=5) from exc
    # kopf stores nothing on routes: with a raw-event handler only, it writes no progress or
    # diff-base and needs no finalizer. settings.persistence.finalizer must not name ours: kopf
    # removes its finalizer from objects when no handler needs it. kopf's queueing keeps its
    # defaults: a worker_limit bounds no memory (kopf queues the workers over the limit with
    # their events; 1,000 routes created at once cost the same +42 MiB with 20 workers and an
    # idle_timeout of 0.5 s as with the defaults), and the handler never waits for a gateway.
    settings.posting.level = logging.WARNING  # our own Events say what happened
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    book = RouteBook(kube, config.allowed_gateways)
    book.unseen = listing.handled
    try:
        book.posted = await kube.posted_messages(config.namespaces)
    except (ApiException, OSError) as exc:  # e.g. an older chart's RBAC: warnings come again
        log.warning("could not list the Events already posted: %s", exc)
    gateways = GatewayReconciler(config, book, AzureGateways(config.arm, fence), kube)
    probe = ProbeSettings(enabled=config.probe, interval=config.probe_interval)
    memo["book"], memo["gateways"] = book, gateways
    pods = memo["pods"] = PodReconciler(book, kube, config.debounce, probe)
    memo["streams"] = StreamChecker(book, kube, interval=config.stream_check_interval)
    memo["finalizers"] = Finalizers(kube, _released(gateways, pods))
    server = ApiServer.from_configuration()
    watches = [
        ListWatch(server, path, sink)
        for resource, sink in (("pods", pods.observe_pod), ("services", pods.observe_service))
        for path in collection_paths(resource, config.namespaces)
    ]
    pods.listed = lambda: all(watch.listed.is_set() for watch in watches)
    memo["tasks"] = [
        asyncio.create_task(gateways.resync(), name="resync"),
        asyncio.create_task(
            _restore_orphans(kube, gateways, listing.gateways), name="orphan ledgers"
        ),
        asyncio.create_task(_drop_vanished(kube, book, config), name="unseen routes"),
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


async def _restore_orphans(kube: Kube, gateways: GatewayReconciler, routed: set[str]) -> None:
    """After a restart, a gateway with a ledger but no route left (e.g. its route's finalizer
    was removed by hand) gets a pass that restores its originals: nothing else would mark it.
    `routed`: the gateways the routes listed at startup name."""
    try:
        ledgers = await kube.ledger_gateways()
    except (ApiException, OSError) as exc:
        log.warning("could not look for ledgers without routes: %s", exc)
        return
    gateways.restore_orphans(ledgers, routed)


async def _drop_vanished(kube: Kube, book: RouteBook, config: OperatorConfig) -> None:
    """A route listed at startup that was gone before kopf listed (its finalizer removed by
    hand) brings no event: while routes are unseen, look again now and then."""
    while book.unseen:
        await asyncio.sleep(UNSEEN_RECHECK_SECONDS)
        try:
            book.unseen &= (await kube.listed_routes(config.namespaces)).handled
        except (ApiException, OSError) as exc:
            log.warning("could not list the SseRoutes again: %s", exc)


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


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def route_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Each route event is taken in and the handler returns: what waits for a gateway (a deleted
    route's finalizer) waits in `finalizers`, holding none of kopf's worker slots."""
    book: RouteBook = memo["book"]
    finalizers: Finalizers = memo["finalizers"]
    meta = body["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    try:
        if type == "DELETED":
            finalizers.forget(namespace, name)
            book.forget(namespace, name)
        else:
            finalizers.observe(body)
            await book.observe(body)
    except LeadershipLost as exc:  # the process stops; the next leader lists every route
        log.warning("route %s/%s: %s", namespace, name, exc)
    except Exception:  # e.g. a status write refused: kopf goes on with the next event
        log.exception(
            "route %s/%s: taking in its %s event failed", namespace, name, type or "listed"
        )
    finally:
        book.unseen.discard(f"{namespace}/{name}")  # the restart guard (see RouteBook.unseen)


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
