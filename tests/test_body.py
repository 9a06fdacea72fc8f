"""Body events (DESIGN §3): ``aiohttp.response.chunk_received`` and ``aiohttp.request.chunk_sent``
per chunk, capped per direction per span; the totals in ``http.response.body.size`` /
``http.request.body.size`` past the cap; the ``aiohttp.response.headers`` event; and no work
(nor leak) for requests that are not recorded.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from aiohttp_otel._probes import body as _body

from .conftest import Server, SessionFactory, Telemetry, Tls, attrs, read_paths, serve

CHUNK_RECEIVED = "aiohttp.response.chunk_received"
CHUNK_SENT = "aiohttp.request.chunk_sent"
HEADERS_EVENT = "aiohttp.response.headers"
ENV_MAX = "OTEL_PYTHON_AIOHTTP_CLIENT_MAX_CHUNK_EVENTS"
ENV_EVENTS = "OTEL_PYTHON_AIOHTTP_CLIENT_CHUNK_EVENTS"
TIMEOUT = aiohttp.ClientTimeout(total=10)

#: 100 chunks of 10 bytes, 2 ms apart: well past any cap, each its own HTTP chunk.
MANY = "/stream?n=100&size=10&pause=0.002"
MANY_TOTAL = 1000
MANY_PAUSE_S = 99 * 0.002

PLAIN = b"abcdefghij" * 10_000
COMPRESSED = gzip.compress(PLAIN)

# -- the server --------------------------------------------------------------------------------


async def _stream(request: web.Request) -> web.StreamResponse:
    n = int(request.query.get("n", "5"))
    size = int(request.query.get("size", "1000"))
    pause = float(request.query.get("pause", "0.02"))
    response = web.StreamResponse()
    await response.prepare(request)
    for i in range(n):
        if i:
            await asyncio.sleep(pause)
        await response.write(b"x" * size)
    await response.write_eof()
    return response


def json_lines(count: int) -> list[bytes]:
    parts = []
    for i in range(count):
        head = "[" if i == 0 else ""
        tail = "]" if i == count - 1 else ","
        parts.append(f"{head}{json.dumps({'i': i, 'pad': 'p' * 100})}{tail}\n".encode())
    return parts


async def _json(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for i, part in enumerate(json_lines(4)):
        if i:
            await asyncio.sleep(0.02)
        await response.write(part)
    await response.write_eof()
    return response


async def _echo(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


async def _gzip(request: web.Request) -> web.Response:
    return web.Response(body=COMPRESSED, headers={"Content-Encoding": "gzip"})


async def _gzip_stream(request: web.Request) -> web.StreamResponse:
    """The compressed body written in 4 parts, 20 ms apart."""
    response = web.StreamResponse(headers={"Content-Encoding": "gzip"})
    await response.prepare(request)
    step = len(COMPRESSED) // 4 + 1
    for i in range(0, len(COMPRESSED), step):
        if i:
            await asyncio.sleep(0.02)
        await response.write(COMPRESSED[i : i + step])
    await response.write_eof()
    return response


def make_body_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/stream", _stream)
    app.router.add_get("/json", _json)
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/gzip", _gzip)
    app.router.add_get("/gzip-stream", _gzip_stream)
    return app


@pytest.fixture(params=["http", "https"])
async def body_server(request: pytest.FixtureRequest, tls: Tls) -> AsyncIterator[Server]:
    async with serve(make_body_app(), tls.server if request.param == "https" else None) as s:
        yield s


@pytest.fixture
async def plain_body_server() -> AsyncIterator[Server]:
    async with serve(make_body_app()) as s:
        yield s


# -- helpers -----------------------------------------------------------------------------------


def new_session(make_session: SessionFactory, **options: Any) -> aiohttp.ClientSession:
    return make_session(session_kwargs={"timeout": TIMEOUT}, **options)


def events_named(span: ReadableSpan, name: str) -> list[Any]:
    return [e for e in span.events if e.name == name]


def sizes_offsets(span: ReadableSpan, name: str) -> tuple[list[int], list[int]]:
    events = events_named(span, name)
    return (
        [e.attributes["aiohttp.chunk.size"] for e in events],
        [e.attributes["aiohttp.chunk.offset"] for e in events],
    )


def duration_s(span: ReadableSpan) -> float:
    assert span.start_time is not None
    assert span.end_time is not None
    return (span.end_time - span.start_time) / 1e9


async def get_all(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as response:
        return await response.read()


# -- chunk event attributes --------------------------------------------------------------------


async def test_chunk_events_carry_int_size_and_offset_in_time_order_within_the_span(
    make_session: SessionFactory, body_server: Server, telemetry: Telemetry
) -> None:
    session = new_session(make_session)
    assert await get_all(session, body_server.url("/stream?n=6&size=500")) == b"x" * 3000

    span = telemetry.only_span()
    events = events_named(span, CHUNK_RECEIVED)
    assert len(events) >= 6
    for event in events:
        assert set(event.attributes) == {"aiohttp.chunk.size", "aiohttp.chunk.offset"}
        for value in event.attributes.values():
            assert type(value) is int
    sizes, offsets = sizes_offsets(span, CHUNK_RECEIVED)
    assert all(size > 0 for size in sizes)
    assert offsets == list(itertools.accumulate([0, *sizes[:-1]]))
    assert sum(sizes) == 3000
    stamps = [e.timestamp for e in events]
    assert stamps == sorted(stamps)
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.start_time <= stamps[0]
    assert stamps[-1] <= span.end_time


async def test_the_headers_event_comes_once_before_the_first_chunk(
    make_session: SessionFactory, body_server: Server, telemetry: Telemetry
) -> None:
    session = new_session(make_session)
    await get_all(session, body_server.url("/stream?n=3"))

    span = telemetry.only_span()
    (headers,) = events_named(span, HEADERS_EVENT)
    first_chunk = events_named(span, CHUNK_RECEIVED)[0]
    assert span.start_time is not None
    assert span.start_time <= headers.timestamp <= first_chunk.timestamp
    assert span.events.index(headers) < span.events.index(first_chunk)
    assert headers.attributes == {}


# -- the cap -----------------------------------------------------------------------------------


async def test_max_chunk_events_caps_the_events_not_the_total(
    make_session: SessionFactory, body_server: Server, telemetry: Telemetry
) -> None:
    session = new_session(make_session, max_chunk_events=10)
    assert await get_all(session, body_server.url(MANY)) == b"x" * MANY_TOTAL

    span = telemetry.only_span()
    sizes, offsets = sizes_offsets(span, CHUNK_RECEIVED)
    assert len(sizes) == 10
    assert offsets == list(itertools.accumulate([0, *sizes[:-1]]))
    assert attrs(span)["http.response.body.size"] == MANY_TOTAL
    # The cap stops the events, not the span: it still ends at the body's end.
    assert duration_s(span) >= MANY_PAUSE_S


async def test_max_chunk_events_from_the_environment(
    make_session: SessionFactory,
    plain_body_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_MAX, "10")
    session = new_session(make_session)
    await get_all(session, plain_body_server.url(MANY))

    span = telemetry.only_span()
    assert len(events_named(span, CHUNK_RECEIVED)) == 10
    assert attrs(span)["http.response.body.size"] == MANY_TOTAL


async def test_the_default_cap_is_64(
    make_session: SessionFactory, plain_body_server: Server, telemetry: Telemetry
) -> None:
    await get_all(new_session(make_session), plain_body_server.url(MANY))
    span = telemetry.only_span()
    assert len(events_named(span, CHUNK_RECEIVED)) == 64
    assert attrs(span)["http.response.body.size"] == MANY_TOTAL


async def test_max_chunk_events_zero_records_none(
    make_session: SessionFactory, plain_body_server: Server, telemetry: Telemetry
) -> None:
    await get_all(new_session(make_session, max_chunk_events=0), plain_body_server.url(MANY))
    span = telemetry.only_span()
    assert events_named(span, CHUNK_RECEIVED) == []
    assert attrs(span)["http.response.body.size"] == MANY_TOTAL


async def test_a_bad_max_chunk_events_value_warns_once_and_uses_64(
    make_session: SessionFactory,
    plain_body_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(ENV_MAX, "lots")
    with caplog.at_level(logging.WARNING, logger="aiohttp_otel"):
        session = new_session(make_session)
        new_session(make_session)  # read again: still one warning
        await get_all(session, plain_body_server.url(MANY))

    # Ours only: an older SDK also warns when a second trace config makes the same instruments.
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "aiohttp_otel"
    ]
    assert len(warnings) == 1
    assert ENV_MAX in warnings[0].getMessage()
    assert "lots" in warnings[0].getMessage()
    span = telemetry.only_span()
    assert len(events_named(span, CHUNK_RECEIVED)) == 64
    assert attrs(span)["http.response.body.size"] == MANY_TOTAL


@pytest.mark.parametrize("source", ["keyword", "env"])
async def test_chunk_events_off_keeps_the_total_and_the_body_end(
    make_session: SessionFactory,
    body_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    if source == "env":
        monkeypatch.setenv(ENV_EVENTS, "false")
        session = new_session(make_session)
    else:
        session = new_session(make_session, chunk_events=False)
    assert await get_all(session, body_server.url(MANY)) == b"x" * MANY_TOTAL

    span = telemetry.only_span()
    assert events_named(span, CHUNK_RECEIVED) == []
    assert attrs(span)["http.response.body.size"] == MANY_TOTAL
    assert duration_s(span) >= MANY_PAUSE_S
    assert len(events_named(span, HEADERS_EVENT)) == 1


async def test_the_cap_is_per_direction(
    make_session: SessionFactory, plain_body_server: Server, telemetry: Telemetry
) -> None:
    """Three chunks sent do not use up the response's budget of 3, nor the other way round."""

    async def body() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"u" * 10

    session = new_session(make_session, max_chunk_events=3)
    async with session.post(plain_body_server.url("/echo"), data=body()) as response:
        assert await response.text() == "50"
    await get_all(session, plain_body_server.url("/stream?n=5&size=10"))

    post, get = telemetry.client_spans()
    assert len(events_named(post, CHUNK_SENT)) == 3
    assert attrs(post)["http.request.body.size"] == 50
    assert len(events_named(get, CHUNK_RECEIVED)) == 3
    assert events_named(get, CHUNK_SENT) == []


# -- request body ------------------------------------------------------------------------------


async def test_an_async_generator_body_gives_one_chunk_sent_event_per_chunk(
    make_session: SessionFactory, body_server: Server, telemetry: Telemetry
) -> None:
    async def body() -> AsyncIterator[bytes]:
        for size in (10, 20, 30):
            yield b"a" * size
            await asyncio.sleep(0.01)

    session = new_session(make_session)
    async with session.post(body_server.url("/echo"), data=body()) as response:
        assert await response.text() == "60"

    span = telemetry.only_span()
    assert sizes_offsets(span, CHUNK_SENT) == ([10, 20, 30], [0, 10, 30])
    assert attrs(span)["http.request.body.size"] == 60
    stamps = [e.timestamp for e in events_named(span, CHUNK_SENT)]
    assert stamps == sorted(stamps)
    assert span.start_time is not None
    assert span.start_time <= stamps[0]


async def test_a_bytes_body_gives_one_chunk_sent_event(
    make_session: SessionFactory, body_server: Server, telemetry: Telemetry
) -> None:
    session = new_session(make_session)
    async with session.post(body_server.url("/echo"), data=b"q" * 1234) as response:
        assert await response.text() == "1234"

    span = telemetry.only_span()
    assert sizes_offsets(span, CHUNK_SENT) == ([1234], [0])
    assert attrs(span)["http.request.body.size"] == 1234


async def test_a_request_without_body_has_no_chunk_sent_and_no_request_body_size(
    make_session: SessionFactory, body_server: Server, telemetry: Telemetry
) -> None:
    session = new_session(make_session)
    async with session.get(body_server.url("/echo")) as response:
        assert await response.text() == "0"

    span = telemetry.only_span()
    assert events_named(span, CHUNK_SENT) == []
    assert "http.request.body.size" not in attrs(span)


async def test_request_body_size_is_counted_past_the_cap(
    make_session: SessionFactory, plain_body_server: Server, telemetry: Telemetry
) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"c" * 7

    session = new_session(make_session, max_chunk_events=4)
    async with session.post(plain_body_server.url("/echo"), data=body()) as response:
        assert await response.text() == "140"

    span = telemetry.only_span()
    assert sizes_offsets(span, CHUNK_SENT) == ([7, 7, 7, 7], [0, 7, 14, 21])
    assert attrs(span)["http.request.body.size"] == 140


# -- compressed responses ----------------------------------------------------------------------

#: aiohttp 3.13 added ``StreamReader.total_raw_bytes``: from then on the size on the wire is
#: recorded; before, the decoded size (what the stream counts) is all there is.
WIRE_SIZES = hasattr(StreamReader, "total_raw_bytes")


def expected_gzip_size() -> int:
    return len(COMPRESSED) if WIRE_SIZES else len(PLAIN)


async def test_a_gzip_body_size_is_the_size_on_the_wire(
    make_session: SessionFactory, body_server: Server, telemetry: Telemetry
) -> None:
    """aiohttp 3.13+ exposes ``content.total_raw_bytes``: the compressed size is recorded."""
    session = new_session(make_session)
    assert await get_all(session, body_server.url("/gzip")) == PLAIN

    span = telemetry.only_span()
    assert attrs(span)["http.response.body.size"] == expected_gzip_size()
    assert len(COMPRESSED) < len(PLAIN)


async def test_a_streamed_gzip_body_records_decoded_chunks_and_the_wire_total(
    make_session: SessionFactory, body_server: Server, telemetry: Telemetry
) -> None:
    """What the code does on aiohttp 3.14: chunk events follow the decoded stream the caller
    reads (sizes add up to the decompressed length), ``http.response.body.size`` is the
    compressed size on the wire."""
    session = new_session(make_session)
    assert await get_all(session, body_server.url("/gzip-stream")) == PLAIN

    span = telemetry.only_span()
    sizes, offsets = sizes_offsets(span, CHUNK_RECEIVED)
    assert sizes
    assert sum(sizes) == len(PLAIN)
    assert offsets == list(itertools.accumulate([0, *sizes[:-1]]))
    assert attrs(span)["http.response.body.size"] == expected_gzip_size()
    assert duration_s(span) >= 0.06


# -- sampled out, and the watch registry -------------------------------------------------------


READERS = read_paths(64)


@pytest.mark.parametrize("how", list(READERS))
async def test_a_sampled_out_request_exports_nothing_works_and_leaves_no_watch(
    make_session: SessionFactory, body_server: Server, telemetry: Telemetry, how: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before = set(_body._receiving)
    session = new_session(make_session, tracer_provider=provider)
    body = b"".join(json_lines(4))

    async with session.get(body_server.url("/json")) as response:
        result = await READERS[how](response)
    assert result == (json.loads(body) if how == "json" else body)
    # Released early, too.
    async with session.get(body_server.url("/stream?n=5&pause=0.05")) as response:
        await response.content.readexactly(1000)

    assert exporter.get_finished_spans() == ()
    assert telemetry.spans() == []
    assert set(_body._receiving) - before == set()
    # Unrecorded requests are still measured (the metric does not depend on sampling).
    (point,) = telemetry.metric_points("http.client.request.duration")
    assert point.count == 2


async def test_fifty_streamed_requests_leave_the_watch_registry_empty(
    make_session: SessionFactory, plain_body_server: Server, telemetry: Telemetry
) -> None:
    before = set(_body._receiving)
    session = new_session(make_session, phases="off")
    seen_watched = []

    async def one(i: int) -> None:
        async with session.get(plain_body_server.url("/stream?n=4&size=100")) as response:
            seen_watched.append(id(response.content) in _body._receiving)
            if i % 3 == 0:
                await response.content.readexactly(100)  # let go before the end
            elif i % 3 == 1:
                assert await response.read() == b"x" * 400
            else:
                assert len(b"".join([c async for c in response.content.iter_any()])) == 400

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(50))), 20)

    assert any(seen_watched), "no request was ever watched: the check below would prove nothing"
    assert set(_body._receiving) - before == set()
    spans = telemetry.client_spans()
    assert len(spans) == 50
    sizes = [attrs(s)["http.response.body.size"] for s in spans]
    # 33 read to the end; the 17 let go early counted what had arrived by then.
    assert sizes.count(400) >= 33
    assert all(100 <= size <= 400 for size in sizes)
