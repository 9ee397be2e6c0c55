"""Go-style durations in whole seconds ("45s", "2m", "1h30m")."""

import math
import re

from appgw_sse.core.contract import (
    DURATION_PATTERN,
    HEADROOM_FACTOR,
    MAX_REQUEST_TIMEOUT_SECONDS,
    MIN_HEADROOM_SECONDS,
)

_DURATION = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> int:
    """Seconds in `text`; ValueError with a user-facing reason when it is not a duration."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(
            f"{text!r} is not a duration in whole seconds such as '45s', '2m' or '1h30m'"
        )
    hours, minutes, seconds = (int(part[:-1]) if part else 0 for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: int) -> str:
    """The shortest Go-style spelling of `seconds` ("90s" -> "1m30s")."""
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)


def derived_request_timeout(idle_seconds: int) -> int:
    """The requestTimeout an idle interval needs: strictly longer than the silence, with headroom."""
    headroom = max(idle_seconds + MIN_HEADROOM_SECONDS, math.ceil(HEADROOM_FACTOR * idle_seconds))
    return min(headroom, MAX_REQUEST_TIMEOUT_SECONDS)
