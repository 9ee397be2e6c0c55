"""Gateway errors: transient (the worker retries after `delay`) or terminal (it waits for a
change or the next resync)."""

from appgw_sse.core.conditions import Reason


class GatewayError(Exception):
    """An Azure failure with the ARM error code and message kept for status conditions."""

    def __init__(self, reason: Reason, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.reason, self.code, self.message = reason, code, message


class TransientGatewayError(GatewayError):
    """Worth retrying after `delay` seconds: throttling, conflicts, outages, stale plans,
    credentials and permissions being fixed."""

    def __init__(self, reason: Reason, code: str, message: str, delay: float = 10.0) -> None:
        super().__init__(reason, code, message)
        self.delay = delay


class IngressesUnavailable(Exception):
    """The Ingresses of a namespace could not be listed (no networking API, no RBAC, an API
    server failure): AGIC-mode routes there get it as a condition, retried later."""


class TerminalGatewayError(GatewayError):
    """Retrying the same request cannot help: validation, a missing gateway."""
