"""The event-stream grammar of the HTML standard, as EventSource reads it."""

import codecs
import re
from dataclasses import dataclass

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class SseEvent:
    at: float  # seconds since the request was sent
    data: str
    id: str | None = None  # the last event id when the event was dispatched
    type: str = "message"


class SseParser:
    """The event-stream grammar of the HTML standard, fed chunk by chunk."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._skip_lf = False
        self._first = True
        self._data: list[str] = []
        self._type = ""
        self.last_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes, at: float) -> tuple[list[SseEvent], int]:
        """The events completed by `chunk` and the number of comment lines (heartbeats)."""
        text = self._decoder.decode(chunk)
        # A CR at the end of the last chunk and an LF at the start of this one are one break.
        skip = self._skip_lf and text.startswith("\n")
        if text:
            self._skip_lf = text.endswith("\r")
        text = text[1:] if skip else text
        if self._first and text:
            text, self._first = text.removeprefix("\ufeff"), False
        lines = _LINE_BREAK.split(self._pending + text)
        self._pending = lines.pop()
        events: list[SseEvent] = []
        comments = 0
        for line in lines:
            if not line:
                if self._data:
                    events.append(
                        SseEvent(at, "\n".join(self._data), self.last_id, self._type or "message")
                    )
                self._data, self._type = [], ""
            elif line.startswith(":"):
                comments += 1
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    self._data.append(value)
                elif name == "event":
                    self._type = value
                elif name == "id" and "\0" not in value:
                    self.last_id = value
                elif name == "retry" and value.isdigit():
                    self.retry_ms = int(value)
        return events, comments
