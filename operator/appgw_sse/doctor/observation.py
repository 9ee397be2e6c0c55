"""What the doctor saw of one stream: the I/O records it, the analysis reads only this."""

from dataclasses import dataclass, field
from typing import Literal

from appgw_sse.doctor.parse import SseEvent

# listening: still open when the doctor stopped; eof: the body ended cleanly; cut: the connection
# dropped without the body's end; no-headers: connected, no response before the end.
EndKind = Literal["listening", "eof", "cut", "no-headers"]


@dataclass
class Observation:
    """What arrived from one URL, and when (seconds since the request was sent)."""

    url: str
    listen_seconds: float
    started_wall: float  # the request's wall-clock time, to read event timestamps against
    error: str | None = None  # set when no connection could be made
    connected_at: float | None = None
    status: int | None = None
    reason: str | None = None
    version: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    headers_at: float | None = None
    chunks: list[tuple[float, int]] = field(default_factory=list)
    events: list[SseEvent] = field(default_factory=list)
    heartbeats: list[float] = field(default_factory=list)
    retry_ms: int | None = None
    end: EndKind = "listening"
    ended_at: float | None = None
    end_detail: str | None = None

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def stopped_at(self) -> float:
        return self.ended_at if self.ended_at is not None else self.listen_seconds
