"""Redirects and resends: one CLIENT span per physical request, siblings, each with its own
traceparent, ``http.request.resend_count`` on the later ones."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from time import time_ns
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.trace import StatusCode

from aiohttp_otel import create_trace_config

from .conftest import (
    Server,
    SessionFactory,
    Telemetry,
    attrs,
    closed_port,
    echoed_headers,
    fetch,
    parse_traceparent,
    serve,
    span_ids,
)


async def test_a_redirect_chain_gives_one_sibling_span_per_hop(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    session = make_session()
    with tracer.start_as_current_span("caller") as caller:
        assert await fetch(session, server.url("/redirect/2")) == (200, "ok")

    hops = telemetry.client_spans()
    assert [attrs(s)["url.full"] for s in hops] == [
        server.url("/redirect/2"),
        server.url("/redirect/1"),
        server.url("/ok"),
    ]
    assert [attrs(s)["http.response.status_code"] for s in hops] == [302, 302, 200]
    assert [attrs(s).get("http.request.resend_count") for s in hops] == [None, 1, 2]
    assert all(s.parent is not None and s.parent.span_id == caller.context.span_id for s in hops)
    assert all(s.status.status_code is StatusCode.UNSET for s in hops)
    # Hops follow each other in time.
    for earlier, later in itertools.pairwise(hops):
        assert earlier.end_time is not None
        assert later.start_time is not None
        assert earlier.end_time <= later.start_time


async def test_each_hop_sends_its_own_traceparent(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    seen: list[str] = []

    async def on_headers(request: web.Request) -> web.Response:
        seen.append(request.headers["traceparent"])
        if len(seen) == 1:
            return web.Response(status=307, headers={"Location": "/second"})
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/first", on_headers)
    app.router.add_get("/second", on_headers)
    async with serve(app) as srv:
        assert await fetch(make_session(), srv.url("/first")) == (200, "done")

    hops = telemetry.client_spans()
    assert len(hops) == 2
    assert [parse_traceparent(tp) for tp in seen] == [span_ids(s) for s in hops]


async def test_303_after_post_is_followed_with_get(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    assert await fetch(session, http_server.url("/redirect/1?code=303"), "POST", data=b"x") == (
        200,
        "ok",
    )
    first, second = telemetry.client_spans()
    assert (first.name, attrs(first)["http.request.method"]) == ("POST", "POST")
    assert (second.name, attrs(second)["http.request.method"]) == ("GET", "GET")
    assert attrs(second)["url.full"] == http_server.url("/ok")


async def test_too_many_redirects_is_an_error_on_the_last_hop(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    with pytest.raises(aiohttp.TooManyRedirects):
        await fetch(session, http_server.url("/loop"), max_redirects=3)

    hops = telemetry.client_spans()
    assert len(hops) == 3
    assert [attrs(s).get("http.request.resend_count") for s in hops] == [None, 1, 2]
    *followed, last = hops
    assert all(s.status.status_code is StatusCode.UNSET for s in followed)
    assert last.status.status_code is StatusCode.ERROR
    assert attrs(last)["http.response.status_code"] == 302
    assert attrs(last)["error.type"] == "aiohttp.client_exceptions.TooManyRedirects"
    # The last hop was answered (a redirect aiohttp would not follow), then failed.
    assert [e.name for e in last.events] == [
        "aiohttp.request.headers_sent",
        "aiohttp.response.headers",
        "exception",
    ]


async def test_a_3xx_without_location_is_the_final_answer(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    assert await fetch(make_session(), http_server.url("/no-location")) == (302, "nowhere to go")
    span = telemetry.only_span()
    assert attrs(span)["http.response.status_code"] == 302
    assert "http.request.resend_count" not in attrs(span)
    assert span.status.status_code is StatusCode.UNSET


async def test_redirect_to_another_host_describes_the_new_server(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    target = http_server.url("/ok", host="127.0.0.1")
    url = http_server.url(f"/redirect-to?to={target}")
    assert await fetch(make_session(), url) == (200, "ok")
    first, second = telemetry.client_spans()
    assert attrs(first)["server.address"] == "localhost"
    assert attrs(second)["server.address"] == "127.0.0.1"
    assert attrs(second)["url.full"] == target


async def test_not_following_redirects_gives_one_span(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    status, _ = await fetch(make_session(), http_server.url("/redirect/1"), allow_redirects=False)
    assert status == 302
    assert attrs(telemetry.only_span())["http.response.status_code"] == 302


# -- aiohttp's silent resend on a stale pooled connection ------------------------------------


@contextlib.asynccontextmanager
async def stale_keepalive_server() -> AsyncIterator[tuple[int, list[str]]]:
    """Answers the first request of a connection and promises keep-alive, then drops the
    connection on the second request without answering: a pooled connection gone stale."""
    log: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                log.append(head.decode("latin-1"))
                if served == 1 and len(log) == 2:
                    return  # the stale connection: close without a word
                served += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, log
    finally:
        server.close()
        await server.wait_closed()


async def test_a_resend_after_a_stale_connection_is_its_own_span(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    async with stale_keepalive_server() as (port, log):
        session = make_session()
        url = f"http://127.0.0.1:{port}/x"
        assert await fetch(session, url) == (200, "ok")
        assert await fetch(session, url) == (200, "ok")
        await session.close()  # or the server's wait_closed() waits out the keep-alive
    assert len(log) == 3, "the second request must have been resent once"

    first, failed, resent = telemetry.client_spans()
    assert attrs(first)["http.response.status_code"] == 200
    assert failed.status.status_code is StatusCode.ERROR
    assert attrs(failed)["error.type"] == "stale_connection"
    assert "http.response.status_code" not in attrs(failed)
    assert "http.request.resend_count" not in attrs(failed)
    assert attrs(resent)["http.request.resend_count"] == 1
    assert attrs(resent)["http.response.status_code"] == 200
    assert resent.status.status_code is StatusCode.UNSET
    # Each attempt carried its own traceparent.
    sent = [
        line for head in log[1:] for line in head.split("\r\n") if line.startswith("traceparent")
    ]
    assert [parse_traceparent(line.split(": ", 1)[1]) for line in sent] == [
        span_ids(failed),
        span_ids(resent),
    ]


async def test_redirect_hop_headers_reach_the_server(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    url = http_server.url("/redirect-to?to=/headers")
    status, body = await fetch(make_session(), url)
    assert status == 200
    trace_id, span_id = parse_traceparent(echoed_headers(body)["traceparent"])
    final = telemetry.client_spans()[-1]
    assert (trace_id, span_id) == span_ids(final)


async def test_a_redirected_hop_ends_when_its_response_arrived_not_when_the_next_starts(
    http_server: Server, telemetry: Telemetry
) -> None:
    """A second TraceConfig, after ours, takes 50 ms over each redirect."""
    marks: list[int] = []

    async def slow(session: Any, context: Any, params: Any) -> None:
        marks.append(time_ns())
        await asyncio.sleep(0.05)
        marks.append(time_ns())

    slow_config = aiohttp.TraceConfig()
    slow_config.on_request_redirect.append(slow)
    ours = create_trace_config(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    async with aiohttp.ClientSession(trace_configs=[ours, slow_config]) as session:
        assert await fetch(session, http_server.url("/redirect/1")) == (200, "ok")

    first, second = telemetry.client_spans()
    assert attrs(first)["http.response.status_code"] == 302
    slow_began, slow_done = marks
    assert first.end_time is not None
    assert second.start_time is not None
    assert first.end_time <= slow_began
    assert slow_done <= second.start_time


@pytest.mark.parametrize(("code", "method"), [(301, "GET"), (302, "GET"), (307, "POST")])
async def test_a_redirected_post_whose_next_hop_fails_before_sending_has_the_next_method(
    make_session: SessionFactory, telemetry: Telemetry, code: int, method: str
) -> None:
    """aiohttp turns a POST answered by 301 or 302 into a GET (307 keeps it a POST); a next
    hop that never sends its headers is still named and recorded with the method it had."""
    dead = closed_port()

    async def moved(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=code, headers={"Location": f"http://127.0.0.1:{dead}/next"})

    app = web.Application()
    app.router.add_post("/moved", moved)
    async with serve(app) as server:
        session = make_session()
        with pytest.raises(aiohttp.ClientConnectorError):
            await fetch(session, server.url("/moved"), "POST", data=b"form")

    first, second = telemetry.client_spans()
    assert (first.name, attrs(first)["http.request.method"]) == ("POST", "POST")
    assert attrs(first)["http.response.status_code"] == code
    assert (second.name, attrs(second)["http.request.method"]) == (method, method)
    assert attrs(second)["url.full"] == f"http://127.0.0.1:{dead}/next"
    assert attrs(second)["error.type"] == "aiohttp.client_exceptions.ClientConnectorError"
    recorded = {
        (p.attributes["http.request.method"], p.attributes.get("error.type"))
        for p in telemetry.metric_points("http.client.request.duration")
    }
    assert recorded == {
        ("POST", None),
        (method, "aiohttp.client_exceptions.ClientConnectorError"),
    }
