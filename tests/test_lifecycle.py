"""When the CLIENT span ends (DESIGN §5): at the body's end by default, at the headers with
``span_end="headers"``, at ``release()``/``close()`` when those come first, at the handshake for
a websocket, at the last activity for a response the garbage collector takes, and exactly once
on every failure path. Every test talks to a real server on loopback; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import weakref
from collections.abc import AsyncIterator
from time import time_ns
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from aiohttp_otel import create_trace_config
from aiohttp_otel._probes import body as _body

from .conftest import Server, SessionFactory, Telemetry, Tls, attrs, read_paths, serve

CHUNK_RECEIVED = "aiohttp.response.chunk_received"
HEADERS_EVENT = "aiohttp.response.headers"
#: Every test's client gives up long before pytest would hang.
TIMEOUT = aiohttp.ClientTimeout(total=10)
#: How long a "stalled" route waits before finishing; the server's teardown cancels it sooner.
STALL_S = 5.0

# -- the server --------------------------------------------------------------------------------


def json_parts(count: int) -> list[bytes]:
    """A JSON array written in ``count`` parts, one element and one line per part."""
    parts = []
    for i in range(count):
        head = "[" if i == 0 else ""
        tail = "]" if i == count - 1 else ","
        element = json.dumps({"i": i, "pad": "p" * 200})
        parts.append(f"{head}{element}{tail}\n".encode())
    return parts


async def _stream(request: web.Request) -> web.StreamResponse:
    """``n`` chunks of ``size`` bytes, ``pause`` seconds between two chunks (chunked encoding)."""
    n = int(request.query.get("n", "5"))
    size = int(request.query.get("size", "1000"))
    pause = float(request.query.get("pause", "0.05"))
    response = web.StreamResponse()
    await response.prepare(request)
    for i in range(n):
        if i:
            await asyncio.sleep(pause)
        await response.write(b"x" * size)
    await response.write_eof()
    return response


async def _json(request: web.Request) -> web.StreamResponse:
    """``json_parts(n)``, ``pause`` seconds between two parts."""
    pause = float(request.query.get("pause", "0.05"))
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for i, part in enumerate(json_parts(int(request.query.get("n", "5")))):
        if i:
            await asyncio.sleep(pause)
        await response.write(part)
    await response.write_eof()
    return response


async def _stall(request: web.Request) -> web.StreamResponse:
    """One chunk of 1000 bytes, then nothing for a long time (the connection stays open)."""
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"x" * 1000)
    await asyncio.sleep(STALL_S)
    await response.write(b"y" * 1000)
    return response


async def _small(request: web.Request) -> web.Response:
    return web.Response(text="small body")


async def _no_body(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]))


async def _hop(request: web.Request) -> web.Response:
    left = int(request.match_info["n"])
    target = f"/hop/{left - 1}" if left > 1 else "/stream?n=3&pause=0.05"
    return web.Response(status=302, text="moved", headers={"Location": target})


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(f"echo:{message.data}")
    return ws


def make_lifecycle_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/stream", _stream)
    app.router.add_get("/json", _json)
    app.router.add_get("/stall", _stall)
    app.router.add_route("*", "/small", _small)
    app.router.add_get("/no-body/{code}", _no_body)
    app.router.add_get("/hop/{n}", _hop)
    app.router.add_get("/ws", _ws)
    return app


@pytest.fixture(params=["http", "https"])
async def stream_server(request: pytest.FixtureRequest, tls: Tls) -> AsyncIterator[Server]:
    async with serve(make_lifecycle_app(), tls.server if request.param == "https" else None) as s:
        yield s


@pytest.fixture
async def plain_stream_server() -> AsyncIterator[Server]:
    async with serve(make_lifecycle_app()) as s:
        yield s


# -- helpers -----------------------------------------------------------------------------------


def new_session(make_session: SessionFactory, **options: Any) -> aiohttp.ClientSession:
    return make_session(session_kwargs={"timeout": TIMEOUT}, **options)


def chunk_events(span: ReadableSpan) -> list[Any]:
    return [e for e in span.events if e.name == CHUNK_RECEIVED]


def sizes_and_offsets(span: ReadableSpan) -> tuple[list[int], list[int]]:
    events = chunk_events(span)
    return (
        [e.attributes["aiohttp.chunk.size"] for e in events],  # type: ignore[index]
        [e.attributes["aiohttp.chunk.offset"] for e in events],  # type: ignore[index]
    )


def headers_time(span: ReadableSpan) -> int:
    (event,) = [e for e in span.events if e.name == HEADERS_EVENT]
    return event.timestamp


def duration_s(span: ReadableSpan) -> float:
    assert span.start_time is not None
    assert span.end_time is not None
    return (span.end_time - span.start_time) / 1e9


def assert_offsets_follow_sizes(sizes: list[int], offsets: list[int]) -> None:
    assert all(size > 0 for size in sizes)
    assert offsets == list(itertools.accumulate([0, *sizes[:-1]]))


def is_exported(telemetry: Telemetry, span_name: str = "GET") -> bool:
    return any(s.name == span_name for s in telemetry.client_spans())


# -- THE acceptance test -----------------------------------------------------------------------


async def test_a_streamed_body_keeps_the_span_open_until_its_last_chunk(
    make_session: SessionFactory, stream_server: Server, telemetry: Telemetry
) -> None:
    """5 chunks of 1000 bytes, 50 ms apart: the span covers the whole download."""
    session = new_session(make_session)
    received = []
    arrivals = []
    async with session.get(stream_server.url("/stream?n=5&size=1000&pause=0.05")) as response:
        async for chunk in response.content.iter_chunked(1000):
            received.append(chunk)
            arrivals.append(time_ns())
    assert b"".join(received) == b"x" * 5000

    span = telemetry.only_span()
    # At least as long as the caller saw the body take (a bound it measured, not the pauses).
    assert span.end_time is not None
    assert span.start_time is not None
    assert span.end_time - span.start_time >= arrivals[-1] - arrivals[0] > 0
    sizes, offsets = sizes_and_offsets(span)
    assert len(sizes) >= 5
    assert sum(sizes) == 5000
    assert_offsets_follow_sizes(sizes, offsets)
    # Chunked encoding feeds each server write on its own: every chunk starts an event.
    assert {0, 1000, 2000, 3000, 4000} <= set(offsets)
    assert attrs(span)["http.response.body.size"] == 5000
    assert span.end_time is not None
    assert span.end_time >= chunk_events(span)[-1].timestamp
    assert span.status.status_code is StatusCode.UNSET


async def test_span_end_headers_ends_the_same_request_at_its_headers(
    make_session: SessionFactory, stream_server: Server, telemetry: Telemetry
) -> None:
    session = new_session(make_session, span_end="headers")
    async with session.get(stream_server.url("/stream?n=5&size=1000&pause=0.05")) as response:
        # The span is over before the body is read at all.
        assert is_exported(telemetry)
        body = b"".join([chunk async for chunk in response.content.iter_chunked(1000)])
    assert body == b"x" * 5000

    span = telemetry.only_span()
    assert chunk_events(span) == []
    assert span.end_time == headers_time(span)
    # Only what had arrived with the headers could be counted.
    assert attrs(span).get("http.response.body.size", 0) <= 1000


async def test_span_end_headers_from_the_environment(
    make_session: SessionFactory,
    plain_stream_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_CLIENT_SPAN_END", "headers")
    session = new_session(make_session)
    async with session.get(plain_stream_server.url("/stream?n=3&pause=0.05")) as response:
        assert is_exported(telemetry)
        await response.read()
    span = telemetry.only_span()
    assert span.end_time == headers_time(span)
    assert chunk_events(span) == []


# -- every read path ---------------------------------------------------------------------------


READERS = read_paths(100)


@pytest.mark.parametrize("how", list(READERS))
async def test_every_read_path_ends_the_span_at_the_body_end(
    make_session: SessionFactory, stream_server: Server, telemetry: Telemetry, how: str
) -> None:
    parts, pause = 5, 0.05
    total_pause = (parts - 1) * pause
    body = b"".join(json_parts(parts))
    session = new_session(make_session)
    async with session.get(stream_server.url(f"/json?n={parts}&pause={pause}")) as response:
        result = await READERS[how](response)
        read_done = time_ns()
    assert result == (json.loads(body) if how == "json" else body)

    span = telemetry.only_span()
    events = chunk_events(span)
    sizes, offsets = sizes_and_offsets(span)
    assert len(events) >= parts
    assert sum(sizes) == len(body)
    assert_offsets_follow_sizes(sizes, offsets)
    assert attrs(span)["http.response.body.size"] == len(body)
    # Recorded as the data arrived, not all at once when the reader got it: only the first
    # part may have come with the headers, the others came one pause apart.
    assert events[-1].timestamp - events[0].timestamp >= (total_pause - pause) * 1e9
    assert span.end_time is not None
    assert span.end_time >= events[-1].timestamp
    assert duration_s(span) >= total_pause
    # Ended at the body's end (network EOF), before the reader returned, not at release.
    assert span.end_time <= read_done


# -- released or closed before the body is over ------------------------------------------------


@pytest.mark.parametrize("how", ["release", "close", "leave_async_with"])
async def test_the_span_ends_when_the_response_is_let_go_before_its_body_ends(
    make_session: SessionFactory, stream_server: Server, telemetry: Telemetry, how: str
) -> None:
    """The whole stream takes 0.4 s; the caller stops after its first chunk."""
    session = new_session(make_session)
    url = stream_server.url("/stream?n=5&size=1000&pause=0.1")
    if how == "leave_async_with":
        async with session.get(url) as response:
            async for _chunk in response.content.iter_chunked(1000):
                received = _body.received_size(response)
                break
        let_go = time_ns()
    else:
        response = await session.get(url)
        await response.content.readexactly(1000)
        received = _body.received_size(response)
        getattr(response, how)()
        let_go = time_ns()
        # Ended right there, synchronously.
        assert is_exported(telemetry)

    span = telemetry.only_span()
    assert span.end_time is not None
    assert span.end_time <= let_go
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attrs(span)
    assert [e.name for e in span.events if e.name == "exception"] == []
    assert 1000 <= received < 5000
    assert attrs(span)["http.response.body.size"] == received
    sizes, _ = sizes_and_offsets(span)
    assert sum(sizes) == received
    # Whatever comes next on that connection (or its close) changes nothing.
    await asyncio.sleep(0.15)
    assert len(telemetry.client_spans()) == 1


async def test_a_release_after_the_body_ended_changes_nothing(
    make_session: SessionFactory, plain_stream_server: Server, telemetry: Telemetry
) -> None:
    session = new_session(make_session)
    response = await session.get(plain_stream_server.url("/stream?n=3&pause=0.05"))
    await response.read()
    span = telemetry.only_span()
    response.release()
    response.close()
    assert telemetry.only_span() is span
    assert attrs(span)["http.response.body.size"] == 3000


# -- bodies that are over at the headers -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("HEAD", "/small", 200), ("GET", "/no-body/204", 204), ("GET", "/no-body/304", 304)],
)
async def test_bodiless_responses_end_at_their_headers(
    make_session: SessionFactory,
    stream_server: Server,
    telemetry: Telemetry,
    method: str,
    path: str,
    status: int,
) -> None:
    session = new_session(make_session)
    async with session.request(method, stream_server.url(path)) as response:
        assert response.status == status
        # Over before the caller even looked at the (absent) body.
        assert is_exported(telemetry, method)
        assert await response.read() == b""

    span = telemetry.only_span()
    assert span.end_time == headers_time(span)
    assert chunk_events(span) == []
    assert attrs(span)["http.response.status_code"] == status
    # The code records the size it sees: nothing.
    assert attrs(span)["http.response.body.size"] == 0
    assert span.status.status_code is StatusCode.UNSET


async def test_a_small_body_that_came_with_the_headers_ends_at_on_request_end(
    make_session: SessionFactory, stream_server: Server, telemetry: Telemetry
) -> None:
    session = new_session(make_session)
    async with session.get(stream_server.url("/small")) as response:
        assert is_exported(telemetry)
        assert await response.text() == "small body"

    span = telemetry.only_span()
    assert span.end_time == headers_time(span)
    assert chunk_events(span) == []
    assert attrs(span)["http.response.body.size"] == len("small body")


# -- websocket ---------------------------------------------------------------------------------


async def test_a_websocket_handshake_span_ends_at_the_handshake(
    make_session: SessionFactory, stream_server: Server, telemetry: Telemetry
) -> None:
    session = new_session(make_session)
    async with session.ws_connect(stream_server.url("/ws")) as ws:
        connected = time_ns()
        # Exported while the websocket is still open.
        span = telemetry.only_span()
        assert not ws.closed
        await ws.send_str("hello")
        message = await ws.receive(timeout=5)
        assert message.data == "echo:hello"
        await asyncio.sleep(0.1)
        assert telemetry.only_span() is span
        await ws.close()

    assert span.name == "GET"
    assert attrs(span)["http.response.status_code"] == 101
    assert span.end_time is not None
    assert span.end_time <= connected
    assert span.status.status_code is StatusCode.UNSET
    assert chunk_events(span) == []
    # Frames do not count as the response body.
    assert attrs(span).get("http.response.body.size", 0) == 0
    assert telemetry.only_span() is span


# -- responses nobody releases -----------------------------------------------------------------


@pytest.mark.parametrize("let_go", ["session_closed", "aiohttp_unpinned"])
async def test_an_unreleased_response_that_is_collected_ends_at_its_last_activity(
    make_session: SessionFactory, plain_stream_server: Server, telemetry: Telemetry, let_go: str
) -> None:
    """The body stalls after its first chunk; the caller drops the response unreleased.

    aiohttp itself keeps a response whose body is still arriving alive, through the payload's
    EOF callback (``payload.on_eof(self._response_eof)``), as long as its connection feeds it.
    It lets go when the session is closed (the protocol drops its payload), and that is the
    real-life way such a response reaches the collector (``session_closed``). The other case
    takes aiohttp's one callback out, so only the instrumentation could keep it alive.
    """
    session = new_session(make_session)
    response = await session.get(plain_stream_server.url("/stall"))
    await response.content.readexactly(1000)
    stream_key = id(response.content)
    if let_go == "session_closed":
        await session.close()
    else:
        response.content._eof_callbacks.remove(response._response_eof)  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)

    collected = weakref.ref(response)
    del response
    gc_time = time_ns()
    gc.collect()

    assert collected() is None, "the instrumentation keeps an unreleased response alive"
    assert is_exported(telemetry), "the span of a collected response never ended"
    span = telemetry.only_span()
    last_chunk = chunk_events(span)[-1].timestamp
    assert span.end_time is not None
    assert span.end_time < gc_time - 200_000_000
    if let_go == "aiohttp_unpinned":
        assert span.end_time == last_chunk
    else:  # ended at its last byte, or when the session closed right after it
        assert last_chunk <= span.end_time <= last_chunk + 50_000_000
    assert attrs(span)["http.response.body.size"] == 1000
    assert stream_key not in _body._receiving


async def test_an_unreleased_response_whose_body_completes_ends_at_the_body_end(
    make_session: SessionFactory, plain_stream_server: Server, telemetry: Telemetry
) -> None:
    session = new_session(make_session)
    response = await session.get(plain_stream_server.url("/stream?n=3&pause=0.05"))
    await response.content.readexactly(1000)
    await asyncio.sleep(0.3)  # the rest arrives meanwhile; nobody reads or releases it
    # Ended by the body's end, before anything was collected.
    span = telemetry.only_span()
    last_chunk = chunk_events(span)[-1].timestamp
    assert span.end_time is not None
    assert last_chunk <= span.end_time <= last_chunk + 50_000_000
    assert attrs(span)["http.response.body.size"] == 3000

    collected = weakref.ref(response)
    del response
    gc.collect()
    assert collected() is None
    assert telemetry.only_span() is span


# -- the session closed mid-body ---------------------------------------------------------------


async def _read_after_the_session_closed(session: aiohttp.ClientSession, url: str) -> Any:
    """Stream, take one chunk, close the session, read on: what the caller gets, and the
    response (unreleased)."""
    response = await session.get(url)
    await response.content.readexactly(1000)
    await session.close()
    try:
        await asyncio.wait_for(response.content.read(), 2)
    except Exception as exc:
        return (type(exc), str(exc)), response
    return "no error", response


async def test_reading_after_the_session_closed_fails_as_uninstrumented(
    make_session: SessionFactory, plain_stream_server: Server, telemetry: Telemetry, tls: Tls
) -> None:
    url = plain_stream_server.url("/stall")
    bare = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.client), timeout=TIMEOUT)
    expected, bare_response = await _read_after_the_session_closed(bare, url)
    bare_response.release()
    outcome, response = await _read_after_the_session_closed(new_session(make_session), url)
    assert outcome == expected
    assert expected != "no error"

    # Whatever happened at close, the span is over once the caller lets the response go;
    # the ledger proves it ended exactly once.
    response.release()
    span = telemetry.only_span()
    assert attrs(span)["http.response.body.size"] == 1000
    # Closing one's own session is not a failure of the request (as a release is not).
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attrs(span)


async def test_closing_the_session_mid_body_ends_the_span(
    make_session: SessionFactory, plain_stream_server: Server, telemetry: Telemetry
) -> None:
    """The body is over when its connection is: the span must not wait for the caller to
    release a response whose session is gone (or forever, if it never does)."""
    session = new_session(make_session)
    response = await session.get(plain_stream_server.url("/stall"))
    await response.content.readexactly(1000)
    await session.close()
    await asyncio.sleep(0.05)  # the connection_lost callbacks
    try:
        assert is_exported(telemetry), "the span outlives the session that carried it"
        span = telemetry.only_span()
        assert attrs(span)["http.response.body.size"] == 1000
        assert span.status.status_code is StatusCode.UNSET or "error.type" in attrs(span)
    finally:
        response.release()  # end it anyway, so the ledger reports only this test's point


# -- the server resets the connection mid-body -------------------------------------------------


@contextlib.asynccontextmanager
async def truncating_server(linger: float) -> AsyncIterator[str]:
    """Promises 10000 bytes, sends 100, then closes (at once, or after ``linger`` seconds)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"z" * 100)
            await writer.drain()
            if linger:
                await asyncio.sleep(linger)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()


async def _truncated_read(session: aiohttp.ClientSession, url: str) -> Any:
    try:
        async with session.get(url) as response:
            await response.read()
    except Exception as exc:
        return type(exc), str(exc)
    return "no error"


@pytest.mark.parametrize("linger", [0.0, 0.1])
async def test_a_connection_reset_mid_body_ends_the_span_as_an_error(
    make_session: SessionFactory, telemetry: Telemetry, linger: float
) -> None:
    async with truncating_server(linger) as url:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as bare:
            expected = await _truncated_read(bare, url)
        outcome = await _truncated_read(new_session(make_session), url)
    assert expected[0] is aiohttp.ClientPayloadError
    assert outcome == expected

    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "aiohttp.client_exceptions.ClientPayloadError"
    assert len([e for e in span.events if e.name == "exception"]) == 1
    assert attrs(span)["http.response.status_code"] == 200
    assert attrs(span)["http.response.body.size"] == 100
    assert duration_s(span) >= linger
    # Error and end once (the ledger), and the duration metric counted it once, as an error.
    (point,) = telemetry.metric_points("http.client.request.duration")
    assert point.count == 1
    assert point.attributes["error.type"] == "aiohttp.client_exceptions.ClientPayloadError"


async def test_a_reset_that_came_before_the_body_watch_began_is_still_an_error(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    """The body can fail before our ``on_request_end`` runs: here another TraceConfig ahead of
    ours awaits in its own ``on_request_end`` (any slow handler, or a busy loop, does the same)
    while the truncated body and the close arrive. The stream already holds the error when
    the watch begins; the span must not end later as a success."""
    slow = aiohttp.TraceConfig()

    async def slow_end(*_args: Any) -> None:
        await asyncio.sleep(0.1)

    slow.on_request_end.append(slow_end)
    ours = create_trace_config(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    # TraceConfigs run in list order: the slow one goes first.
    async with (
        truncating_server(0.0) as url,
        aiohttp.ClientSession(trace_configs=[slow, ours], timeout=TIMEOUT) as session,
    ):
        outcome = await _truncated_read(session, url)
    assert outcome[0] is aiohttp.ClientPayloadError

    span = telemetry.only_span()
    assert attrs(span)["http.response.body.size"] == 100
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "aiohttp.client_exceptions.ClientPayloadError"


# -- the duration metric -----------------------------------------------------------------------


@pytest.mark.parametrize("span_end", ["body", "headers"])
async def test_the_duration_metric_is_the_span_duration(
    make_session: SessionFactory, stream_server: Server, telemetry: Telemetry, span_end: str
) -> None:
    session = new_session(make_session, span_end=span_end)
    async with session.get(stream_server.url("/stream?n=4&pause=0.05")) as response:
        await response.read()

    span = telemetry.only_span()
    (point,) = telemetry.metric_points("http.client.request.duration")
    assert point.count == 1
    assert point.sum == pytest.approx(duration_s(span), abs=1e-6)
    # Ordering, not seconds: the span (and so the point) ends at the last chunk or at the head.
    assert span.end_time is not None
    if span_end == "body":
        assert span.end_time >= chunk_events(span)[-1].timestamp
    else:
        assert span.end_time == headers_time(span)


# -- redirects ---------------------------------------------------------------------------------


async def test_each_redirect_hop_ends_before_the_next_starts_and_the_last_at_its_body_end(
    make_session: SessionFactory, stream_server: Server, telemetry: Telemetry
) -> None:
    session = new_session(make_session)
    async with session.get(stream_server.url("/hop/2")) as response:
        assert await response.read() == b"x" * 3000
        read_done = time_ns()

    hops = telemetry.client_spans()
    assert [attrs(s)["http.response.status_code"] for s in hops] == [302, 302, 200]
    for hop, following in itertools.pairwise(hops):
        assert hop.end_time is not None
        assert following.start_time is not None
        assert hop.end_time <= following.start_time
        assert chunk_events(hop) == []
    final = hops[-1]
    # The body came in over time (the server pauses between chunks), and the span covers it:
    # ordering, not a duration, which a loop's timer rounding can shave below the pauses.
    final_chunks = chunk_events(final)
    assert final.start_time is not None
    assert final.start_time < final_chunks[0].timestamp < final_chunks[-1].timestamp
    assert final.end_time is not None
    assert final.end_time >= chunk_events(final)[-1].timestamp
    assert final.end_time <= read_done
    assert attrs(final)["http.response.body.size"] == 3000
