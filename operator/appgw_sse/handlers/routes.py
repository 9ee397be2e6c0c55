"""kopf handlers for SseRoutes. They only feed the reconciler; it does the work per gateway."""

import asyncio
import logging
from typing import Any

import kopf

from appgw_sse import metrics
from appgw_sse.adapters.azure_gateway import AzureGateways
from appgw_sse.adapters.kube import Kube
from appgw_sse.core.contract import API_GROUP, API_VERSION, FINALIZER, PLURAL
from appgw_sse.pods import PodReconciler, ProbeSettings
from appgw_sse.reconciler import OperatorConfig, Reconciler

log = logging.getLogger(__name__)

# How long one run of the delete handler waits for its gateway before kopf retries it.
_RELEASE_WAIT_SECONDS = 30.0


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
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
    kube = Kube(config.namespace)
    reconciler = Reconciler(config, AzureGateways(config.arm), kube)
    pods = PodReconciler(
        reconciler.routes, kube, reconciler.write_backends_status, config.debounce,
        ProbeSettings(enabled=config.probe, interval=config.probe_interval),
    )  # fmt: skip
    reconciler.on_route_change = pods.mark
    memo["reconciler"], memo["pods"] = reconciler, pods
    metrics.ROUTES.source = reconciler.routes.values
    memo["resync"] = asyncio.create_task(reconciler.resync(), name="resync")
    log.info(
        "started: writing gateways matching %s%s; debounce %gs, resync %gs, probes %s",
        ", ".join(config.allowed_gateways) or "nothing", " (dry run)" if config.dry_run else "",
        config.debounce, config.resync,
        f"every {config.probe_interval:g}s" if config.probe else "off",
    )  # fmt: skip


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo["resync"].cancel()
    metrics.ROUTES.source = tuple
    await memo["pods"].close()
    await memo["reconciler"].close()


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def route_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    reconciler: Reconciler = memo["reconciler"]
    if type == "DELETED":
        reconciler.forget(str(namespace), name)
    else:
        await reconciler.observe(body)


# Async, so kopf calls them on the event loop: a sync handler runs in a thread, where the pod
# worker's tasks cannot be created and its state would be shared across threads.
@kopf.on.event("", "v1", "pods")
async def pod_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo["pods"].observe_pod(type, body)


@kopf.on.event("", "v1", "services")
async def service_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo["pods"].observe_service(type, body)


@kopf.on.delete(API_GROUP, API_VERSION, PLURAL)
async def route_deleted(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Hold the finalizer until the gateway is settled without the route and no pod carries
    its annotations any more."""
    try:
        async with asyncio.timeout(_RELEASE_WAIT_SECONDS):
            await memo["reconciler"].released(str(namespace), name)
            await memo["pods"].released(str(namespace), name)
    except TimeoutError:
        raise kopf.TemporaryError(
            "waiting until the gateway is settled without it", delay=5
        ) from None
    log.info("route %s/%s deleted: its gateway is settled without it and no pod carries it",
             namespace, name, extra={"route": f"{namespace}/{name}"})  # fmt: skip
