"""Synthetic doctor observations: events arriving and sent when a test says, for the diagnosis
and what is drawn from it, without a network."""

import json
from typing import Any

from appgw_sse.doctor import Observation, SseEvent

WALL = 1_750_000_000.0  # the request's wall-clock time
SSE = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("Transfer-Encoding", "chunked"),
)


def observation(
    arrivals: list[float],
    sent: list[float] | None = None,
    *,
    ids: bool = True,
    end: Any = "listening",
    ended_at: float | None = None,
    headers: tuple[tuple[str, str], ...] = SSE,
    listen: float = 10.0,
) -> Observation:
    """Events arriving at `arrivals` (s since the request), stamped as sent at `sent`."""
    events = [
        SseEvent(
            at,
            json.dumps({"ts": WALL + sent[i]}) if sent is not None else "tick",
            str(i + 1) if ids else None,
        )
        for i, at in enumerate(arrivals)
    ]
    return Observation(
        url="http://gw/events",
        listen_seconds=listen,
        started_wall=WALL,
        connected_at=0.001,
        status=200,
        reason="OK",
        version="HTTP/1.1",
        headers=headers,
        headers_at=0.002,
        chunks=[(at, 60) for at in sorted(set(arrivals))],
        events=events,
        end=end,
        ended_at=ended_at,
    )
