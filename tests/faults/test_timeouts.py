"""Stalls past each of aiohttp's timeouts: ``sock_connect``, ``sock_read`` and ``total``.

A timeout is an error (DESIGN §4): on the CLIENT span, and on the phase span it cut short.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan

from ..conftest import Telemetry, attrs, full_accept_queue
from .conftest import (
    Handler,
    Twins,
    assert_clean_connection,
    assert_error,
    assert_transport_error,
    connect_spans,
    raw_server,
    read_request,
    same_outcome,
    silence,
)

TIMEOUT_ERROR = "aiohttp.client_exceptions.ConnectionTimeoutError"


def assert_nested(outer: ReadableSpan, inner: ReadableSpan) -> None:
    assert outer.start_time is not None
    assert inner.start_time is not None
    assert outer.end_time is not None
    assert inner.end_time is not None
    assert outer.start_time <= inner.start_time <= inner.end_time <= outer.end_time


def duration(span: ReadableSpan) -> int:
    assert span.start_time is not None
    assert span.end_time is not None
    return span.end_time - span.start_time


async def test_a_stall_past_sock_connect(twins: Twins, telemetry: Telemetry) -> None:
    """The listener's accept queue is full: the SYN is never answered."""
    timeout = aiohttp.ClientTimeout(sock_connect=0.1)
    traced, bare = twins()
    with full_accept_queue() as port:
        seen = await same_outcome(traced, bare, f"http://127.0.0.1:{port}/", timeout=timeout)
    assert seen == ("raised", aiohttp.ConnectionTimeoutError)

    request, setup, connect = connect_spans(telemetry)
    # No wall-clock floor (a loop may fire a timer early by its clock's rounding): the
    # timeout's status below proves the span was still open when the timeout fired.
    assert_nested(setup, connect)
    assert_nested(request, setup)
    assert duration(connect) > 0
    # The phase that stalled carries the timeout, as its parents do.
    assert_error(connect, TIMEOUT_ERROR)
    assert_error(setup, TIMEOUT_ERROR)
    assert_transport_error(request, aiohttp.ConnectionTimeoutError)


# The server reads the request, then: says nothing at all, or sends the head and a little of a
# promised body and then nothing more.
def stalling(head: bool, quiet_since: list[int]) -> Handler:
    """Appends to ``quiet_since`` the time each connection's server went silent."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
            await writer.drain()
        quiet_since.append(time.time_ns())
        await silence(reader)

    return handle


STALLS = {"before the head": False, "mid-body": True}


@pytest.mark.parametrize("head", list(STALLS.values()), ids=list(STALLS))
@pytest.mark.parametrize("kind", ["sock_read", "total"])
async def test_a_stall_past_a_read_timeout(
    twins: Twins, telemetry: Telemetry, kind: str, head: bool
) -> None:
    timeout = aiohttp.ClientTimeout(**{kind: 0.2})
    traced, bare = twins()
    quiet_since: list[int] = []
    async with raw_server(stalling(head, quiet_since)) as port:
        url = f"http://127.0.0.1:{port}/"
        seen = await same_outcome(traced, bare, url, timeout=timeout)
        caller_saw_it = time.time_ns()
    assert seen[0] == "raised"
    error = seen[1]
    if kind == "sock_read":
        assert error is aiohttp.SocketTimeoutError
    else:
        assert issubclass(error, asyncio.TimeoutError)

    # The connection was fine; the wait for the server was not.
    assert_clean_connection(telemetry)
    request = telemetry.only_span()
    assert_transport_error(request, error)
    # The span lasts through the stall, to the timeout: it ends after the traced connection's
    # server went quiet (the bare twin's came first) and before the caller saw the error. The
    # ordering, not a floor in milliseconds: a loaded machine starts the span late.
    assert len(quiet_since) == 2
    assert request.end_time is not None
    assert quiet_since[1] <= request.end_time <= caller_saw_it
    if head:
        assert attrs(request)["http.response.status_code"] == 200
        assert attrs(request)["http.response.body.size"] == 10
    else:
        assert "http.response.status_code" not in attrs(request)
