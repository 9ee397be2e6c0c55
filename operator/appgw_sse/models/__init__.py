"""Pydantic models of the SseRoute custom resource."""

from appgw_sse.models.route import (
    BackendRef,
    GatewayRef,
    LabelSelector,
    LabelSelectorRequirement,
    SpecError,
    SseRoute,
    SseRouteSpec,
    parse_spec,
    route_from_manifest,
)
from appgw_sse.models.status import BackendsStatus, SseRouteStatus

__all__ = [
    "BackendRef",
    "BackendsStatus",
    "GatewayRef",
    "LabelSelector",
    "LabelSelectorRequirement",
    "SpecError",
    "SseRoute",
    "SseRouteSpec",
    "SseRouteStatus",
    "parse_spec",
    "route_from_manifest",
]
