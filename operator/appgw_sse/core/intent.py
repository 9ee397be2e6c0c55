"""What one valid route requires of its gateway: the planner's and the owned fields' input."""

from dataclasses import dataclass


@dataclass(frozen=True)
class RouteIntent:
    """What one valid route requires of its gateway."""

    key: str
    gateway_id: str
    backend_settings: tuple[str, ...]
    request_timeout: int
    idle_seconds: int
    disable_buffering: bool
    drain_timeout: int | None = None  # connection draining to ensure, seconds (None: none)
    backend_service: str | None = None  # spec.backend.serviceName (AGIC mode finds Ingresses)
