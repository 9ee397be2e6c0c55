"""SseRoute status: metav1.Condition-shaped conditions and the gateway/backends summary."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Condition(_Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    # Never empty: a 1.20 API server turns "" in a merge patch into null and rejects the status.
    message: str = Field(min_length=1)
    observed_generation: int = 0
    last_transition_time: str = ""


class BackendSettingStatus(_Model):
    name: str
    request_timeout: int


class GatewayStatus(_Model):
    name: str
    response_buffering: str
    backend_settings: tuple[BackendSettingStatus, ...] = ()


class BackendsStatus(_Model):
    selected: int = 0
    annotated: int = 0
    conformant: int | None = None


class SseRouteStatus(_Model):
    observed_generation: int = 0
    request_timeout_seconds: int | None = None
    gateway: GatewayStatus | None = None
    backends: BackendsStatus | None = None
    conditions: tuple[Condition, ...] = Field(default=())
