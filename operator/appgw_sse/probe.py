"""The header-conformance probe: a short GET with Accept: text/event-stream to a pod."""

import asyncio

import aiohttp

from appgw_sse.core.backends import UNREACHABLE, conformance


async def probe_pod(
    session: aiohttp.ClientSession, url: str, expected: dict[str, str], deadline: float
) -> str:
    """The conformance verdict for one pod. One deadline bounds connecting, the headers and
    the first bytes, so a backend that hangs costs at most `deadline`; a stream that is
    silent after good headers is still conformant."""
    verdict = UNREACHABLE
    try:
        async with asyncio.timeout(deadline):
            async with session.get(url, headers={"Accept": "text/event-stream"}) as response:
                verdict = conformance(response.status, response.headers, expected)
                await response.content.readany()
    except (TimeoutError, aiohttp.ClientError, OSError):
        pass
    return verdict
