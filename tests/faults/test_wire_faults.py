"""Faults on an established connection: the server resets, lies or breaks HTTP/1.1.

Each server here is a raw asyncio TCP server: aiohttp's own server would refuse to send any
of these. The connection itself is fine (its setup spans are clean); the CLIENT span carries
the fault.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from ..conftest import Telemetry, attrs
from .conftest import (
    CONNECT,
    IP_TREE,
    SETUP,
    Twins,
    assert_clean_connection,
    assert_transport_error,
    assert_unset,
    assert_well_formed,
    child,
    raw_server,
    read_request,
    reset,
    same_outcome,
    silence,
)

# -- connection resets -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_reset_mid_headers(twins: Twins, telemetry: Telemetry, method: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl")
        await writer.drain()
        await asyncio.sleep(0.05)  # the partial head reaches the client's parser first
        reset(writer)

    traced, bare = twins()
    async with raw_server(handle) as port:
        seen = await same_outcome(traced, bare, f"http://127.0.0.1:{port}/", method)
    assert seen == ("raised", aiohttp.ClientOSError)

    if method == "POST":
        assert_clean_connection(telemetry, method)
        hops = [telemetry.only_span()]
    else:
        # aiohttp resends an idempotent request once after a connection error: two attempts,
        # each on its own new connection, each its own CLIENT span (DESIGN §3).
        assert telemetry.tree() == IP_TREE + IP_TREE
        assert_well_formed(telemetry)
        hops = telemetry.client_spans()
        first = hops[0]
        assert "http.request.resend_count" not in attrs(first)
        assert attrs(hops[1])["http.request.resend_count"] == 1
        # aiohttp swallowed the first attempt's error and resent. The connection was new, not
        # a stale pooled one: the span carries the real failure.
        assert_transport_error(first, aiohttp.ClientOSError)
        for hop in hops:
            setup = child(telemetry, hop, SETUP)
            assert_unset(setup)
            assert_unset(child(telemetry, setup, CONNECT))
    last = hops[-1]
    assert_transport_error(last, aiohttp.ClientOSError)
    for hop in hops:
        # No head was complete: there is no status to tell, and no time to first byte.
        assert "http.response.status_code" not in attrs(hop)
        assert "aiohttp.response.headers" not in [e.name for e in hop.events]


async def test_a_reset_mid_body(twins: Twins, telemetry: Telemetry) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"z" * 100)
        await writer.drain()
        await asyncio.sleep(0.05)
        reset(writer)

    traced, bare = twins()
    async with raw_server(handle) as port:
        seen = await same_outcome(traced, bare, f"http://127.0.0.1:{port}/")
    assert seen == ("raised", aiohttp.ClientPayloadError)

    assert_clean_connection(telemetry)
    request = telemetry.only_span()
    assert_transport_error(request, aiohttp.ClientPayloadError)
    assert attrs(request)["http.response.status_code"] == 200
    assert attrs(request)["http.response.body.size"] == 100


# -- responses aiohttp cannot parse ----------------------------------------------------------

MALFORMED = {
    "status line": b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
    "header line without a colon": b"HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n",
    "separator in a header name": b"HTTP/1.1 200 OK\r\nX(Bad): v\r\nContent-Length: 0\r\n\r\n",
    "NUL in a header value": b"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 0\r\n\r\n",
    # aiohttp's default max_field_size is 8190.
    "oversized header": b"HTTP/1.1 200 OK\r\nX-Big: "
    + b"a" * 9000
    + b"\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("response", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_malformed_response_head(
    twins: Twins, telemetry: Telemetry, response: bytes
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response)
        await writer.drain()
        await silence(reader)  # until the client gives up on the head and hangs up

    traced, bare = twins()
    async with raw_server(handle) as port:
        seen = await same_outcome(traced, bare, f"http://127.0.0.1:{port}/")
    if seen[0] == "response" and response == MALFORMED["NUL in a header value"]:
        # Older parsers accept a NUL in a value (aiohttp 3.10.0 does): then, with and without
        # tracing alike, it is a response like any other.
        assert attrs(telemetry.only_span())["http.response.status_code"] == 200
        return
    # aiohttp reports a head it cannot parse as a ClientResponseError with status 400, but no
    # server said 400: the span must tell the protocol error, not invent a response.
    assert seen == ("raised", aiohttp.ClientResponseError)

    assert_clean_connection(telemetry)
    request = telemetry.only_span()
    assert_transport_error(request, aiohttp.ClientResponseError)
    assert "http.response.status_code" not in attrs(request), attrs(request)


async def test_a_truncated_chunked_body(twins: Twins, telemetry: Telemetry) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        # One chunk, then a clean close without the terminating zero-size chunk.
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)

    traced, bare = twins()
    async with raw_server(handle) as port:
        seen = await same_outcome(traced, bare, f"http://127.0.0.1:{port}/")
    assert seen == ("raised", aiohttp.ClientPayloadError)

    assert_clean_connection(telemetry)
    request = telemetry.only_span()
    assert_transport_error(request, aiohttp.ClientPayloadError)
    assert attrs(request)["http.response.status_code"] == 200
    chunks: list[Any] = [e for e in request.events if e.name == "aiohttp.response.chunk_received"]
    assert chunks, "the chunk that did arrive is recorded"
