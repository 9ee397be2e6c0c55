"""`appgw-sse doctor`: listen to a Server-Sent Events stream like EventSource does and say, with
evidence, whether the path delivers it live, buffers it or cuts it, and at which limit.

The I/O (`run.observe`) only records what arrived and when (`observation.Observation`, events
read by `parse`); everything else is pure functions of that Observation (`analysis`, `render`),
so the diagnosis is unit-tested without a network.
"""

from appgw_sse.doctor.analysis import (
    EXIT_HEALTHY,
    EXIT_PROBLEMS,
    EXIT_UNREACHABLE,
    HELD_SECONDS,
    Finding,
    Report,
    analyse,
    bursts,
    compare,
    event_timestamp,
    match_limit,
)
from appgw_sse.doctor.observation import Observation
from appgw_sse.doctor.parse import SseEvent, SseParser
from appgw_sse.doctor.render import render_json, render_text
from appgw_sse.doctor.run import diagnose, main, observe

__all__ = [
    "EXIT_HEALTHY",
    "EXIT_PROBLEMS",
    "EXIT_UNREACHABLE",
    "HELD_SECONDS",
    "Finding",
    "Observation",
    "Report",
    "SseEvent",
    "SseParser",
    "analyse",
    "bursts",
    "compare",
    "diagnose",
    "event_timestamp",
    "main",
    "match_limit",
    "observe",
    "render_json",
    "render_text",
]
