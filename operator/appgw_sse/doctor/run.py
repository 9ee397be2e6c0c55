"""The doctor's I/O: listen to a stream like EventSource does and record every arrival, then
diagnose; `appgw-sse doctor` itself."""

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from appgw_sse.doctor.analysis import Finding, Report, analyse, compare, in_seconds
from appgw_sse.doctor.observation import Observation
from appgw_sse.doctor.parse import SseParser
from appgw_sse.doctor.render import render_json, render_text

Progress = Callable[[str], None]

CONNECT_TIMEOUT_SECONDS = 10.0


async def observe(
    url: str,
    listen_seconds: float,
    headers: dict[str, str] | None = None,
    progress: Progress = lambda _: None,
) -> Observation:
    """Listen to `url` for `listen_seconds` as EventSource would, recording every arrival."""
    obs = Observation(url, listen_seconds, time.time())
    loop = asyncio.get_running_loop()
    start = loop.time()

    def now() -> float:
        return loop.time() - start

    async def connected(*_: Any) -> None:
        obs.connected_at = now()

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(connected)
    request_headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    request_headers |= headers or {}
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=min(CONNECT_TIMEOUT_SECONDS, listen_seconds)
    )
    parser = SseParser()
    ticker = asyncio.ensure_future(_tick(obs, now, progress))
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, trace_configs=[trace]) as session,
            asyncio.timeout(listen_seconds),
            session.get(url, headers=request_headers) as response,
        ):
            obs.headers_at = now()
            obs.status, obs.reason = response.status, response.reason
            version = response.version
            obs.version = f"HTTP/{version.major}.{version.minor}" if version else None
            obs.headers = tuple(response.headers.items())
            progress(
                f"{in_seconds(obs.headers_at)}  {obs.version} {obs.status} {obs.reason} "
                f"({obs.header('Content-Type') or 'no Content-Type'})"
            )
            while chunk := await response.content.readany():
                at = now()
                obs.chunks.append((at, len(chunk)))
                events, comments = parser.feed(chunk, at)
                obs.heartbeats += [at] * comments
                if events and not obs.events:
                    progress(f"{in_seconds(at)}  first event")
                obs.events += events
            obs.end, obs.ended_at = "eof", now()
    except TimeoutError:  # listened long enough
        if obs.connected_at is None:
            obs.error = f"no connection within {in_seconds(listen_seconds)}"
        elif obs.headers_at is None:
            obs.end = "no-headers"
    except (aiohttp.ClientError, OSError) as exc:
        if obs.connected_at is None:
            obs.error = str(exc) or type(exc).__name__
        else:
            obs.end, obs.ended_at = "cut", now()
            obs.end_detail = _loss(exc)
    finally:
        ticker.cancel()
        obs.retry_ms = parser.retry_ms
    progress(f"{in_seconds(now())}  {_end_words(obs)}")
    return obs


def _loss(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the body stopped before its final chunk"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _end_words(obs: Observation) -> str:
    if obs.error is not None:
        return f"could not connect: {obs.error}"
    return {
        "listening": "listened long enough: stopping",
        "eof": "the server ended the stream",
        "cut": "the connection was cut",
        "no-headers": "no response: stopping",
    }[obs.end]


async def _tick(obs: Observation, now: Callable[[], float], progress: Progress) -> None:
    """A progress line now and then, so silences are visible while listening."""
    interval = min(5.0, max(1.0, obs.listen_seconds / 6))
    while True:
        await asyncio.sleep(interval)
        last = obs.chunks[-1][0] if obs.chunks else None
        quiet = (
            f", last byte {in_seconds(now() - last)} ago" if last is not None else ", no byte yet"
        )
        progress(
            f"{in_seconds(now())}  {len(obs.events)} events, {len(obs.heartbeats)} heartbeats"
            + quiet
        )


async def diagnose(
    url: str,
    listen_seconds: float,
    headers: dict[str, str] | None = None,
    direct: str | None = None,
    progress: Progress = lambda _: None,
) -> tuple[Report, Report | None, list[Finding]]:
    """Observe `url` (and `direct` at the same time, so both see the same schedule)."""
    if direct is None:
        return analyse(await observe(url, listen_seconds, headers, progress)), None, []

    def labelled(label: str) -> Progress:
        return lambda line: progress(f"[{label}] {line}")

    path_obs, direct_obs = await asyncio.gather(
        observe(url, listen_seconds, headers, labelled("path")),
        observe(direct, listen_seconds, headers, labelled("direct")),
    )
    direct_report = analyse(direct_obs)
    report = analyse(path_obs, direct_report)
    return report, direct_report, compare(report, direct_report)


def main(
    url: str,
    listen_seconds: float,
    headers: Sequence[tuple[str, str]],
    direct: str | None,
    output: str,
) -> int:
    """The `appgw-sse doctor` command: progress on stderr, the report on stdout."""

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report, direct_report, comparison = asyncio.run(
        diagnose(url, max(listen_seconds, 1.0), dict(headers), direct, progress)
    )
    if output == "json":
        print(render_json(report, direct_report, comparison))
    else:
        print(render_text(report, direct_report, comparison))
    return report.exit_code
