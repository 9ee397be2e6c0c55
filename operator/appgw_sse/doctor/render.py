"""The doctor's report as text for a person or JSON for a program."""

import json
import statistics
from collections.abc import Sequence
from typing import Any

from appgw_sse.doctor.analysis import Finding, Report, in_seconds


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def report_json(report: Report) -> dict[str, Any]:
    obs = report.obs
    multi = [b for b in report.bursts if b.size >= 2]
    known = [d for d in report.delays if d is not None]
    return {
        "url": obs.url,
        "verdict": report.verdict,
        "healthy": not report.problems,
        "listenedSeconds": _round(obs.stopped_at),
        "timings": {
            "connectSeconds": _round(obs.connected_at),
            "headersSeconds": _round(obs.headers_at),
            "firstByteSeconds": _round(obs.chunks[0][0] if obs.chunks else None),
            "firstEventSeconds": _round(obs.events[0].at if obs.events else None),
        },
        "http": {
            "status": obs.status,
            "reason": obs.reason,
            "version": obs.version,
            "headers": dict(obs.headers),
        },
        "stream": {
            "events": len(obs.events),
            "heartbeats": len(obs.heartbeats),
            "bytes": sum(size for _, size in obs.chunks),
            "longestSilenceSeconds": _round(report.longest_silence),
            "bursts": len(multi),
            "typicalBurstSize": round(statistics.median(b.size for b in multi)) if multi else None,
            "delaySource": report.delay_source,
            "maxDelaySeconds": _round(max(known)) if known else None,
            "retryMs": obs.retry_ms,
        },
        "end": {
            "kind": "unreachable" if obs.error is not None else obs.end,
            "afterSeconds": _round(obs.ended_at),
            "detail": obs.error or obs.end_detail,
        },
        "findings": [
            {"severity": f.severity, "code": f.code, "message": f.message} for f in report.findings
        ],
        "events": [
            {
                "atSeconds": _round(event.at),
                "gapSeconds": _round(gap),
                "delaySeconds": _round(delay),
                "id": event.id,
                "type": event.type,
                "bytes": len(event.data.encode()),
            }
            for event, gap, delay in zip(obs.events, report.gaps, report.delays, strict=True)
        ],
    }


def render_json(report: Report, direct: Report | None, comparison: Sequence[Finding]) -> str:
    document = report_json(report) | {
        "exitCode": report.exit_code,
        "direct": report_json(direct) if direct is not None else None,
        "comparison": [
            {"severity": f.severity, "code": f.code, "message": f.message} for f in comparison
        ],
    }
    return json.dumps(document, indent=2)


def _optional(value: float | None) -> str:
    return "-" if value is None else in_seconds(value)


def _render_one(report: Report, timeline: int) -> list[str]:
    obs = report.obs
    lines = [f"{obs.url}", f"  verdict   {report.verdict}"]
    if obs.error is None:
        first_byte = obs.chunks[0][0] if obs.chunks else None
        lines.append(
            f"  timings   headers {_optional(obs.headers_at)} · first byte "
            f"{_optional(first_byte)} · first event "
            f"{_optional(obs.events[0].at if obs.events else None)}"
        )
    if obs.status is not None:
        shown = (
            "Content-Type",
            "Cache-Control",
            "Content-Length",
            "Content-Encoding",
            "Transfer-Encoding",
        )
        headers = " · ".join(f"{n}: {obs.header(n)}" for n in shown if obs.header(n) is not None)
        lines.append(f"  response  {obs.version} {obs.status} {obs.reason or ''} · {headers}")
        event_gaps = [g for g in report.gaps if g is not None]
        spread = (
            f" · gaps {in_seconds(min(event_gaps))} to {in_seconds(max(event_gaps))} "
            f"(median {in_seconds(statistics.median(event_gaps))})"
            if event_gaps
            else ""
        )
        lines.append(
            f"  stream    {len(obs.events)} events, {len(obs.heartbeats)} heartbeats, "
            f"{sum(s for _, s in obs.chunks)} bytes{spread}"
        )
    end = {
        "listening": f"still open after {in_seconds(obs.stopped_at)}",
        "eof": f"ended cleanly by the server after {in_seconds(obs.stopped_at)}",
        "cut": f"cut after {in_seconds(obs.stopped_at)}",
        "no-headers": f"no response after {in_seconds(obs.stopped_at)}",
    }[obs.end]
    if obs.error is None:
        lines.append(f"  end       {end}")
    lines += [f"  {f.severity:<8}  {f.message}" for f in report.findings]
    if obs.events and timeline:
        source = {"timestamp": "by timestamp", "id": "estimated from ids"}.get(
            report.delay_source or "", "unknown"
        )
        lines.append(f"  events (arrival, gap since the previous, delay {source}):")
        rows = list(zip(obs.events, report.gaps, report.delays, strict=True))
        half = timeline // 2
        shown_rows = rows if len(rows) <= timeline else rows[:half] + rows[-half:]
        for index, (event, gap, delay) in enumerate(shown_rows):
            if len(rows) > timeline and index == half:
                lines.append(f"    … {len(rows) - 2 * half} more")
            lines.append(
                f"    {event.at:8.2f} s  gap {_optional(gap):>7}  delay {_optional(delay):>7}"
                f"  id {event.id or '-'}  {event.type}"
            )
    return lines


def render_text(
    report: Report, direct: Report | None, comparison: Sequence[Finding], timeline: int = 20
) -> str:
    lines = [f"verdict: {report.verdict}", "", *_render_one(report, timeline)]
    if direct is not None:
        lines += ["", "direct (the backend itself):", *_render_one(direct, timeline)]
        lines += ["", "comparison:", *(f"  {f.message}" for f in comparison)]
    return "\n".join(lines)
