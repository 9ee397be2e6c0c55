"""Leadership as the writers see it: checked immediately before every Azure write and every
ledger write, so a leader deposed while it was paused (SIGSTOP, a long GC, a frozen node) never
writes a stale plan when it runs again.

The check is local and costs no request: the holder may write while less than `renew_deadline`
has passed, on its monotonic clock, since it SENT its last successful renewal (the Lease's
renewTime is the sender's now, so the Lease is valid from then). A standby takes over only once
the record has not changed for the Lease's duration (> renew_deadline) on its own clock, so a
stale holder finds its window closed before anyone else's opens. A process paused for longer
than that window finds it closed as soon as it runs again, whatever it was doing.
"""

import time


class LeadershipLost(Exception):
    pass


class Fence:
    """Whether this process may write now, as leader `identity` of the `epoch`-th holding of
    the Lease (its leaseTransitions)."""

    enforced = True

    def __init__(self, identity: str, renew_deadline: float) -> None:
        self.identity, self.renew_deadline = identity, renew_deadline
        self.epoch = 0
        self._renewed_at: float | None = None  # monotonic time the last renewal was sent
        self._lost: str | None = None

    def renewed(self, sent_at: float, epoch: int) -> None:
        if self._lost is None:
            self._renewed_at, self.epoch = sent_at, epoch

    def lose(self, reason: str) -> None:
        """Leadership is gone for good in this process (it exits to stand by again)."""
        self._lost = reason

    def remaining(self) -> float:
        """Seconds this process may still write without another renewal (<= 0: none)."""
        if self._lost is not None or self._renewed_at is None:
            return 0.0
        return self._renewed_at + self.renew_deadline - time.monotonic()

    def check(self) -> None:
        """Raise LeadershipLost unless this process holds the Lease right now."""
        if self._lost is not None:
            raise LeadershipLost(self._lost)
        if self._renewed_at is None:
            raise LeadershipLost("the Lease was never acquired")
        elapsed = time.monotonic() - self._renewed_at
        if elapsed >= self.renew_deadline:
            raise LeadershipLost(
                f"Lease not renewed for {elapsed:.1f}s (renew deadline "
                f"{self.renew_deadline:g}s): no more writes"
            )


class Unfenced(Fence):
    """For a process that writes without leader election (tests, one-shot commands)."""

    enforced = False

    def __init__(self) -> None:
        super().__init__("unfenced", float("inf"))

    def check(self) -> None:
        return None
