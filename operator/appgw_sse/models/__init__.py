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
from appgw_sse.models.status import (
    BackendSettingStatus,
    BackendsStatus,
    Condition,
    GatewayStatus,
    SseRouteStatus,
)

__all__ = [
    "BackendRef",
    "BackendSettingStatus",
    "BackendsStatus",
    "Condition",
    "GatewayRef",
    "GatewayStatus",
    "LabelSelector",
    "LabelSelectorRequirement",
    "SpecError",
    "SseRoute",
    "SseRouteSpec",
    "SseRouteStatus",
    "parse_spec",
    "route_from_manifest",
]
