"""The diagnosis: pure functions of an Observation (live, buffered or cut, and at which limit),
unit-tested without a network."""

import itertools
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from appgw_sse.doctor.observation import Observation
from appgw_sse.doctor.parse import SseEvent

Severity = Literal["problem", "warning", "info"]

EXIT_HEALTHY, EXIT_PROBLEMS, EXIT_UNREACHABLE = 0, 1, 2
# Events arriving closer together than this came in one read, i.e. one flush of a buffer.
BURST_GAP_SECONDS = 0.05
# Bursts only mean buffering when a silence precedes them.
BURST_SILENCE_SECONDS = 0.3
# An event held this much longer than the fastest one was held back on the way.
HELD_SECONDS = 0.5
_TIMESTAMP_KEYS = ("ts", "timestamp", "time", "sent_at", "sentAt")
_PLAUSIBLE_CLOCK_SKEW = 86400.0


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    message: str
    summary: str = ""  # the verdict's words for a problem


@dataclass(frozen=True)
class Burst:
    at: float
    size: int
    silence_before: float  # since the previous event (the request, for the first)


@dataclass(frozen=True)
class Limit:
    seconds: int
    phrase: str
    advice: str


# The idle limits an SSE stream meets on Application Gateway (docs/doctor.md gives the sources).
LIMITS = (
    Limit(30, "a 30 s requestTimeout (the default)", "raise it above your longest silence"),
    Limit(
        75,
        "the 75 s keep-alive idle timeout of Application Gateway v2",
        "send a heartbeat comment line more often than every 75 s",
    ),
    Limit(
        180,
        "the 180 s HTTP/2 idle timeout (fixed)",
        "send heartbeats at least every 170 s",
    ),
    Limit(
        240,
        "the 4 min TCP idle timeout of the public IP (also the 240 s requestTimeout cap "
        "towards an internet backend)",
        "send heartbeats more often than every 4 min",
    ),
)


def match_limit(seconds: float) -> Limit | None:
    """The known limit `seconds` is closest to, if it is close (1 s or 5 %)."""
    best = min(LIMITS, key=lambda limit: abs(limit.seconds - seconds))
    return best if abs(best.seconds - seconds) <= max(1.0, 0.05 * best.seconds) else None


def bursts(events: Sequence[SseEvent]) -> list[Burst]:
    """Events grouped by arrival: a new burst starts after more than BURST_GAP_SECONDS."""
    found: list[Burst] = []
    previous = 0.0
    for event in events:
        if found and event.at - previous <= BURST_GAP_SECONDS:
            last = found[-1]
            found[-1] = Burst(last.at, last.size + 1, last.silence_before)
        else:
            found.append(Burst(event.at, 1, event.at - previous))
        previous = event.at
    return found


def _epoch(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000 if value > 1e11 else float(value)  # milliseconds
    if isinstance(value, str):
        try:
            return float(value) / 1000 if float(value) > 1e11 else float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def event_timestamp(event: SseEvent, around: float) -> float | None:
    """When the server says it sent `event` (epoch seconds): a timestamp field of a JSON
    object in data, else an id that reads as epoch seconds or milliseconds near `around`."""
    stamp = None
    try:
        data = json.loads(event.data)
    except ValueError:
        data = None
    if isinstance(data, dict):
        stamp = next((_epoch(data[k]) for k in _TIMESTAMP_KEYS if k in data), None)
    if stamp is None and event.id and event.id.isdigit():
        stamp = _epoch(int(event.id))
    return stamp if stamp is not None and abs(stamp - around) < _PLAUSIBLE_CLOCK_SKEW else None


def _monotonic_ids(events: Sequence[SseEvent]) -> list[int] | None:
    ids = [int(e.id) if e.id and e.id.isdigit() else None for e in events]
    numbers = [i for i in ids if i is not None]
    if len(numbers) != len(events) or any(b <= a for a, b in itertools.pairwise(numbers)):
        return None
    return numbers


def event_delays(
    obs: Observation,
) -> tuple[list[float | None], Literal["timestamp", "id"] | None, float]:
    """Each event's delay beyond the least-delayed one (so clock offsets cancel), where it came
    from, and the timestamps' resolution in seconds.

    From timestamps when at least three events carry one; else, with strictly increasing
    numeric ids, an estimate that assumes the server emits at a steady pace from the request.
    """
    stamps = [event_timestamp(e, obs.started_wall + e.at) for e in obs.events]
    if sum(s is not None for s in stamps) >= 3:
        raw = [
            None if s is None else obs.started_wall + e.at - s
            for e, s in zip(obs.events, stamps, strict=True)
        ]
        floor = min(r for r in raw if r is not None)
        whole = all(s == int(s) for s in stamps if s is not None)
        return [None if r is None else r - floor for r in raw], "timestamp", 1.0 if whole else 0.001
    ids = _monotonic_ids(obs.events)
    if ids is not None and len(ids) >= 3:
        pace = obs.events[-1].at / (ids[-1] - ids[0] + 1)
        raw_id = [e.at - (i - ids[0] + 1) * pace for e, i in zip(obs.events, ids, strict=True)]
        return [r - min(raw_id) for r in raw_id], "id", 0.0
    return [None] * len(obs.events), None, 0.0


def _silences(obs: Observation) -> list[float]:
    """Every silence between the response's bytes, the ongoing one at the end included."""
    if obs.headers_at is None:
        return []
    times = [obs.headers_at, *(at for at, _ in obs.chunks), obs.stopped_at]
    return [b - a for a, b in itertools.pairwise(times)]


def in_seconds(value: float) -> str:
    return f"{value:.1f} s" if value >= 0.95 else f"{value:.2f} s"


@dataclass
class Report:
    obs: Observation
    findings: list[Finding]
    gaps: list[float | None]
    delays: list[float | None]
    delay_source: Literal["timestamp", "id"] | None
    bursts: list[Burst]
    bursty: bool
    longest_silence: float | None

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "problem"]

    @property
    def verdict(self) -> str:
        if self.problems:
            return "; ".join(f.summary for f in self.problems)
        if self.obs.end == "eof":
            return f"streams live until the server ended it after {in_seconds(self.obs.stopped_at)}"
        return "streams live" if self.obs.events else "streams live (heartbeats only, no event)"

    @property
    def exit_code(self) -> int:
        if self.obs.error is not None:
            return EXIT_UNREACHABLE
        return EXIT_PROBLEMS if self.problems else EXIT_HEALTHY


def _header_findings(obs: Observation, holding: bool) -> list[Finding]:
    """The response's headers against the SSE contract. `holding`: the timeline shows events
    held back (buffered, or none arrived), which decides whether compression is the problem."""
    findings: list[Finding] = []
    content_type = obs.header("Content-Type") or "(none)"
    if content_type.split(";")[0].strip().lower() != "text/event-stream":
        findings.append(
            Finding(
                "problem",
                "content-type",
                f"Content-Type is {content_type}: EventSource only accepts text/event-stream",
                f"wrong Content-Type ({content_type})",
            )
        )
    length = obs.header("Content-Length")
    if length is not None:
        findings.append(
            Finding(
                "problem",
                "content-length",
                f"Content-Length: {length} means the whole response was known before it was "
                "sent: collected by the server or a proxy, not streamed",
                f"buffered (Content-Length: {length})",
            )
        )
    encoding = obs.header("Content-Encoding")
    if encoding is not None and encoding.lower() != "identity" and holding:
        findings.append(
            Finding(
                "problem",
                "content-encoding",
                f"Content-Encoding: {encoding} and events held back: compressors and many "
                "proxies hold compressed output until a block fills; turn compression off for "
                "text/event-stream",
                f"compressed (Content-Encoding: {encoding})",
            )
        )
    elif encoding is not None and encoding.lower() != "identity":
        # A server that flushes its compressor per event (Starlette's GZipMiddleware) streams.
        findings.append(
            Finding(
                "warning",
                "content-encoding",
                f"Content-Encoding: {encoding}, yet events arrived as sent (the server flushes "
                "each one); a proxy that recompresses or waits for a full block would hold them: "
                "turn compression off for text/event-stream",
            )
        )
    cache = (obs.header("Cache-Control") or "").lower()
    if "no-cache" not in cache and "no-store" not in cache:
        findings.append(
            Finding(
                "warning",
                "cache-control",
                f"Cache-Control is {obs.header('Cache-Control') or '(none)'}: send no-cache so "
                "caches and CDNs pass the stream through",
            )
        )
    chunked = "chunked" in (obs.header("Transfer-Encoding") or "").lower()
    framing = (
        "chunked" if chunked else "Content-Length" if length else "until the connection closes"
    )
    if obs.version == "HTTP/1.0":
        findings.append(
            Finding(
                "warning",
                "framing",
                f"HTTP/1.0, body framed {framing}: some proxies hold such bodies whole",
            )
        )
    else:
        findings.append(Finding("info", "framing", f"{obs.version}, body framed {framing}"))
    return findings


def _idle_limit(seconds: float, limit: Limit | None = None) -> str:
    """Which idle limit a wait of `seconds` ended at: a known one, else an unknown one."""
    if limit is not None:
        return f"matches {limit.phrase}: {limit.advice}"
    return (
        f"an idle timeout of about {in_seconds(seconds)} on the path, such as a requestTimeout of "
        f"{max(1, round(seconds))} s: raise it above your longest silence"
    )


def _cut_finding(obs: Observation, silences: Sequence[float]) -> Finding:
    after = obs.stopped_at
    last = (
        obs.chunks[-1][0] if obs.chunks else obs.headers_at if obs.headers_at is not None else 0.0
    )
    silence = after - last
    flowing = statistics.median(silences[:-1]) if len(silences) > 1 else None
    idle = flowing is None or silence >= max(HELD_SECONDS, 2 * flowing)
    limit = (match_limit(silence) if idle else None) or match_limit(after)
    before = "before any response" if obs.headers_at is None else "without the body's end"
    since = (
        "the last byte"
        if obs.chunks
        else "the request"
        if obs.headers_at is None
        else "the headers"
    )
    evidence = f"the connection closed {before}, {in_seconds(silence)} after {since}"
    if limit is not None:
        summary = f"cut after {in_seconds(after)} ({_idle_limit(after, limit)})"
    elif idle:
        summary = f"cut after {in_seconds(after)}, silent {in_seconds(silence)} before ({_idle_limit(silence)})"
    else:
        summary = (
            f"cut after {in_seconds(after)} while data was flowing (not an idle timeout: a "
            "configuration update on the gateway, which ends connections after the "
            "connection-draining timeout, a limit on total duration, or the server)"
        )
    return Finding("problem", "cut", f"{evidence} ({obs.end_detail or 'connection lost'})", summary)


def _sent_spreads(
    found: Sequence[Burst], events: Sequence[SseEvent], delays: Sequence[float | None]
) -> list[float]:
    """How long the server took to send each multi-event burst, by the events' delays."""
    spreads: list[float] = []
    start = 0
    for burst in found:
        members = range(start, start + burst.size)
        sent = [events[i].at - d for i in members if (d := delays[i]) is not None]
        if burst.size >= 2 and len(sent) >= 2:
            spreads.append(max(sent) - min(sent))
        start += burst.size
    return spreads


def _buffering_findings(
    obs: Observation,
    found: Sequence[Burst],
    delays: Sequence[float | None],
    source: str | None,
    resolution: float,
    reference: Report | None,
) -> tuple[bool, list[Finding]]:
    """Bursts after silences mean a buffer flushing, unless the server sent each burst at once
    (timestamps tell) or sends the same bursts directly (`reference`)."""
    multi = [b for b in found if b.size >= 2]
    in_multi = sum(b.size for b in multi)
    bursty = (
        len(obs.events) >= 3
        and 2 * in_multi >= len(obs.events)
        and statistics.median(b.silence_before for b in multi) >= BURST_SILENCE_SECONDS
    )
    known = [d for d in delays if d is not None]
    held = max(known) if known else None
    if not bursty:
        if source == "timestamp" and held is not None and held >= max(HELD_SECONDS, 2 * resolution):
            return False, [
                Finding(
                    "warning",
                    "held",
                    f"events arrive up to {in_seconds(held)} later than the fastest one (by their "
                    "timestamps), one by one: a slow path or a server that stamps early",
                )
            ]
        return False, []
    size = round(statistics.median(b.size for b in multi))
    silence = statistics.median(b.silence_before for b in multi)
    shape = f"events arrive in bursts of {size} after silences of {in_seconds(silence)}"
    evidence = f"{in_multi} of {len(obs.events)} events arrived in {len(multi)} bursts"
    spreads = _sent_spreads(found, obs.events, delays) if source == "timestamp" else []
    if spreads and held is not None and 2 * resolution <= silence:
        spread = statistics.median(spreads)
        if spread < silence / 2:
            return True, [
                Finding(
                    "info",
                    "server-bursts",
                    f"{evidence}, but their timestamps show the server sent each burst at once",
                )
            ]
        return True, [
            Finding(
                "problem",
                "buffered",
                f"{evidence}; their timestamps show each burst sent over about "
                f"{in_seconds(spread)} and events held up to {in_seconds(held)}",
                f"buffered ({shape})",
            )
        ]
    if reference is not None and reference.bursty:
        return True, [
            Finding(
                "warning",
                "server-bursts",
                f"{evidence}, as they do from the backend directly: the backend sends in bursts",
            )
        ]
    how = (
        f"estimated from their ids at a steady pace, events were held up to {in_seconds(held)}"
        if source == "id" and held is not None
        else "no timestamps to confirm; --direct compares with the backend"
    )
    return True, [Finding("problem", "buffered", f"{evidence} ({how})", f"buffered ({shape})")]


def _limit_findings(obs: Observation, longest: float | None) -> list[Finding]:
    if longest is None:
        return []
    findings = [
        Finding(
            "warning",
            "near-limit",
            f"the longest silence, {in_seconds(longest)}, is close to {limit.phrase}: {limit.advice}",
        )
        for limit in LIMITS
        if 0.8 * limit.seconds <= longest < limit.seconds
    ]
    findings.append(
        Finding(
            "info",
            "limits",
            f"longest silence {in_seconds(longest)}; Application Gateway ends silences longer "
            "than the requestTimeout (30 s by default), 75 s (keep-alive idle), 180 s (HTTP/2 "
            "idle) or 4 min (TCP idle): heartbeats must come more often",
        )
    )
    if obs.listen_seconds < LIMITS[0].seconds:
        findings.append(
            Finding(
                "info",
                "short-listen",
                f"listened {in_seconds(obs.listen_seconds)}, less than the default "
                "requestTimeout: to meet the limits, listen longer than your longest silence",
            )
        )
    return findings


def analyse(obs: Observation, reference: Report | None = None) -> Report:
    """The diagnosis of one observation; `reference` is the backend observed directly."""
    found = bursts(obs.events)
    delays, source, resolution = event_delays(obs)
    silences = _silences(obs)
    longest = max(silences) if silences else None
    gaps: list[float | None] = [b.at - a.at for a, b in itertools.pairwise(obs.events)]
    gaps = [None, *gaps] if obs.events else []  # one per event, as the JSON's rows zip them
    findings: list[Finding] = []
    bursty = False
    if obs.error is not None:
        findings.append(
            Finding("problem", "unreachable", obs.error, f"could not connect ({obs.error})")
        )
    elif obs.end == "no-headers":
        findings.append(
            Finding(
                "problem",
                "no-response",
                "connected, but no response came back: a buffering proxy holding the whole "
                "response, or a backend slow to answer (--direct tells which)",
                f"no response in {in_seconds(obs.listen_seconds)}",
            )
        )
    elif obs.status is None:
        findings.append(_cut_finding(obs, silences))
    elif obs.status != 200:
        assert obs.headers_at is not None
        # A gateway's 504 is its timeout waiting for the backend: say which one it matches.
        timeout = obs.status == 504
        matched = (
            f" ({_idle_limit(obs.headers_at, match_limit(obs.headers_at))})" if timeout else ""
        )
        findings.append(
            Finding(
                "problem",
                "status",
                f"HTTP {obs.status} {obs.reason or ''}: EventSource treats anything but 200 as "
                "a failure",
                f"answered {obs.status} {obs.reason or ''} after {in_seconds(obs.headers_at)}"
                + matched,
            )
        )
    else:
        bursty, buffering = _buffering_findings(obs, found, delays, source, resolution, reference)
        holding = (
            not obs.events
            or obs.header("Content-Length") is not None
            or any(f.code in ("buffered", "held") for f in buffering)
        )
        findings += _header_findings(obs, holding) + buffering
        if obs.end == "cut":
            findings.append(_cut_finding(obs, silences))
        elif obs.end == "eof":
            findings.append(
                Finding(
                    "warning",
                    "ended",
                    f"the server ended the stream after {in_seconds(obs.stopped_at)}: EventSource "
                    f"reconnects after its retry delay ({obs.retry_ms or 'about 3000'} ms)",
                )
            )
        if not obs.events and obs.end != "cut":
            if obs.chunks:
                findings.append(
                    Finding(
                        "warning",
                        "no-events",
                        f"no event in {in_seconds(obs.stopped_at)}, {len(obs.heartbeats)} heartbeats",
                    )
                )
            else:
                findings.append(
                    Finding(
                        "problem",
                        "silent",
                        f"headers after {in_seconds(obs.headers_at or 0.0)}, then nothing: a "
                        "buffering proxy holding the events, or a backend that sent none yet "
                        "(--direct tells which)",
                        f"no event in {in_seconds(obs.stopped_at)}",
                    )
                )
        if obs.heartbeats:
            findings.append(
                Finding("info", "heartbeats", f"{len(obs.heartbeats)} heartbeats (comment lines)")
            )
        findings += _limit_findings(obs, longest)
    order: dict[str, int] = {"problem": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f.severity])
    return Report(obs, findings, gaps, delays, source, found, bursty, longest)


def compare(path: Report, direct: Report) -> list[Finding]:
    """What the path adds to (or takes from) the backend's own stream."""
    if direct.obs.error is not None:
        return [Finding("warning", "direct-unreachable", f"--direct: {direct.obs.error}")]
    findings: list[Finding] = []
    direct_codes = {f.code for f in direct.problems}
    for problem in path.problems:
        where = "the backend too" if problem.code in direct_codes else "only through the path"
        findings.append(Finding("info", f"path-{problem.code}", f"{problem.summary}: {where}"))
    for problem in direct.problems:
        if problem.code not in {f.code for f in path.problems}:
            findings.append(
                Finding("info", f"direct-{problem.code}", f"{problem.summary}: directly only")
            )
    first = [r.obs.events[0].at if r.obs.events else None for r in (path, direct)]
    if first[0] is not None and first[1] is not None:
        findings.append(
            Finding(
                "info",
                "first-event",
                f"first event after {in_seconds(first[0])} through the path, "
                f"{in_seconds(first[1])} directly",
            )
        )
    for name in ("Content-Type", "Content-Length", "Content-Encoding", "Cache-Control"):
        values = (path.obs.header(name), direct.obs.header(name))
        if values[0] != values[1]:
            findings.append(
                Finding(
                    "info",
                    "header-differs",
                    f"{name}: {values[0] or '(none)'} through the path, "
                    f"{values[1] or '(none)'} directly",
                )
            )
    return findings
