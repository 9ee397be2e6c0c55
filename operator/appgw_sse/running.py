"""`appgw-sse run`: health and metrics first, then the Lease, then kopf while it is held.

A standby replica runs no kopf at all (no watch, no write); only the Lease is read. On SIGTERM
kopf stops (its cleanup cancels the gateway workers: an update in flight keeps its ledger intent
for the next leader) and the Lease is handed over at once.
"""

import asyncio
import contextlib
import dataclasses
import logging
import signal

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from appgw_sse import health as healthz
from appgw_sse import metrics
from appgw_sse.config import OperatorConfig
from appgw_sse.leader import LeaderElector, LeadershipLost, LeaseSettings, NamespaceNotFound

log = logging.getLogger(__name__)

EXIT_OK, EXIT_LEADERSHIP_LOST = 0, 1


class StartupError(Exception):
    """A setting that keeps the operator from starting, in one line naming its flag or
    variable: retrying would not help."""


async def operate(config: OperatorConfig, health_port: int, lease: LeaseSettings) -> int:
    health = healthz.Health(identity=lease.identity)
    try:
        runner = await healthz.serve(health, health_port)
    except OSError as exc:
        raise StartupError(
            f"--health-port {health_port}: {exc.strerror or exc} (another process has it?): "
            "choose a free port, or 0 for any"
        ) from None
    try:
        return await _lead(config, health, LeaderElector(lease))
    except NamespaceNotFound as exc:
        raise StartupError(
            f"POD_NAMESPACE={exc.namespace}: the operator's namespace {exc.namespace} does not "
            f"exist (its Lease and ledgers live there): create it (kubectl create namespace "
            f"{exc.namespace}) or set POD_NAMESPACE to the namespace the operator runs in"
        ) from None
    finally:
        await runner.cleanup()


async def _default_owner_id(config: OperatorConfig) -> str:
    """<namespace>-<8 hex of kube-system's uid>, for an installation without --owner-id."""
    from appgw_sse.adapters.kube import cluster_uid
    from appgw_sse.core.claims import default_owner

    try:
        owner = default_owner(config.ledger_namespace, await asyncio.to_thread(cluster_uid))
    except (ApiException, OSError, urllib3.exceptions.HTTPError) as exc:
        detail = getattr(exc, "reason", None) or exc
        raise StartupError(
            "--owner-id is not set and its default could not be derived: reading namespace "
            f"kube-system failed ({detail}); grant get on namespace kube-system (the chart "
            "does) or set --owner-id"
        ) from None
    log.info("owner id %s (derived: no --owner-id)", owner)
    return owner


async def _lead(
    config: OperatorConfig,
    health: healthz.Health,
    elector: LeaderElector,
) -> int:
    # Signals stop kopf through its stop flag (as a lost Lease does). kopf installs handlers of
    # its own as it starts; ours go back once it has, or its stop-flag waiter would hang.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        log.info("%s received: stopping", sig.name)
        stopping.set()

    def handle_signals(_: object = None) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop, sig)

    handle_signals()
    metrics.LEADER.set(0)
    acquiring = asyncio.create_task(elector.acquire(), name="lease acquire")
    stopped = asyncio.create_task(stopping.wait(), name="stop signal")
    await asyncio.wait({acquiring, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not acquiring.done():
        acquiring.cancel()
        log.info("stopped while standing by")
        return EXIT_OK
    acquiring.result()
    if not config.owner_id:  # read by the leader only: a standby reads nothing but the Lease
        try:
            config = dataclasses.replace(config, owner_id=await _default_owner_id(config))
        except StartupError:
            await elector.release()
            raise
    metrics.LEADER.set(1)
    # Created before kopf so that kopf's shutdown, which cancels every task born after it
    # started, leaves the renewals to us.
    holding = asyncio.create_task(elector.hold(), name="lease renew")
    health.started = loop.create_future()
    health.started.add_done_callback(handle_signals)
    health.operator = asyncio.create_task(
        kopf.operator(
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=True,
            memo=kopf.Memo(config=config, fence=elector.fence),
            stop_flag=stopping,
            ready_flag=health.started,
        ),
        name="kopf",
    )
    await asyncio.wait({holding, health.operator}, return_when=asyncio.FIRST_COMPLETED)
    if holding.done():
        reason = holding.exception()
        log.error("%s: stopping all work now; exiting to restart as a standby", reason)
        stopping.set()
        await health.operator
        metrics.LEADER.set(0)
        if isinstance(reason, LeadershipLost):
            return EXIT_LEADERSHIP_LOST
        raise reason if reason is not None else RuntimeError("lease renewal ended")
    holding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await holding
    metrics.LEADER.set(0)
    await elector.release()
    health.operator.result()  # kopf's own failure, if any, ends the process with it
    return EXIT_OK
