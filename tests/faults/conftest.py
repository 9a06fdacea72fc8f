"""What every fault test needs: twin sessions, raw loopback servers, a loopback-only resolver,
and the span-tree assertions.

A fault test makes one request through a traced session and the same request through an
uninstrumented twin built with the same connector settings, then checks that the caller saw
the same thing both times. The ledger of the shared ``telemetry`` fixture fails the test if a
span was left open or ended twice; the autouse context fixture fails it if the ambient context
changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from aiohttp_otel import create_trace_config

from ..conftest import Telemetry, Tls, attrs

GET = "GET"
SETUP = "HTTP connection_setup"
WAIT = "HTTP wait_for_connection"
DNS = "DNS lookup"
CONNECT = "socket connect"
TLS = "TLS client handshake"
PHASE_NAMES = (WAIT, SETUP, DNS, CONNECT, TLS)

#: The tree of a request on a new connection to an IP literal (no lookup), and to a name.
IP_TREE = [(0, GET), (1, SETUP), (2, CONNECT)]
NAME_TREE = [(0, GET), (1, SETUP), (2, DNS), (2, CONNECT)]

#: Every request of the suite gives up after this long, whatever the fault.
REQUEST_BOUND_S = 5.0

MS = 1_000_000  # nanoseconds


def fqn(cls: type[BaseException]) -> str:
    """``error.type`` of an exception class: its fully qualified name (builtins unqualified)."""
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# -- what the caller sees --------------------------------------------------------------------


async def outcome(
    session: aiohttp.ClientSession, url: str, method: str = "GET", **kwargs: Any
) -> Any:
    """``("response", status, body)`` or ``("raised", exception class)``: all a caller sees.

    The body is read in full inside ``async with``, the way most callers read one.
    """

    async def request() -> tuple[str, int, bytes]:
        async with session.request(method, url, **kwargs) as response:
            return "response", response.status, await response.read()

    try:
        return await asyncio.wait_for(request(), REQUEST_BOUND_S)
    except Exception as exc:
        return "raised", type(exc)


@pytest.fixture
async def twins(telemetry: Telemetry, tls: Tls) -> AsyncIterator[Twins]:
    maker = Twins(telemetry, tls)
    yield maker
    await maker.close()


class Twins:
    """Builds a traced session and an uninstrumented one with the same connector settings."""

    def __init__(self, telemetry: Telemetry, tls: Tls) -> None:
        self._telemetry = telemetry
        self._tls = tls
        self._sessions: list[aiohttp.ClientSession] = []

    def __call__(
        self,
        connector_kwargs: dict[str, Any] | None = None,
        session_kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
        """``(traced, bare)``; options go to ``create_trace_config``."""
        options.setdefault("tracer_provider", self._telemetry.tracer_provider)
        options.setdefault("meter_provider", self._telemetry.meter_provider)
        traced = self._session(connector_kwargs, session_kwargs, [create_trace_config(**options)])
        bare = self._session(connector_kwargs, session_kwargs, [])
        return traced, bare

    def _session(
        self,
        connector_kwargs: dict[str, Any] | None,
        session_kwargs: dict[str, Any] | None,
        trace_configs: list[aiohttp.TraceConfig],
    ) -> aiohttp.ClientSession:
        kwargs = {"ssl": self._tls.client, **(connector_kwargs or {})}
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(**kwargs),
            trace_configs=trace_configs,
            **(session_kwargs or {}),
        )
        self._sessions.append(session)
        return session

    async def close(self) -> None:
        for session in self._sessions:
            await session.close()


async def same_outcome(
    traced: aiohttp.ClientSession,
    bare: aiohttp.ClientSession,
    url: str,
    method: str = "GET",
    **kwargs: Any,
) -> Any:
    """Make the request both ways; assert the caller saw the same; return what it saw."""
    expected = await outcome(bare, url, method, **kwargs)
    seen = await outcome(traced, url, method, **kwargs)
    assert seen == expected, "the instrumentation changed what the caller sees"
    return seen


# -- loopback-only name resolution -------------------------------------------------------------


class LoopbackResolver(AbstractResolver):
    """Resolves only the names of a fixed loopback map; any other name fails as a resolver
    does for a name that does not exist, without a single packet leaving the host."""

    NAMES = {"localhost": "127.0.0.1", "fault.test": "127.0.0.1"}

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        await asyncio.sleep(0)
        address = self.NAMES.get(host)
        if address is None:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


# -- raw servers -----------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that runs ``handle`` per connection; yields its port.

    Handlers are bounded and cancelled at exit, so a stalling one cannot outlive the test.
    """
    tasks: set[asyncio.Task[Any]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def bounded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.append(writer)
        try:
            await asyncio.wait_for(handle(reader, writer), REQUEST_BOUND_S)
        except (asyncio.TimeoutError, asyncio.CancelledError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(bounded, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        yield port
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        for writer in writers:
            writer.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1)
        # Let the cancelled handlers finish their cleanup inside the test's loop.
        await asyncio.sleep(0)


async def read_request(reader: asyncio.StreamReader) -> None:
    """Read a request head (the suite only sends GETs, without a body)."""
    await reader.readuntil(b"\r\n\r\n")


async def silence(reader: asyncio.StreamReader) -> None:
    """Say nothing until the client goes away (bounded by the server's handler bound)."""
    await reader.read()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN: the peer sees ECONNRESET."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def server_context(tls: Tls, *names: str) -> ssl.SSLContext:
    """A server context with a certificate from the suite's CA for ``names`` only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.ca.issue_cert(*names).configure_cert(context)
    return context


# -- span-tree assertions --------------------------------------------------------------------


def child(telemetry: Telemetry, parent: ReadableSpan, name: str) -> ReadableSpan:
    """The one child of ``parent`` called ``name``."""
    found = [s for s in telemetry.children(parent) if s.name == name]
    assert len(found) == 1, [s.name for s in telemetry.children(parent)]
    return found[0]


def assert_well_formed(telemetry: Telemetry) -> None:
    """Phases are INTERNAL children within their parent's time; requests are CLIENT spans."""
    spans = telemetry.spans()
    by_id = {s.context.span_id: s for s in spans}
    for span in spans:
        assert span.start_time is not None
        assert span.end_time is not None
        assert span.start_time <= span.end_time, span.name
        if span.name in PHASE_NAMES:
            assert span.kind is SpanKind.INTERNAL, span.name
            assert span.parent is not None
            assert span.parent.span_id in by_id, span.name
        else:
            assert span.kind is SpanKind.CLIENT, span.name
        if span.parent is not None and span.parent.span_id in by_id:
            parent = by_id[span.parent.span_id]
            assert span.context.trace_id == parent.context.trace_id
            assert parent.start_time is not None
            assert parent.end_time is not None
            assert parent.start_time <= span.start_time, (span.name, parent.name)
            assert span.end_time <= parent.end_time, (span.name, parent.name)


def connect_spans(telemetry: Telemetry) -> tuple[ReadableSpan, ReadableSpan, ReadableSpan]:
    """``(request, setup, connect)`` of a test's one request to an IP literal on a new
    connection, once its tree is checked to be ``IP_TREE`` and well formed."""
    assert telemetry.tree() == IP_TREE
    assert_well_formed(telemetry)
    request = telemetry.only_span()
    setup = child(telemetry, request, SETUP)
    connect = child(telemetry, setup, CONNECT)
    return request, setup, connect


def assert_clean_connection(telemetry: Telemetry, method: str = "GET") -> None:
    """The connection was set up without fault: the fault is the exchange's, not a phase's."""
    assert telemetry.tree() == [(0, method), *IP_TREE[1:]]
    assert_well_formed(telemetry)
    request = telemetry.only_span()
    setup = child(telemetry, request, SETUP)
    assert_unset(setup)
    assert_unset(child(telemetry, setup, CONNECT))


def assert_unset(span: ReadableSpan) -> None:
    assert span.status.status_code is StatusCode.UNSET, (span.name, span.status)
    assert "error.type" not in attrs(span), span.name


def assert_error(span: ReadableSpan, error_type: str) -> None:
    assert span.status.status_code is StatusCode.ERROR, (span.name, span.status)
    assert attrs(span).get("error.type") == error_type, (span.name, attrs(span))


def assert_transport_error(span: ReadableSpan, error: type[BaseException]) -> None:
    """A CLIENT span ended by an exception: ERROR, its type, and one exception event."""
    assert_error(span, fqn(error))
    events = [e for e in span.events if e.name == "exception"]
    assert len(events) == 1, [e.name for e in span.events]
    assert events[0].attributes is not None
    assert events[0].attributes["exception.type"] == fqn(error)


def our_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aiohttp_otel" and r.levelno >= logging.WARNING]
