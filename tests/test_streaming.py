"""The streaming view: how a streamed body arrived, at a glance, on the CLIENT span."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from aiohttp import web

from .conftest import SessionFactory, Telemetry, attrs, serve

CHUNKS = 5
GAP_S = 0.05
FIRST_DELAY_S = 0.08
LONG_GAP_S = 0.3


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await asyncio.sleep(FIRST_DELAY_S)  # the model is thinking: time to first chunk
    for i in range(CHUNKS):
        if i:
            await asyncio.sleep(LONG_GAP_S if i == 3 else GAP_S)  # one longer pause
        await response.write(f"data: {i}\n\n".encode())
    await response.write_eof()
    return response


@pytest.mark.parametrize("phases", ["spans", "events"])
async def test_a_five_chunk_stream_shows_first_chunk_time_largest_gap_and_count(
    make_session: SessionFactory, telemetry: Telemetry, phases: str
) -> None:
    app = web.Application()
    app.router.add_get("/sse", _stream)
    received: list[bytes] = []
    async with serve(app) as server:
        session = make_session(phases=phases)
        async with session.get(server.url("/sse")) as response:
            async for chunk in response.content.iter_any():
                received.append(chunk)
    assert b"".join(received) == b"".join(f"data: {i}\n\n".encode() for i in range(CHUNKS))

    span = telemetry.only_span()
    events = span.events
    headers_at = next(e.timestamp for e in events if e.name == "aiohttp.response.headers")
    chunk_times = [e.timestamp for e in events if e.name == "aiohttp.response.chunk_received"]
    # Five writes, apart in time: five chunks, unless a stalled client read two at once.
    assert 2 <= len(chunk_times) <= CHUNKS
    assert attrs(span)["aiohttp.response.chunk_count"] == len(chunk_times)
    # The attributes are what the events show, not a second clock.
    first = attrs(span)["aiohttp.response.time_to_first_chunk"]
    assert first == pytest.approx((chunk_times[0] - headers_at) / 1e9, abs=1e-9)
    gaps = [b - a for a, b in itertools.pairwise(chunk_times)]
    largest = attrs(span)["aiohttp.response.chunk_gap.max"]
    assert largest == pytest.approx(max(gaps) / 1e9, abs=1e-9)
    # Lower bounds only, from what the server did: scheduling can add time, never remove it.
    assert first >= FIRST_DELAY_S * 0.9
    assert largest >= LONG_GAP_S * 0.9
    assert span.end_time >= chunk_times[-1]  # type: ignore[operator]


async def test_a_body_that_came_with_its_headers_has_no_gap(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    async def whole(_: web.Request) -> web.Response:
        return web.Response(text="all at once")

    app = web.Application()
    app.router.add_get("/whole", whole)
    async with serve(app) as server, make_session().get(server.url("/whole")) as response:
        assert await response.text() == "all at once"
    span = telemetry.only_span()
    # A body complete with its head ends there; no chunk was watched arriving.
    assert "aiohttp.response.chunk_gap.max" not in attrs(span)
    assert "aiohttp.response.chunk_count" not in attrs(span)
