"""Gateway errors, split the way kopf decides retries: transient (retry) or terminal (wait)."""

import kopf

from appgw_sse.core.planner import Reason


class GatewayError(Exception):
    """An Azure failure with the ARM error code and message kept for status conditions."""

    def __init__(self, reason: Reason, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.reason, self.code, self.message = reason, code, message


class TransientGatewayError(GatewayError, kopf.TemporaryError):
    """Worth retrying after `delay` seconds: throttling, conflicts, outages, stale plans,
    credentials and permissions being fixed."""

    def __init__(self, reason: Reason, code: str, message: str, delay: float = 10.0) -> None:
        GatewayError.__init__(self, reason, code, message)
        kopf.TemporaryError.__init__(self, str(self), delay=delay)


class TerminalGatewayError(GatewayError, kopf.PermanentError):
    """Retrying the same request cannot help: validation, a missing gateway."""
