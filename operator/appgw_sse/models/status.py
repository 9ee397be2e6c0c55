"""SseRoute status: metav1.Condition-shaped conditions and the gateway/backends summary."""

from typing import Any

from pydantic import Field

from appgw_sse.core.camel import CamelModel
from appgw_sse.core.conditions import Condition


class BackendsStatus(CamelModel):
    selected: int = 0
    annotated: int = 0
    conformant: int | None = None


class SseRouteStatus(CamelModel):
    observed_generation: int = 0
    request_timeout_seconds: int | None = None
    mode: str | None = None  # Gateway (the operator writes it) or AGIC (Ingress annotations)
    ingresses: tuple[str, ...] | None = None  # AGIC mode: the Ingresses carrying the values
    gateway: dict[str, Any] | None = None  # core.fields.gateway_status: one key per owned field
    backends: BackendsStatus | None = None
    conditions: tuple[Condition, ...] = Field(default=())
