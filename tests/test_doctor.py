"""`appgw-sse doctor`: the SSE parser and the diagnosis on synthetic observations, then the
whole command against local backends that stream, buffer, cut, gzip or send Content-Length."""

import asyncio
import json
import socket
import sys
import time
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from appgw_sse.doctor import (
    EXIT_HEALTHY,
    EXIT_PROBLEMS,
    EXIT_UNREACHABLE,
    HELD_SECONDS,
    Observation,
    SseEvent,
    SseParser,
    analyse,
    bursts,
    compare,
    diagnose,
    event_timestamp,
    match_limit,
    render_json,
    render_text,
)
from tests.support.observations import SSE, WALL, observation
from tests.support.sse_servers import behind_gateway, sse_server, starlette_server

HELD = HELD_SECONDS  # an event later than this by its timestamp was held back


def codes(report: Any, severity: str = "problem") -> set[str]:
    return {f.code for f in report.findings if f.severity == severity}


# -- the parser -----------------------------------------------------------------------------


def test_parser_follows_the_event_stream_grammar() -> None:
    parser = SseParser()
    events, comments = parser.feed(
        b"\xef\xbb\xbf: hello\r\nevent: tick\r\nid: 7\r\ndata: a\r\ndata:b\r\n\r\n", 1.0
    )
    assert events == [SseEvent(1.0, "a\nb", "7", "tick")] and comments == 1
    # The id persists; a field without a colon is a name with an empty value; retry is kept.
    events, _ = parser.feed(b"retry: 2500\ndata\n\ndata: x", 2.0)
    assert events == [SseEvent(2.0, "", "7", "message")] and parser.retry_ms == 2500
    # An event is dispatched only at its blank line.
    events, _ = parser.feed(b"\n\n", 3.0)
    assert events == [SseEvent(3.0, "x", "7", "message")]


def test_parser_handles_line_breaks_and_characters_split_across_chunks() -> None:
    parser = SseParser()
    assert parser.feed(b"data: caf\xc3", 1.0) == ([], 0)
    assert parser.feed(b"\xa9\r", 1.1) == ([], 0)
    # The CR ended the line; the LF after it belongs to the same break, not a blank line.
    events, _ = parser.feed(b"\n\r", 1.2)
    assert events == [SseEvent(1.2, "café", None, "message")]
    events, _ = parser.feed(b"\ndata: y\r\r", 1.3)
    assert events == [SseEvent(1.3, "y", None, "message")]
    # A chunk holding only the LF of a CRLF does not swallow the next chunk's LF.
    assert parser.feed(b"data: z\r", 1.4) == ([], 0)
    assert parser.feed(b"\n", 1.5) == ([], 0)
    assert parser.feed(b"\n", 1.6) == ([SseEvent(1.6, "z", None, "message")], 0)


# -- pure pieces ----------------------------------------------------------------------------


def test_bursts_group_events_that_arrive_together() -> None:
    events = [SseEvent(at, "x") for at in (0.1, 0.1, 0.12, 0.6, 0.6, 2.0)]
    found = bursts(events)
    assert [(b.size, round(b.silence_before, 2)) for b in found] == [(3, 0.1), (2, 0.48), (1, 1.4)]


def test_event_timestamps_from_data_or_id() -> None:
    assert event_timestamp(SseEvent(0, json.dumps({"ts": WALL})), WALL) == WALL
    assert event_timestamp(SseEvent(0, json.dumps({"time": WALL * 1000})), WALL) == WALL
    iso = json.dumps({"timestamp": "2025-06-15T15:06:40+00:00"})
    assert event_timestamp(SseEvent(0, iso), WALL) == WALL
    assert event_timestamp(SseEvent(0, "x", str(int(WALL * 1000))), WALL) == WALL
    # A small counter is an id, not a time; a time far from now is not believed.
    assert event_timestamp(SseEvent(0, "x", "42"), WALL) is None
    assert event_timestamp(SseEvent(0, json.dumps({"ts": 5})), WALL) is None


@pytest.mark.parametrize(
    ("seconds", "limit"),
    [(30.0, 30), (29.2, 30), (31.4, 30), (33.0, None), (74.0, 75), (178.0, 180), (241, 240)],
)
def test_match_limit_names_the_closest_known_limit(seconds: float, limit: int | None) -> None:
    found = match_limit(seconds)
    assert (found.seconds if found else None) == limit


# -- the diagnosis --------------------------------------------------------------------------


def test_a_steady_stream_is_live() -> None:
    arrivals = [0.1 * n for n in range(1, 40)]
    report = analyse(observation(arrivals, arrivals))
    assert report.verdict == "streams live"
    assert report.exit_code == EXIT_HEALTHY and not report.problems
    assert report.delay_source == "timestamp" and max(d or 0 for d in report.delays) < 0.01


def test_events_held_and_released_in_bursts_are_buffered() -> None:
    sent = [0.1 * n for n in range(1, 21)]
    arrivals = [0.5 * ((n + 4) // 5) for n in range(1, 21)]  # every 5 events, at once
    report = analyse(observation(arrivals, sent))
    assert report.verdict == "buffered (events arrive in bursts of 5 after silences of 0.50 s)"
    assert report.exit_code == EXIT_PROBLEMS
    finding = next(f for f in report.findings if f.code == "buffered")
    assert "held up to 0.40 s" in finding.message


def test_a_server_that_sends_batches_is_not_buffered() -> None:
    arrivals = [0.5 * ((n + 4) // 5) for n in range(1, 21)]
    report = analyse(observation(arrivals, arrivals))
    assert report.verdict == "streams live"
    assert "server-bursts" in codes(report, "info")


def test_bursts_without_timestamps_are_buffered_unless_the_backend_bursts_too() -> None:
    arrivals = [0.5 * ((n + 4) // 5) for n in range(1, 21)]
    report = analyse(observation(arrivals, ids=False))
    assert report.verdict.startswith("buffered (events arrive in bursts of 5")
    assert "no timestamps to confirm" in report.problems[0].message
    direct = analyse(observation(arrivals, ids=False))
    assert analyse(observation(arrivals, ids=False), direct).exit_code == EXIT_HEALTHY
    # Numeric ids give an estimate of each event's delay, not a confirmation.
    by_id = analyse(observation(arrivals))
    assert by_id.delay_source == "id" and "estimated from their ids" in by_id.problems[0].message


def test_a_cut_after_a_silence_names_the_matching_limit() -> None:
    report = analyse(observation([0.0], end="cut", ended_at=30.0, listen=60))
    assert report.verdict == (
        "cut after 30.0 s (matches a 30 s requestTimeout (the default): raise it above your "
        "longest silence)"
    )
    http2 = analyse(
        observation([0.1 * n for n in range(50)], end="cut", ended_at=184.9, listen=300)
    )
    assert "matches the 180 s HTTP/2 idle timeout (fixed)" in http2.verdict


def test_a_cut_at_an_unknown_idle_limit_or_while_flowing() -> None:
    idle = analyse(observation([0.0, 0.05, 0.1], end="cut", ended_at=2.1))
    assert idle.verdict.startswith("cut after 2.1 s, silent 2.0 s before")
    assert "requestTimeout of 2 s" in idle.verdict
    flowing = analyse(observation([0.1 * n for n in range(1, 11)], end="cut", ended_at=1.05))
    assert "while data was flowing" in flowing.verdict
    assert "configuration update" in flowing.verdict


def test_a_connection_closed_before_any_response() -> None:
    obs = observation([], headers=())
    obs.status = obs.headers_at = None
    obs.chunks, obs.end, obs.ended_at = [], "cut", 1.3
    report = analyse(obs)
    assert report.verdict.startswith("cut after 1.3 s")
    assert report.findings[0].message.startswith(
        "the connection closed before any response, 1.3 s after the request"
    )


def test_a_gateway_timeout_before_the_headers() -> None:
    obs = observation([], headers=(("Content-Type", "text/html"),))
    obs.status, obs.reason, obs.headers_at, obs.chunks = 504, "Gateway Time-out", 30.02, []
    report = analyse(obs)
    assert report.verdict.startswith(
        "answered 504 Gateway Time-out after 30.0 s (matches a 30 s requestTimeout"
    )


def test_header_contract() -> None:
    report = analyse(
        observation(
            [0.1],
            headers=(
                ("Content-Type", "application/json"),
                ("Content-Length", "80"),
                ("Content-Encoding", "br"),
            ),
            end="eof",
            ended_at=0.1,
        )
    )
    assert codes(report) == {"content-type", "content-length", "content-encoding"}
    assert codes(report, "warning") == {"cache-control", "ended"}
    assert report.verdict == (
        "wrong Content-Type (application/json); buffered (Content-Length: 80); "
        "compressed (Content-Encoding: br)"
    )


def test_silences_near_a_limit_and_no_response() -> None:
    near = analyse(observation([0.0, 26.0, 52.0], listen=60))
    assert near.exit_code == EXIT_HEALTHY
    assert any("close to a 30 s requestTimeout" in f.message for f in near.findings)
    silent = observation([])
    assert analyse(silent).verdict == "no event in 10.0 s"
    nothing = observation([])
    nothing.status = nothing.headers_at = None
    nothing.end, nothing.headers = "no-headers", ()
    assert analyse(nothing).verdict == "no response in 10.0 s"
    unreachable = Observation("http://gw/", 10, WALL, error="Connection refused")
    assert analyse(unreachable).exit_code == EXIT_UNREACHABLE


def test_compare_says_what_the_path_adds() -> None:
    sent = [0.1 * n for n in range(1, 21)]
    path = analyse(observation([0.5 * ((n + 4) // 5) for n in range(1, 21)], sent))
    direct = analyse(observation(sent, sent))
    messages = [f.message for f in compare(path, direct)]
    assert any(m.startswith("buffered (") and m.endswith("only through the path") for m in messages)
    assert "first event after 0.50 s through the path, 0.10 s directly" in messages


def test_json_has_stable_keys() -> None:
    report = analyse(observation([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]))
    document = json.loads(render_json(report, None, []))
    assert list(document) == [
        "url",
        "verdict",
        "healthy",
        "listenedSeconds",
        "timings",
        "http",
        "stream",
        "end",
        "findings",
        "events",
        "exitCode",
        "direct",
        "comparison",
    ]
    assert list(document["events"][0]) == [
        "atSeconds",
        "gapSeconds",
        "delaySeconds",
        "id",
        "type",
        "bytes",
    ]
    assert document["exitCode"] == 0 and document["stream"]["delaySource"] == "timestamp"


# -- against local servers ------------------------------------------------------------------


async def test_a_correct_stream_is_diagnosed_live() -> None:
    lines: list[str] = []
    async with sse_server() as base:
        report, _, _ = await diagnose(f"{base}/live", 1.5, progress=lines.append)
    assert report.verdict == "streams live", render_text(report, None, [])
    assert report.exit_code == EXIT_HEALTHY and len(report.obs.events) >= 5
    assert any("first event" in line for line in lines)


async def test_a_stream_behind_a_buffering_gateway_is_diagnosed_buffered() -> None:
    async with (
        sse_server() as base,
        behind_gateway(base, buffering=True, buffer_bytes=1024) as (_, frontend),
    ):
        report, direct, comparison = await diagnose(
            f"{frontend}/live?pad=100&interval=0.05",
            2.5,
            direct=f"{base}/live?pad=100&interval=0.05",
        )
    text = render_text(report, direct, comparison)
    assert report.verdict.startswith("buffered (events arrive in bursts of "), text
    assert report.exit_code == EXIT_PROBLEMS
    assert direct is not None and direct.exit_code == EXIT_HEALTHY, text
    assert any(f.message.endswith("only through the path") for f in comparison)


async def test_a_stream_cut_after_n_seconds_is_diagnosed_cut() -> None:
    async with sse_server() as base:
        report, _, _ = await diagnose(f"{base}/cut?after=1", 3)
    assert report.obs.end == "cut" and 0.9 <= (report.obs.ended_at or 0) < 2.5
    assert report.verdict.startswith("cut after 1."), report.verdict
    assert report.exit_code == EXIT_PROBLEMS


async def test_a_gzipped_stream_is_diagnosed_compressed() -> None:
    async with sse_server() as base:
        report, _, _ = await diagnose(f"{base}/gzip", 1)
    assert "content-encoding" in codes(report)
    assert report.verdict.startswith("compressed (Content-Encoding: gzip)")


async def test_a_response_with_content_length_is_diagnosed_buffered() -> None:
    async with sse_server() as base:
        report, _, _ = await diagnose(f"{base}/length", 1)
    assert report.verdict.startswith("buffered (Content-Length: ")
    assert len(report.obs.events) == 5 and report.exit_code == EXIT_PROBLEMS


async def test_nothing_listening_is_exit_2() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report, _, _ = await diagnose(f"http://127.0.0.1:{port}/", 1)
    assert report.exit_code == EXIT_UNREACHABLE
    assert report.verdict.startswith("could not connect")


async def doctor_json(url: str, *extra: str) -> tuple[int | None, dict[str, Any], str]:
    """`appgw-sse doctor URL --duration 1s -o json` as a user runs it: its exit status, the
    JSON it printed and what it said on stderr."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "appgw_sse", "doctor", url, "--duration", "1s", *extra),
        *("-o", "json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        stdout, stderr = await process.communicate()
    return process.returncode, json.loads(stdout), stderr.decode()


async def test_cli_prints_json_on_stdout_and_progress_on_stderr() -> None:
    async with sse_server() as base:
        status, document, stderr = await doctor_json(f"{base}/live", "--header", "X-Probe: 1")
    assert status == EXIT_HEALTHY, stderr
    assert document["verdict"] == "streams live" and document["exitCode"] == 0
    assert "HTTP/1.1 200 OK" in stderr


# -- every verdict renders as JSON ----------------------------------------------------------


def _no_response() -> Observation:
    obs = observation([], headers=())
    obs.status = obs.headers_at = None
    obs.end = "no-headers"
    return obs


def _gateway_timeout(after: float) -> Observation:
    obs = observation([], headers=(("Content-Type", "text/html"),))
    obs.status, obs.reason, obs.headers_at, obs.chunks = 504, "Gateway Time-out", after, []
    return obs


def _closed_before_headers() -> Observation:
    obs = observation([], headers=())
    obs.status = obs.headers_at = None
    obs.chunks, obs.end, obs.ended_at = [], "cut", 1.3
    return obs


def _heartbeats_only() -> Observation:
    obs = observation([])
    obs.chunks, obs.heartbeats = [(1.0, 3), (2.0, 3)], [1.0, 2.0]
    return obs


VERDICTS = {
    "live": (lambda: observation([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]), "streams live"),
    "buffered": (
        lambda: observation(
            [0.5 * ((n + 4) // 5) for n in range(1, 21)], [0.1 * n for n in range(1, 21)]
        ),
        "buffered (",
    ),
    "cut": (lambda: observation([0.1, 0.2], end="cut", ended_at=3.2), "cut after 3.2 s"),
    "eof": (lambda: observation([0.1, 0.2], end="eof", ended_at=0.3), "streams live until"),
    "silent": (lambda: observation([]), "no event in 10.0 s"),
    "heartbeats only": (_heartbeats_only, "streams live (heartbeats only"),
    "no response": (_no_response, "no response in"),
    "closed before headers": (_closed_before_headers, "cut after 1.3 s"),
    "504": (lambda: _gateway_timeout(30.02), "answered 504"),
    "unreachable": (
        lambda: Observation("http://gw/", 10, WALL, error="Connection refused"),
        "could not connect",
    ),
    "wrong type, no event": (
        lambda: observation([], headers=(("Content-Type", "text/html"),)),
        "wrong Content-Type",
    ),
}


@pytest.mark.parametrize("name", list(VERDICTS))
def test_json_renders_every_verdict(name: str) -> None:
    make, verdict = VERDICTS[name]
    report = analyse(make())
    assert report.verdict.startswith(verdict), report.verdict
    document = json.loads(render_json(report, report, compare(report, report)))
    assert document["verdict"] == report.verdict and document["exitCode"] == report.exit_code
    assert len(document["events"]) == len(report.obs.events)
    assert document["direct"]["verdict"] == report.verdict
    assert render_text(report, report, [])  # the text rendering too


def test_a_gateway_timeout_names_an_unknown_idle_limit_as_a_cut_does() -> None:
    report = analyse(_gateway_timeout(3.02))
    assert report.verdict == (
        "answered 504 Gateway Time-out after 3.0 s (an idle timeout of about 3.0 s on the path, "
        "such as a requestTimeout of 3 s: raise it above your longest silence)"
    )


def test_compression_is_a_problem_only_when_events_are_held() -> None:
    gzip = (*SSE, ("Content-Encoding", "gzip"))
    sent = [0.1 * n for n in range(1, 21)]
    on_time = analyse(observation(sent, sent, headers=gzip))
    assert on_time.verdict == "streams live" and on_time.exit_code == EXIT_HEALTHY
    assert "content-encoding" in codes(on_time, "warning")
    held = analyse(observation([0.5 * ((n + 4) // 5) for n in range(1, 21)], sent, headers=gzip))
    assert {"content-encoding", "buffered"} <= codes(held)
    assert held.verdict.startswith("compressed (Content-Encoding: gzip); buffered (")


# -- against real third-party SSE software ---------------------------------------------------


async def _httpx_sse_delays(url: str, count: int) -> tuple[list[float], httpx.Headers]:
    """A real client library (httpx-sse): how late each of `count` events arrived by its `ts`."""
    delays: list[float] = []
    async with (
        httpx.AsyncClient(timeout=10) as client,
        aconnect_sse(client, "GET", url) as source,
    ):
        async for sse in source.aiter_sse():
            delays.append(time.time() - json.loads(sse.data)["ts"])
            if len(delays) == count:
                return delays, source.response.headers
    raise AssertionError(f"the stream ended after {len(delays)} events")


async def test_sse_starlette_on_uvicorn_streams_live_for_the_doctor_and_httpx_sse() -> None:
    async with starlette_server() as base:
        report, _, _ = await diagnose(f"{base}/events", 1.5)
        delays, _ = await _httpx_sse_delays(f"{base}/events", 8)
    assert report.verdict == "streams live", render_text(report, None, [])
    assert len(report.obs.events) >= 5 and max(delays) < HELD
    document = json.loads(render_json(report, None, []))
    assert document["exitCode"] == EXIT_HEALTHY and len(document["events"]) >= 5


async def test_a_gzip_stream_flushed_per_event_is_live_with_a_warning() -> None:
    """Starlette's GZipMiddleware flushes each event: every real client gets them on time, so
    the doctor judges by the timeline, not by the header alone."""
    async with starlette_server(gzip=True) as base:
        report, _, _ = await diagnose(f"{base}/events", 1.5)
        delays, headers = await _httpx_sse_delays(f"{base}/events", 8)
    assert report.obs.header("Content-Encoding") == "gzip" and headers["content-encoding"] == "gzip"
    assert max(delays) < HELD, delays
    assert report.verdict == "streams live" and report.exit_code == EXIT_HEALTHY
    assert "content-encoding" in codes(report, "warning")
    document = json.loads(render_json(report, None, []))
    assert document["exitCode"] == EXIT_HEALTHY and document["http"]["headers"]["Content-Encoding"]


async def test_sse_starlette_behind_a_buffering_gateway_is_buffered_for_both_clients() -> None:
    async with (
        starlette_server() as base,
        behind_gateway(base, buffering=True, buffer_bytes=1024) as (_, frontend),
    ):
        report, _, _ = await diagnose(f"{frontend}/events?interval=0.05", 2.5)
        delays, _ = await _httpx_sse_delays(f"{frontend}/events?interval=0.05", 30)
    assert report.verdict.startswith("buffered (events arrive in bursts of "), report.verdict
    assert max(delays) >= HELD, delays  # httpx-sse saw them held too
    document = json.loads(render_json(report, None, []))
    assert document["exitCode"] == EXIT_PROBLEMS and document["stream"]["bursts"] >= 1


async def test_a_504_through_the_gateway_names_the_requesttimeout() -> None:
    async with (
        sse_server() as base,
        behind_gateway(base, request_timeout=1) as (_, frontend),
    ):
        report, _, _ = await diagnose(f"{frontend}/live?delay=3", 2.5)
    assert report.obs.status == 504
    assert "(an idle timeout of about 1.0 s on the path, such as a requestTimeout of 1 s" in (
        report.verdict
    )


async def test_cli_json_when_no_event_arrives() -> None:
    async with sse_server() as base:
        status, document, stderr = await doctor_json(f"{base}/quiet?count=0")
    assert status == EXIT_PROBLEMS, stderr
    assert document["verdict"].startswith("no event in") and document["events"] == []
