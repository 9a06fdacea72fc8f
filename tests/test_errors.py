"""Status and errors: HTTP errors, transport errors, timeouts, and cancellation (not an error).

Each failure test also makes the same request without instrumentation and checks the user
sees the same outcome.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import aiohttp
import pytest
from opentelemetry.trace import StatusCode

from .conftest import Server, SessionFactory, Telemetry, attrs, fetch


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def outcome(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> Any:
    """What the caller sees: the (status, body) or the exception's type."""
    try:
        return await fetch(session, url, **kwargs)
    except BaseException as exc:
        return type(exc)


@pytest.mark.parametrize("code", [400, 404, 500, 503])
async def test_an_http_error_status_is_an_error_with_the_code_as_type(
    make_session: SessionFactory, server: Server, telemetry: Telemetry, code: int
) -> None:
    assert await fetch(make_session(), server.url(f"/status/{code}")) == (code, f"status {code}")
    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is None
    assert attrs(span)["http.response.status_code"] == code
    assert attrs(span)["error.type"] == str(code)
    # The timeline only: an HTTP error status is not an exception.
    assert [e.name for e in span.events] == [
        "aiohttp.request.headers_sent",
        "aiohttp.response.headers",
    ]


@pytest.mark.parametrize("code", [200, 201, 204, 304])
async def test_success_statuses_leave_the_status_unset(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry, code: int
) -> None:
    await fetch(make_session(), http_server.url(f"/status/{code}"))
    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attrs(span)


async def test_raise_for_status_keeps_the_status_code(
    make_session: SessionFactory,
    bare_session: aiohttp.ClientSession,
    server: Server,
    telemetry: Telemetry,
) -> None:
    url = server.url("/status/404")
    session = make_session(session_kwargs={"raise_for_status": True})
    assert await outcome(session, url) is aiohttp.ClientResponseError
    assert await outcome(bare_session, url, raise_for_status=True) is aiohttp.ClientResponseError

    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["http.response.status_code"] == 404
    assert attrs(span)["error.type"] == "404"
    # An artificial exception for a status code is not recorded as an exception event.
    assert "exception" not in [e.name for e in span.events]
    assert [e.name for e in span.events] == [
        "aiohttp.request.headers_sent",
        "aiohttp.response.headers",
    ]


async def test_refused_connection_is_an_error_with_the_exception_type(
    make_session: SessionFactory, bare_session: aiohttp.ClientSession, telemetry: Telemetry
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    seen = await outcome(make_session(), url)
    assert seen is await outcome(bare_session, url)
    assert issubclass(seen, aiohttp.ClientConnectorError)

    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == f"aiohttp.client_exceptions.{seen.__name__}"
    assert "http.response.status_code" not in attrs(span)
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["exception.type"].endswith(seen.__name__)


async def test_server_port_is_the_default_port_when_the_url_has_none(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    # Port 80 on loopback is closed here: the request fails fast, the span still says 80.
    await outcome(make_session(), "http://127.0.0.1/")
    assert attrs(telemetry.only_span())["server.port"] == 80
    await outcome(make_session(), "https://127.0.0.1/")
    [_, https_span] = telemetry.client_spans()
    assert attrs(https_span)["server.port"] == 443


async def test_an_untrusted_certificate_is_an_error(
    telemetry: Telemetry, https_server: Server
) -> None:
    from aiohttp_otel import create_trace_config

    untrusting = ssl.create_default_context()  # does not know the test CA
    connector = aiohttp.TCPConnector(ssl=untrusting)
    tc = create_trace_config(tracer_provider=telemetry.tracer_provider)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[tc]) as session:
        seen = await outcome(session, https_server.url("/ok"))
    assert seen is aiohttp.ClientConnectorCertificateError
    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == (
        "aiohttp.client_exceptions.ClientConnectorCertificateError"
    )


async def test_total_timeout_is_an_error(
    make_session: SessionFactory,
    bare_session: aiohttp.ClientSession,
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    url = http_server.url("/slow?delay=2")
    timeout = aiohttp.ClientTimeout(total=0.1)
    seen = await outcome(make_session(), url, timeout=timeout)
    assert seen is await outcome(bare_session, url, timeout=timeout)
    assert issubclass(seen, asyncio.TimeoutError)

    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] in (
        seen.__qualname__,
        f"{seen.__module__}.{seen.__qualname__}",
    )
    # The request went out; no answer came before the timeout.
    assert [e.name for e in span.events] == ["aiohttp.request.headers_sent", "exception"]


async def test_socket_read_timeout_is_an_error(
    make_session: SessionFactory,
    bare_session: aiohttp.ClientSession,
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    url = http_server.url("/slow?delay=2")
    timeout = aiohttp.ClientTimeout(sock_read=0.1)
    seen = await outcome(make_session(), url, timeout=timeout)
    assert seen is await outcome(bare_session, url, timeout=timeout)
    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == f"{seen.__module__}.{seen.__qualname__}"


async def test_cancellation_is_not_an_error(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    task = asyncio.create_task(fetch(make_session(), http_server.url("/slow?delay=5")))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attrs(span)
    # Sent, never answered, and no exception event.
    assert [e.name for e in span.events] == ["aiohttp.request.headers_sent"]
    assert span.end_time is not None


async def test_wait_for_expiry_is_seen_as_cancellation(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    # asyncio.wait_for cancels the request: inside the request it is indistinguishable from
    # any other cancellation, so it is recorded as one (documented).
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(fetch(make_session(), http_server.url("/slow?delay=5")), 0.2)
    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attrs(span)


async def test_an_invalid_url_raises_as_without_instrumentation(
    make_session: SessionFactory, bare_session: aiohttp.ClientSession, telemetry: Telemetry
) -> None:
    seen = await outcome(make_session(), "http:///nohost")
    assert seen is await outcome(bare_session, "http:///nohost")
    assert issubclass(seen, Exception)
    # Whether or not aiohttp got far enough to signal a start, nothing is left open
    # (the telemetry fixture checks), and any span there is an error.
    for span in telemetry.spans():
        assert span.status.status_code is StatusCode.ERROR
