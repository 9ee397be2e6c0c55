"""The operator's Prometheus metrics, in one registry served at /metrics.

`gateway` labels hold the gateway's ARM resource id (names repeat across resource groups), the
same value as the `gateway` key of JSON log lines.
"""

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

disable_created_metrics()  # type: ignore[no-untyped-call]  # a `_created` twin per counter doubles the scrape for no use here

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

ARM_REQUESTS = Counter(
    "appgw_sse_arm_requests",
    "HTTP requests to Azure Resource Manager: every attempt, retry and long-running-operation "
    "poll (code is the HTTP status, or 'error' when no response came)",
    ["method", "code"],
    registry=REGISTRY,
)
GATEWAY_PUTS = Counter(
    "appgw_sse_gateway_puts",
    "Gateway updates (PUT) sent, by how their long-running operation ended",
    ["gateway", "result"],
    registry=REGISTRY,
)
DRIFT_CORRECTIONS = Counter(
    "appgw_sse_drift_corrections",
    "Owned values someone else changed that the operator put back",
    ["gateway"],
    registry=REGISTRY,
)
DRIFT_CONFLICTS = Gauge(
    "appgw_sse_drift_conflicts",
    "Owned values the operator stopped correcting (DriftConflict) until their route changes",
    ["gateway"],
    registry=REGISTRY,
)
POD_PATCHES = Counter(
    "appgw_sse_pod_patches",
    "Merge-patches of backend pods' annotations",
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "appgw_sse_reconcile_duration_seconds",
    "One pass over one gateway: read, plan, update (and wait for it), report",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
GATEWAY_UPDATE_SECONDS = Histogram(
    "appgw_sse_gateway_update_seconds",
    "From a gateway PUT to the end of its long-running operation (minutes on real gateways)",
    buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 2400, 3600),
    registry=REGISTRY,
)
STREAM_CHECKS = Counter(
    "appgw_sse_stream_check",
    "Stream checks (spec.streamCheck) by verdict: the reason of StreamVerified, e.g. Live",
    ["verdict"],
    registry=REGISTRY,
)
STREAM_CHECK_FIRST_EVENT_SECONDS = Histogram(
    "appgw_sse_stream_check_first_event_seconds",
    "Stream checks: from the request through the gateway to the first event (checks that got one)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
LEADER = Gauge(
    "appgw_sse_leader",
    "1 while this replica holds the lease and does the work, 0 while it stands by",
    registry=REGISTRY,
)


class _RouteConditions(Collector):
    """appgw_sse_routes{condition,status}: counted from the reconciler's routes at scrape time,
    so the gauge can never drift from what the status says."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[Any]] = tuple

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "appgw_sse_routes",
            "SseRoutes known to the operator, by condition type and status",
            labels=["condition", "status"],
        )
        tally = Tally((c.type, c.status) for route in self.source() for c in route.conditions)
        for (condition, status), count in sorted(tally.items()):
            family.add_metric([condition, status], count)
        yield family


ROUTES = _RouteConditions()
REGISTRY.register(ROUTES)
