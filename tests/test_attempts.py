"""Every attempt on the wire is observed where it happens, not inferred from aiohttp's signals.

aiohttp signals a logical request once, around every call its client middlewares make and
around its own resend after a failed connection. Each of those attempts must still be its own
CLIENT span, with its own status, ``http.request.resend_count``, traceparent and timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from time import time_ns
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.trace import SpanKind, StatusCode

from aiohttp_otel import create_trace_config

from .conftest import (
    SessionFactory,
    Telemetry,
    attrs,
    closed_port,
    fetch,
    parse_traceparent,
    serve,
    span_ids,
)

HEADERS_SENT = "aiohttp.request.headers_sent"
BODY_SENT = "aiohttp.request.body_sent"
RESPONSE_HEADERS = "aiohttp.response.headers"

needs_middlewares = pytest.mark.skipif(
    not hasattr(aiohttp, "DigestAuthMiddleware"),
    reason="client middlewares are new in aiohttp 3.12",
)


def event_times(span: Any) -> dict[str, int]:
    return {e.name: e.timestamp for e in span.events if e.name in TIMELINE}


TIMELINE = (HEADERS_SENT, BODY_SENT, RESPONSE_HEADERS)


@contextlib.asynccontextmanager
async def scripted_server(statuses: list[int], **headers: str) -> AsyncIterator[Any]:
    """Answers each request with the next status of the script; records the traceparents."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        status = statuses[min(len(seen), len(statuses)) - 1]
        extra = headers if status == 401 and "Authorization" not in request.headers else {}
        return web.Response(status=status, text=f"answer {len(seen)}", headers=extra)

    app = web.Application()
    app.router.add_route("*", "/api", handle)
    async with serve(app) as server:
        server.seen = seen  # type: ignore[attr-defined]
        yield server


# -- client middlewares ----------------------------------------------------------------------


@needs_middlewares
async def test_a_digest_challenge_and_its_answer_are_two_attempts(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    challenge = 'Digest realm="r", nonce="n", qop="auth", algorithm=MD5'
    async with scripted_server([401, 200], **{"WWW-Authenticate": challenge}) as server:
        digest = aiohttp.DigestAuthMiddleware("u", "p")  # type: ignore[attr-defined]
        session = make_session(session_kwargs={"middlewares": (digest,)})
        assert await fetch(session, server.url("/api")) == (200, "answer 2")
        assert "Authorization" in server.seen[1]

    challenged, answered = telemetry.client_spans()
    assert challenged.status.status_code is StatusCode.ERROR
    assert attrs(challenged)["http.response.status_code"] == 401
    assert attrs(challenged)["error.type"] == "401"
    assert "http.request.resend_count" not in attrs(challenged)
    assert answered.status.status_code is StatusCode.UNSET
    assert attrs(answered)["http.response.status_code"] == 200
    assert attrs(answered)["http.request.resend_count"] == 1
    # Siblings under the caller, one after the other.
    assert challenged.parent == answered.parent
    assert challenged.end_time <= answered.start_time  # type: ignore[operator]
    for span, headers in zip((challenged, answered), server.seen, strict=True):
        assert parse_traceparent(headers["traceparent"]) == span_ids(span)


async def retry_on_503(req: Any, handler: Any) -> Any:
    """A typical retry middleware: up to three tries while the server says 503."""
    for _ in range(3):
        response = await handler(req)
        if response.status != 503:
            break
        response.release()
    return response


@needs_middlewares
async def test_a_retry_middleware_makes_one_span_per_try(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    statuses: list[Any] = []

    def response_hook(span: Any, params: Any) -> None:
        statuses.append((type(params).__name__, params.response.status))

    async with scripted_server([503, 503, 200]) as server:
        session = make_session(
            response_hook=response_hook, session_kwargs={"middlewares": (retry_on_503,)}
        )
        assert await fetch(session, server.url("/api")) == (200, "answer 3")

    tries = telemetry.client_spans()
    assert [attrs(s).get("http.request.resend_count") for s in tries] == [None, 1, 2]
    assert [attrs(s)["http.response.status_code"] for s in tries] == [503, 503, 200]
    assert [s.status.status_code for s in tries] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert [attrs(s).get("error.type") for s in tries] == ["503", "503", None]
    # Each try carried its own traceparent, naming its own span.
    assert [parse_traceparent(h["traceparent"]) for h in server.seen] == [
        span_ids(s) for s in tries
    ]
    # The response hook saw each try, as a finished exchange.
    assert statuses == [
        ("TraceRequestEndParams", 503),
        ("TraceRequestEndParams", 503),
        ("TraceRequestEndParams", 200),
    ]
    # Each try has its own timeline, in order, and the metric counts each.
    for span in tries:
        times = event_times(span)
        assert list(times) == [HEADERS_SENT, RESPONSE_HEADERS]
        assert span.start_time <= times[HEADERS_SENT] <= times[RESPONSE_HEADERS]  # type: ignore[operator]
        assert times[RESPONSE_HEADERS] <= span.end_time  # type: ignore[operator]
    (point,) = [
        p
        for p in telemetry.metric_points("http.client.request.duration")
        if p.attributes.get("http.response.status_code") == 503
    ]
    assert point.count == 2


# -- aiohttp's own resend --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def drops_the_first_request() -> AsyncIterator[int]:
    """A server that reads the first request and hangs up without a word; answers the rest."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            if connections > 1:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def test_a_fresh_connection_dropped_before_the_answer_is_a_real_error_not_stale(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    async with drops_the_first_request() as port:
        assert await fetch(make_session(), f"http://127.0.0.1:{port}/") == (200, "ok")

    dropped, resent = telemetry.client_spans()
    # The connection was new: nothing went stale, the server hung up.
    assert attrs(dropped)["error.type"] == "aiohttp.client_exceptions.ServerDisconnectedError"
    assert dropped.status.status_code is StatusCode.ERROR
    (exception,) = [e for e in dropped.events if e.name == "exception"]
    assert exception.attributes["exception.type"] == (  # type: ignore[index]
        "aiohttp.client_exceptions.ServerDisconnectedError"
    )
    assert exception.timestamp == dropped.end_time
    assert "http.response.status_code" not in attrs(dropped)
    assert attrs(resent)["http.request.resend_count"] == 1
    assert attrs(resent)["http.response.status_code"] == 200
    assert dropped.end_time <= resent.start_time  # type: ignore[operator]


# -- a failure is timed where it happens -------------------------------------------------------


async def test_a_refused_connect_ends_at_the_failure_not_after_describing_it(
    telemetry: Telemetry,
) -> None:
    """A handler that runs before ours sees the exception signal after the failure: our span,
    its exception event and its duration all end at or before that moment."""
    signalled: list[int] = []

    async def on_exception(*_: Any) -> None:
        signalled.append(time_ns())

    first = aiohttp.TraceConfig()
    first.on_request_exception.append(on_exception)
    ours = create_trace_config(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    url = f"http://127.0.0.1:{closed_port()}/"
    async with aiohttp.ClientSession(trace_configs=[first, ours]) as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            await fetch(session, url)

    span = telemetry.only_span()
    assert span.end_time is not None
    assert span.end_time <= signalled[0]
    (exception,) = [e for e in span.events if e.name == "exception"]
    assert exception.timestamp == span.end_time
    (point,) = telemetry.metric_points("http.client.request.duration")
    assert point.sum == pytest.approx((span.end_time - span.start_time) / 1e9, abs=1e-9)  # type: ignore[operator]


# -- the request timeline ----------------------------------------------------------------------


@pytest.mark.parametrize("phases", ["spans", "events"])
async def test_the_timeline_of_a_get(
    make_session: SessionFactory, server: Any, telemetry: Telemetry, phases: str
) -> None:
    assert await fetch(make_session(phases=phases), server.url("/ok")) == (200, "ok")
    span = telemetry.only_span()
    times = event_times(span)
    # A GET has no body: nothing marks its end.
    assert list(times) == [HEADERS_SENT, RESPONSE_HEADERS]
    assert span.start_time <= times[HEADERS_SENT] <= times[RESPONSE_HEADERS]  # type: ignore[operator]
    assert times[RESPONSE_HEADERS] <= span.end_time  # type: ignore[operator]
    if phases == "events":
        # The connection was set up before the request went out.
        setup_end = next(e.timestamp for e in span.events if e.name == "connection_setup.end")
        assert setup_end <= times[HEADERS_SENT]


async def _echo_after_reading(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(text=f"{len(body)} bytes")


async def chunks() -> AsyncIterator[bytes]:
    for _ in range(3):
        yield b"x" * 1000
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("body", ["bytes", "stream"])
@pytest.mark.parametrize("phases", ["spans", "events"])
async def test_the_timeline_of_a_post_with_a_body(
    make_session: SessionFactory, telemetry: Telemetry, body: str, phases: str
) -> None:
    app = web.Application()
    app.router.add_post("/echo", _echo_after_reading)
    data: Any = b"x" * 3000 if body == "bytes" else chunks()
    async with serve(app) as server:
        session = make_session(phases=phases)
        assert await fetch(session, server.url("/echo"), "POST", data=data) == (200, "3000 bytes")

    span = telemetry.only_span()
    times = event_times(span)
    assert list(times) == [HEADERS_SENT, BODY_SENT, RESPONSE_HEADERS]
    assert span.start_time <= times[HEADERS_SENT] <= times[BODY_SENT]  # type: ignore[operator]
    assert times[BODY_SENT] <= times[RESPONSE_HEADERS] <= span.end_time  # type: ignore[operator]
    assert attrs(span)["http.request.body.size"] == 3000
    last_chunk = max(e.timestamp for e in span.events if e.name == "aiohttp.request.chunk_sent")
    assert last_chunk <= times[BODY_SENT]


# -- Unix sockets ------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets")
async def test_a_unix_socket_request_names_its_socket_path(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    path = str(tmp_path / "api.sock")

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    trace_config = create_trace_config(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        connector = aiohttp.UnixConnector(path=path)
        async with aiohttp.ClientSession(connector=connector, trace_configs=[trace_config]) as s:
            assert await fetch(s, "http://localhost/ok") == (200, "ok")
            assert await fetch(s, "http://localhost/ok") == (200, "ok")
    finally:
        await runner.cleanup()

    first, reused = telemetry.client_spans()
    for span in (first, reused):
        assert span.kind is SpanKind.CLIENT
        assert attrs(span)["network.peer.address"] == path
        assert attrs(span)["network.transport"] == "unix"
        assert "network.peer.port" not in attrs(span)
    (setup,) = telemetry.children(first)
    assert setup.name == "HTTP connection_setup"
    assert attrs(setup)["network.peer.address"] == path
    assert attrs(setup)["network.transport"] == "unix"
