"""Connection phases: where the time of a request went before its headers were sent.

With the default ``phases=spans`` a request on a new connection shows, under its CLIENT span,
``HTTP connection_setup`` with ``DNS lookup``, ``socket connect`` and ``TLS client handshake``
as its children; a request that waited for a pooled connection shows ``HTTP
wait_for_connection``; a request that reused a connection shows a link to the setup that
opened it. ``phases=events`` puts the same facts on the CLIENT span as events, ``phases=off``
records nothing of them.

Everything runs against real loopback servers. Slow DNS comes from a custom resolver (aiohttp's
public ``AbstractResolver`` extension point); a slow socket connect from a listener whose
accept queue is full; a stalled TLS handshake from a raw TCP server that never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from time import time_ns
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from aiohttp_otel import create_trace_config
from aiohttp_otel._trace_config import PHASES_ONLY

from .conftest import (
    Server,
    SessionFactory,
    Telemetry,
    Tls,
    attrs,
    closed_port,
    fetch,
    full_accept_queue,
    make_app,
    serve,
)

GET = "GET"
SETUP = "HTTP connection_setup"
WAIT = "HTTP wait_for_connection"
DNS = "DNS lookup"
CONNECT = "socket connect"
TLS = "TLS client handshake"
PHASE_NAMES = (WAIT, SETUP, DNS, CONNECT, TLS)
PHASE_KEYS = ("wait_for_connection", "connection_setup", "dns_lookup", "socket_connect")
PHASE_KEYS += ("tls_handshake",)

MS = 1_000_000  # nanoseconds

CONNECTOR_ERROR = "aiohttp.client_exceptions.ClientConnectorError"
# aiohttp 3.10.10 split DNS failures out of ClientConnectorError.
DNS_ERROR_CLASS = getattr(aiohttp, "ClientConnectorDNSError", aiohttp.ClientConnectorError)
DNS_ERROR = f"aiohttp.client_exceptions.{DNS_ERROR_CLASS.__name__}"
CERT_ERROR = "aiohttp.client_exceptions.ClientConnectorCertificateError"
TIMEOUT_ERROR = "aiohttp.client_exceptions.ConnectionTimeoutError"


# -- helpers ---------------------------------------------------------------------------------


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def child(telemetry: Telemetry, parent: ReadableSpan, name: str) -> ReadableSpan:
    """The one child of ``parent`` called ``name``."""
    found = named(telemetry.children(parent), name)
    assert len(found) == 1, [s.name for s in telemetry.children(parent)]
    return found[0]


def duration(span: ReadableSpan) -> int:
    assert span.start_time is not None
    assert span.end_time is not None
    return span.end_time - span.start_time


def assert_well_formed(telemetry: Telemetry) -> None:
    """Every phase span is INTERNAL, in its parent's trace, and within its parent's time."""
    spans = telemetry.spans()
    by_id = {s.context.span_id: s for s in spans}
    for span in spans:
        assert span.start_time is not None
        assert span.end_time is not None
        assert span.start_time <= span.end_time, span.name
        if span.name in PHASE_NAMES:
            assert span.kind is SpanKind.INTERNAL, span.name
            assert span.parent is not None, span.name
            assert span.parent.span_id in by_id, span.name
        elif span.name != "caller":
            assert span.kind is SpanKind.CLIENT, span.name
        if span.parent is not None and span.parent.span_id in by_id:
            parent = by_id[span.parent.span_id]
            assert span.context.trace_id == parent.context.trace_id
            assert parent.start_time is not None
            assert parent.end_time is not None
            assert parent.start_time <= span.start_time, (span.name, parent.name)
            assert span.end_time <= parent.end_time, (span.name, parent.name)


def assert_unset(span: ReadableSpan) -> None:
    assert span.status.status_code is StatusCode.UNSET, (span.name, span.status)
    assert "error.type" not in attrs(span), span.name


def assert_error(span: ReadableSpan, error_type: str) -> None:
    assert span.status.status_code is StatusCode.ERROR, (span.name, span.status)
    assert attrs(span)["error.type"] == error_type, span.name


def phases_session(
    make_session: SessionFactory, monkeypatch: pytest.MonkeyPatch, how: str, phases: str
) -> aiohttp.ClientSession:
    """A session with ``phases`` set by the ``phases=`` keyword (``how="keyword"``) or by the
    environment variable (``how="env"``)."""
    if how == "env":
        monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_CLIENT_PHASES", phases)
        return make_session()
    return make_session(phases=phases)


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll (bounded) until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


def started(telemetry: Telemetry, name: str) -> Callable[[], bool]:
    return lambda: name in telemetry.ledger.started.values()


async def cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)


class SlowResolver(AbstractResolver):
    """Resolves every name to 127.0.0.1 after ``delay``, or fails with ``error``."""

    def __init__(self, delay: float = 0.1, error: BaseException | None = None) -> None:
        self.delay = delay
        self.error = error
        self.calls = 0
        self.finished = 0
        self.entered = asyncio.Event()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls += 1
        self.began_ns = time_ns()
        self.entered.set()
        await asyncio.sleep(self.delay)
        self.ended_ns = time_ns()
        self.finished += 1
        if self.error is not None:
            raise self.error
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def silent_tcp_server() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """Accepts TCP connections and never says a word: a TLS handshake to it stalls."""
    accepted = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set()
        with contextlib.suppress(Exception):
            await reader.read()  # until the client goes away

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, accepted
    finally:
        for writer in writers:
            writer.close()
        server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1)


def timed_app(delay: float) -> tuple[web.Application, dict[str, tuple[int, int]]]:
    """An app whose ``/work?id=..`` takes ``delay``; it logs when each request ran."""
    ran: dict[str, tuple[int, int]] = {}

    async def work(request: web.Request) -> web.Response:
        begin = time_ns()
        await asyncio.sleep(delay)
        ran[request.query["id"]] = (begin, time_ns())
        return web.Response(text="ok")

    app = make_app()
    app.router.add_get("/work", work)
    return app, ran


def span_for(spans: list[ReadableSpan], query_id: str) -> ReadableSpan:
    found = [s for s in spans if str(attrs(s)["url.full"]).endswith(f"id={query_id}")]
    assert len(found) == 1
    return found[0]


# -- 1. a new HTTPS connection ----------------------------------------------------------------


async def test_new_https_connection_shows_setup_dns_connect_and_tls(
    make_session: SessionFactory, https_server: Server, telemetry: Telemetry
) -> None:
    assert await fetch(make_session(), https_server.url()) == (200, "ok")

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, DNS), (2, CONNECT), (2, TLS)]
    assert_well_formed(telemetry)
    request = telemetry.only_span()
    setup = child(telemetry, request, SETUP)
    dns = child(telemetry, setup, DNS)
    connect = child(telemetry, setup, CONNECT)
    handshake = child(telemetry, setup, TLS)
    for span in (request, setup, dns, connect, handshake):
        assert_unset(span)

    # The phases follow each other, inside the setup (no ceiling on the gaps between them: a
    # loaded machine makes them as long as it likes).
    assert setup.start_time <= dns.start_time  # type: ignore[operator]
    assert dns.end_time <= connect.start_time  # type: ignore[operator]
    assert connect.end_time <= handshake.start_time  # type: ignore[operator]
    assert handshake.end_time <= setup.end_time  # type: ignore[operator]
    assert duration(dns) + duration(connect) + duration(handshake) <= duration(setup)
    assert setup.end_time < request.end_time  # type: ignore[operator]

    port = https_server.port
    assert attrs(setup) == {
        "server.address": "localhost",
        "server.port": port,
        "url.scheme": "https",
        "network.peer.address": "127.0.0.1",
        "network.peer.port": port,
    }
    assert attrs(dns)["dns.question.name"] == "localhost"
    assert "127.0.0.1" in attrs(dns)["dns.answers"]
    assert set(attrs(dns)["dns.answers"]) <= {"127.0.0.1", "::1"}
    assert attrs(connect) == {
        "network.peer.address": "127.0.0.1",
        "network.peer.port": port,
        "network.type": "ipv4",
        "network.transport": "tcp",
    }
    tls_attrs = attrs(handshake)
    assert tls_attrs["server.address"] == "localhost"
    assert tls_attrs["tls.protocol.name"] == "tls"
    assert tls_attrs["tls.protocol.version"] == "1.3"
    assert str(tls_attrs["tls.cipher"]).startswith("TLS_")
    assert tls_attrs["tls.resumed"] is False
    # The CLIENT span knows who answered too.
    assert attrs(request)["network.peer.address"] == "127.0.0.1"
    assert attrs(request)["network.peer.port"] == port


# The IANA names from the TLS Cipher Suites registry, written out here on purpose: the test
# must not share the package's own mapping.
TLS12_SUITES = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES256-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
}


@pytest.mark.parametrize(
    ("openssl_name", "key_type"),
    [
        (None, trustme.KeyType.ECDSA),  # whatever the two sides agree on
        ("ECDHE-ECDSA-AES128-GCM-SHA256", trustme.KeyType.ECDSA),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", trustme.KeyType.ECDSA),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", trustme.KeyType.ECDSA),
        ("ECDHE-ECDSA-AES256-SHA384", trustme.KeyType.ECDSA),
        ("ECDHE-RSA-AES128-GCM-SHA256", trustme.KeyType.RSA),
    ],
)
async def test_tls12_handshake_names_the_cipher_by_its_iana_name(
    make_session: SessionFactory,
    telemetry: Telemetry,
    tls: Tls,
    openssl_name: str | None,
    key_type: trustme.KeyType,
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    if openssl_name is not None:
        context.set_ciphers(openssl_name)
    tls.ca.issue_cert("localhost", "127.0.0.1", key_type=key_type).configure_cert(context)
    negotiated: list[str] = []

    async def cipher(request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object")  # type: ignore[union-attr]
        negotiated.append(ssl_object.cipher()[0])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/cipher", cipher)
    async with serve(app, context) as server:
        assert await fetch(make_session(), server.url("/cipher")) == (200, "ok")

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, DNS), (2, CONNECT), (2, TLS)]
    handshake = named(telemetry.spans(), TLS)[0]
    assert_unset(handshake)
    tls_attrs = attrs(handshake)
    assert tls_attrs["tls.protocol.name"] == "tls"
    assert tls_attrs["tls.protocol.version"] == "1.2"
    assert tls_attrs["tls.resumed"] is False
    assert negotiated[0] in TLS12_SUITES, negotiated  # the server agrees on a known suite
    if openssl_name is not None:
        assert negotiated == [openssl_name]
    assert tls_attrs["tls.cipher"] == TLS12_SUITES[negotiated[0]]
    assert str(tls_attrs["tls.cipher"]).startswith("TLS_ECDHE_")
    assert "_WITH_" in str(tls_attrs["tls.cipher"])


# -- 2. plain HTTP, IP literals ---------------------------------------------------------------


@pytest.mark.parametrize("use_dns_cache", [True, False])
async def test_plain_http_has_no_tls_span(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry, use_dns_cache: bool
) -> None:
    session = make_session(connector_kwargs={"use_dns_cache": use_dns_cache})
    assert await fetch(session, http_server.url()) == (200, "ok")

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, DNS), (2, CONNECT)]
    assert_well_formed(telemetry)
    setup = child(telemetry, telemetry.only_span(), SETUP)
    assert attrs(setup)["url.scheme"] == "http"
    assert "aiohttp.dns.cache_hit" not in attrs(setup)
    dns = child(telemetry, setup, DNS)
    assert attrs(dns)["dns.question.name"] == "localhost"
    assert "127.0.0.1" in attrs(dns)["dns.answers"]
    connect = child(telemetry, setup, CONNECT)
    assert dns.end_time <= connect.start_time  # type: ignore[operator]
    assert attrs(connect)["network.peer.port"] == http_server.port


async def test_an_ip_literal_needs_no_dns_lookup(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    url = server.url(host="127.0.0.1")
    assert await fetch(make_session(), url) == (200, "ok")

    expected = [(0, GET), (1, SETUP), (2, CONNECT)]
    if server.scheme == "https":
        expected.append((2, TLS))
    assert telemetry.tree() == expected
    assert_well_formed(telemetry)
    setup = child(telemetry, telemetry.only_span(), SETUP)
    assert attrs(setup)["server.address"] == "127.0.0.1"
    assert attrs(setup)["network.peer.address"] == "127.0.0.1"
    if server.scheme == "https":
        assert attrs(child(telemetry, setup, TLS))["server.address"] == "127.0.0.1"


# -- 3. keep-alive reuse ----------------------------------------------------------------------


async def test_a_reused_connection_links_to_the_setup_that_opened_it(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    assert await fetch(session, server.url()) == (200, "ok")
    assert await fetch(session, server.url()) == (200, "ok")

    first, second = telemetry.client_spans()
    assert_well_formed(telemetry)
    setup = child(telemetry, first, SETUP)
    assert telemetry.children(second) == []
    assert len(telemetry.spans()) == len(telemetry.tree())
    assert [name for _, name in telemetry.tree()].count(SETUP) == 1

    assert first.links == ()
    assert len(second.links) == 1
    link = second.links[0]
    assert link.context.trace_id == setup.context.trace_id
    assert link.context.span_id == setup.context.span_id
    assert dict(link.attributes or {}) == {"aiohttp.connection.reused": True}
    assert attrs(second)["network.peer.address"] == "127.0.0.1"
    assert attrs(second)["network.peer.port"] == server.port
    assert_unset(second)


# -- 4. DNS cache hits and joined lookups -----------------------------------------------------


async def test_a_dns_cache_hit_has_no_dns_span(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    session = make_session(connector_kwargs={"force_close": True})
    assert await fetch(session, server.url()) == (200, "ok")
    assert await fetch(session, server.url()) == (200, "ok")

    first, second = telemetry.client_spans()
    assert_well_formed(telemetry)
    first_setup = child(telemetry, first, SETUP)
    second_setup = child(telemetry, second, SETUP)
    child(telemetry, first_setup, DNS)
    assert "aiohttp.dns.cache_hit" not in attrs(first_setup)
    assert named(telemetry.children(second_setup), DNS) == []
    assert attrs(second_setup)["aiohttp.dns.cache_hit"] is True
    child(telemetry, second_setup, CONNECT)
    assert second.links == ()  # a new connection, not a reused one


async def test_requests_that_join_an_inflight_lookup_show_their_wait(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    resolver = SlowResolver(delay=0.1)
    session = make_session(connector_kwargs={"resolver": resolver, "limit": 100})
    results = await asyncio.gather(*(fetch(session, http_server.url()) for _ in range(3)))
    assert results == [(200, "ok")] * 3
    assert resolver.calls == 1

    assert_well_formed(telemetry)
    requests = telemetry.client_spans()
    assert len(requests) == 3
    lookups = []
    for request in requests:
        setup = child(telemetry, request, SETUP)
        assert "aiohttp.dns.cache_hit" not in attrs(setup)
        lookups.append(child(telemetry, setup, DNS))
        child(telemetry, setup, CONNECT)
    own = [s for s in lookups if "aiohttp.dns.joined" not in attrs(s)]
    joined = [s for s in lookups if attrs(s).get("aiohttp.dns.joined") is True]
    assert len(own) == 1
    assert len(joined) == 2
    for lookup in lookups:
        assert attrs(lookup)["dns.question.name"] == "localhost"
        assert "aiohttp.dns.cache_hit" not in attrs(lookup)
        assert duration(lookup) > 50 * MS, lookup.attributes
        assert_unset(lookup)
    assert attrs(own[0])["dns.answers"] == ("127.0.0.1",)


# -- 5. queueing ------------------------------------------------------------------------------


@pytest.mark.parametrize("force_close", [False, True])
async def test_a_request_queued_behind_the_limit_shows_its_wait(
    make_session: SessionFactory, telemetry: Telemetry, force_close: bool
) -> None:
    app, ran = timed_app(0.1)
    async with serve(app) as server:
        session = make_session(connector_kwargs={"limit": 1, "force_close": force_close})
        results = await asyncio.gather(
            fetch(session, server.url("/work?id=a")), fetch(session, server.url("/work?id=b"))
        )
    assert results == [(200, "ok"), (200, "ok")]

    assert_well_formed(telemetry)
    requests = telemetry.client_spans()
    waiting = [r for r in requests if named(telemetry.children(r), WAIT)]
    assert len(waiting) == 1
    second = waiting[0]
    first = next(r for r in requests if r is not second)
    first_id = "a" if str(attrs(first)["url.full"]).endswith("a") else "b"
    second_id = "b" if first_id == "a" else "a"
    assert named(telemetry.children(first), WAIT) == []

    wait = child(telemetry, second, WAIT)
    assert_unset(wait)
    assert attrs(wait) == {"server.address": "localhost", "server.port": server.port}
    assert duration(wait) >= 80 * MS
    # The wait covers the first request's work, and is over before this one reached the server.
    assert wait.end_time >= ran[first_id][1]  # type: ignore[operator]
    assert wait.end_time <= ran[second_id][0]  # type: ignore[operator]
    if force_close:
        setup = child(telemetry, second, SETUP)
        assert wait.end_time <= setup.start_time  # type: ignore[operator]
    else:
        # It got the first request's connection.
        assert named(telemetry.children(second), SETUP) == []
        assert len(second.links) == 1
        first_setup = child(telemetry, first, SETUP)
        assert second.links[0].context.span_id == first_setup.context.span_id


# -- 6. phases=events and phases=off ----------------------------------------------------------


def phase_events(span: ReadableSpan) -> dict[str, tuple[int, dict[str, Any]]]:
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    for event in span.events:
        if event.name.split(".")[0] in PHASE_KEYS:
            assert event.name not in out, f"{event.name} twice"
            out[event.name] = (event.timestamp, dict(event.attributes or {}))
    return out


def assert_new_connection_events(span: ReadableSpan, port: int) -> None:
    events = phase_events(span)
    order = [
        "connection_setup.start",
        "dns_lookup.start",
        "dns_lookup.end",
        "socket_connect.start",
        "socket_connect.end",
        "tls_handshake.start",
        "tls_handshake.end",
        "connection_setup.end",
    ]
    assert sorted(events) == sorted(order)
    times = [events[name][0] for name in order]
    assert times == sorted(times), list(zip(order, times, strict=True))
    # Stored in time order too (a parent's .start before its children's events): a backend
    # that lists events as stored shows the same order.
    assert [e.name for e in span.events if e.name.split(".")[0] in PHASE_KEYS] == order
    every = [e.timestamp for e in span.events]
    assert every == sorted(every)
    assert span.start_time <= times[0]  # type: ignore[operator]
    assert times[-1] <= span.end_time  # type: ignore[operator]
    for name in order:
        if name.endswith(".start"):
            assert events[name][1] == {}, name  # the attributes go on the .end event

    setup = events["connection_setup.end"][1]
    assert setup["server.address"] == "localhost"
    assert setup["server.port"] == port
    assert setup["url.scheme"] == "https"
    assert setup["network.peer.address"] == "127.0.0.1"
    dns = events["dns_lookup.end"][1]
    assert dns["dns.question.name"] == "localhost"
    assert "127.0.0.1" in dns["dns.answers"]
    connect = events["socket_connect.end"][1]
    assert connect["network.peer.address"] == "127.0.0.1"
    assert connect["network.peer.port"] == port
    assert connect["network.transport"] == "tcp"
    assert connect["network.type"] == "ipv4"
    handshake = events["tls_handshake.end"][1]
    assert handshake["tls.protocol.name"] == "tls"
    assert handshake["tls.protocol.version"] == "1.3"
    assert str(handshake["tls.cipher"]).startswith("TLS_")
    for attributes in (setup, dns, connect, handshake):
        assert "error.type" not in attributes


@pytest.mark.parametrize("how", ["keyword", "env"])
async def test_phase_events_put_the_phases_on_the_client_span(
    make_session: SessionFactory,
    https_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    session = phases_session(make_session, monkeypatch, how, "events")
    assert await fetch(session, https_server.url()) == (200, "ok")
    assert await fetch(session, https_server.url()) == (200, "ok")

    assert telemetry.tree() == [(0, GET), (0, GET)]
    first, second = telemetry.client_spans()
    assert_new_connection_events(first, https_server.port)
    # The reused connection: no phases, but still the link to the connection's origin.
    assert phase_events(second) == {}
    assert len(second.links) == 1
    assert second.links[0].context.span_id == first.context.span_id
    assert second.links[0].attributes == {"aiohttp.connection.reused": True}


async def test_phase_events_show_the_wait_for_a_connection(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    app, _ = timed_app(0.1)
    async with serve(app) as server:
        session = make_session(phases="events", connector_kwargs={"limit": 1})
        await asyncio.gather(
            fetch(session, server.url("/work?id=a")), fetch(session, server.url("/work?id=b"))
        )
    assert telemetry.tree() == [(0, GET), (0, GET)]
    waits = [phase_events(s) for s in telemetry.client_spans()]
    waited = [w for w in waits if "wait_for_connection.start" in w]
    assert len(waited) == 1
    start, start_attrs = waited[0]["wait_for_connection.start"]
    end, end_attrs = waited[0]["wait_for_connection.end"]
    assert start_attrs == {}
    assert end_attrs == {"server.address": "localhost", "server.port": server.port}
    assert end - start >= 80 * MS


@pytest.mark.parametrize("how", ["keyword", "env"])
async def test_phases_off_records_no_phases(
    make_session: SessionFactory,
    https_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    session = phases_session(make_session, monkeypatch, how, "off")
    assert await fetch(session, https_server.url()) == (200, "ok")
    assert await fetch(session, https_server.url()) == (200, "ok")

    assert telemetry.tree() == [(0, GET), (0, GET)]
    for span in telemetry.client_spans():
        assert phase_events(span) == {}
        assert "aiohttp.dns.cache_hit" not in attrs(span)
        assert_unset(span)


@pytest.mark.parametrize("phases", ["spans", "events", "off"])
def test_the_handlers_only_phases_need_are_registered_only_with_phases(phases: str) -> None:
    """aiohttp calls every handler registered for a signal that fires; with the phases off,
    the end of a connection's setup and a DNS cache hit have nothing to tell."""
    config = create_trace_config(phases=phases)
    listened = {name for name in PHASES_ONLY if len(getattr(config, name))}
    assert listened == (set() if phases == "off" else set(PHASES_ONLY))
    # Everything else is listened to whatever the option.
    assert len(config.on_connection_create_start) == 1
    assert len(config.on_dns_resolvehost_end) == 1
    assert len(config.on_connection_queued_end) == 1


# -- 7. failures ------------------------------------------------------------------------------


async def test_a_refused_connect_fails_the_connect_and_the_setup(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    with pytest.raises(aiohttp.ClientConnectorError):
        await fetch(make_session(), url)

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, CONNECT)]
    assert_well_formed(telemetry)
    request = telemetry.only_span()
    setup = child(telemetry, request, SETUP)
    connect = child(telemetry, setup, CONNECT)
    assert_error(request, CONNECTOR_ERROR)
    assert_error(setup, CONNECTOR_ERROR)
    # The socket connect records the OS error that ended it; the request and the setup
    # record aiohttp's wrapper of it, which is what the caller sees.
    assert connect.status.status_code is StatusCode.ERROR
    assert attrs(connect)["error.type"] == "ConnectionRefusedError"
    # The one address it tried is on the failed connect, so the refusal says where it went.
    assert attrs(connect)["network.peer.address"] == "127.0.0.1"
    assert isinstance(attrs(connect)["network.peer.port"], int)
    assert "network.peer.address" not in attrs(setup)


async def test_a_failed_dns_lookup_fails_the_lookup_and_the_setup(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    resolver = SlowResolver(
        delay=0.01, error=OSError(socket.EAI_NONAME, "Name or service not known")
    )
    session = make_session(connector_kwargs={"resolver": resolver})
    with pytest.raises(DNS_ERROR_CLASS):
        await fetch(session, http_server.url())

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, DNS)]
    assert_well_formed(telemetry)
    request = telemetry.only_span()
    setup = child(telemetry, request, SETUP)
    dns = child(telemetry, setup, DNS)
    assert_error(dns, DNS_ERROR)
    assert_error(setup, DNS_ERROR)
    assert_error(request, DNS_ERROR)
    assert attrs(dns)["dns.question.name"] == "localhost"
    assert "dns.answers" not in attrs(dns)
    assert duration(dns) >= 5 * MS


async def test_an_untrusted_certificate_fails_the_tls_handshake(
    make_session: SessionFactory, https_server: Server, telemetry: Telemetry
) -> None:
    untrusting = ssl.create_default_context()  # does not know the test CA
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await fetch(make_session(), https_server.url(), ssl=untrusting)

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, DNS), (2, CONNECT), (2, TLS)]
    assert_well_formed(telemetry)
    request = telemetry.only_span()
    setup = child(telemetry, request, SETUP)
    assert_error(child(telemetry, setup, TLS), CERT_ERROR)
    assert_unset(child(telemetry, setup, CONNECT))
    assert_unset(child(telemetry, setup, DNS))
    assert_error(setup, CERT_ERROR)
    assert_error(request, CERT_ERROR)


async def test_a_connect_timeout_while_queued_fails_the_wait(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(connector_kwargs={"limit": 1})
    holder = asyncio.create_task(fetch(session, http_server.url("/slow?delay=0.2")))
    await until(started(telemetry, SETUP))
    with pytest.raises(aiohttp.ConnectionTimeoutError):
        await fetch(session, http_server.url(), timeout=aiohttp.ClientTimeout(connect=0.05))
    assert await asyncio.wait_for(holder, 2) == (200, "slow")

    assert_well_formed(telemetry)
    first, second = telemetry.client_spans()
    assert_unset(first)
    assert telemetry.children(first)[0].name == SETUP
    assert [s.name for s in telemetry.children(second)] == [WAIT]
    wait = child(telemetry, second, WAIT)
    assert_error(wait, TIMEOUT_ERROR)
    assert_error(second, TIMEOUT_ERROR)
    assert 40 * MS <= duration(wait) < 1000 * MS


async def test_a_socket_connect_timeout_fails_the_socket_connect(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    with full_accept_queue() as port:
        timeout = aiohttp.ClientTimeout(sock_connect=0.05)
        with pytest.raises(aiohttp.ConnectionTimeoutError):
            await fetch(make_session(), f"http://127.0.0.1:{port}/", timeout=timeout)

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, CONNECT)]
    assert_well_formed(telemetry)
    request = telemetry.only_span()
    setup = child(telemetry, request, SETUP)
    connect = child(telemetry, setup, CONNECT)
    assert duration(connect) >= 40 * MS
    # A timeout is an error (DESIGN §4), on the phase that timed out as on the request.
    assert_error(connect, TIMEOUT_ERROR)
    assert_error(setup, TIMEOUT_ERROR)
    assert_error(request, TIMEOUT_ERROR)


async def test_cancellation_during_dns_is_not_an_error_and_the_late_answer_is_ignored(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp_otel")
    resolver = SlowResolver(delay=0.1)
    session = make_session(connector_kwargs={"resolver": resolver})
    task = asyncio.create_task(fetch(session, http_server.url()))
    await asyncio.wait_for(resolver.entered.wait(), 2)
    await cancelled(task)

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, DNS)]
    assert_well_formed(telemetry)
    request = telemetry.only_span()
    setup = child(telemetry, request, SETUP)
    dns = child(telemetry, setup, DNS)
    for span in (request, setup, dns):
        assert_unset(span)
    assert request.events == ()  # no exception event for a cancellation
    assert "dns.answers" not in attrs(dns)
    assert resolver.finished == 0

    # aiohttp shields the lookup: it goes on and signals its end after the request is over.
    before = (len(telemetry.spans()), dict(telemetry.ledger.started))
    await until(lambda: resolver.finished == 1)
    await asyncio.sleep(0.05)
    assert (len(telemetry.spans()), dict(telemetry.ledger.started)) == before
    assert telemetry.ledger.open_spans() == []
    assert telemetry.ledger.ended_twice() == []
    assert [r for r in caplog.records if r.name.startswith("aiohttp_otel")] == []

    # The session still works, and the late answer is now a cache hit.
    assert await fetch(session, http_server.url()) == (200, "ok")
    setup = child(telemetry, telemetry.client_spans()[1], SETUP)
    assert attrs(setup)["aiohttp.dns.cache_hit"] is True


async def test_cancellation_of_a_request_that_joined_a_lookup(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    resolver = SlowResolver(delay=0.1)
    session = make_session(connector_kwargs={"resolver": resolver})
    leader = asyncio.create_task(fetch(session, http_server.url()))
    await asyncio.wait_for(resolver.entered.wait(), 2)
    follower = asyncio.create_task(fetch(session, http_server.url()))
    await until(lambda: list(telemetry.ledger.started.values()).count(DNS) == 2)
    await cancelled(follower)
    assert await asyncio.wait_for(leader, 2) == (200, "ok")

    assert_well_formed(telemetry)
    first, second = telemetry.client_spans()
    assert_unset(second)
    joined = child(telemetry, child(telemetry, second, SETUP), DNS)
    assert attrs(joined)["aiohttp.dns.joined"] is True
    assert_unset(joined)
    own = child(telemetry, child(telemetry, first, SETUP), DNS)
    assert "aiohttp.dns.joined" not in attrs(own)
    assert joined.end_time < own.end_time  # type: ignore[operator]


async def test_cancellation_during_socket_connect_is_not_an_error(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    with full_accept_queue() as port:
        task = asyncio.create_task(fetch(make_session(), f"http://127.0.0.1:{port}/"))
        await until(started(telemetry, CONNECT))
        await asyncio.sleep(0.02)
        await cancelled(task)

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, CONNECT)]
    assert_well_formed(telemetry)
    for span in telemetry.spans():
        assert_unset(span)
    # The address it was connecting to is known; the connect never completed.
    assert attrs(named(telemetry.spans(), CONNECT)[0])["network.peer.address"] == "127.0.0.1"


async def test_cancellation_during_the_tls_handshake_is_not_an_error(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    async with silent_tcp_server() as (port, accepted):
        task = asyncio.create_task(fetch(make_session(), f"https://localhost:{port}/"))
        await asyncio.wait_for(accepted.wait(), 2)
        await until(started(telemetry, TLS))
        await asyncio.sleep(0.02)
        cancel_ns = time_ns()
        await cancelled(task)

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, DNS), (2, CONNECT), (2, TLS)]
    assert_well_formed(telemetry)
    for span in telemetry.spans():
        assert_unset(span)
    setup = named(telemetry.spans(), SETUP)[0]
    connect = child(telemetry, setup, CONNECT)
    handshake = child(telemetry, setup, TLS)
    assert connect.end_time <= handshake.start_time  # type: ignore[operator]
    assert connect.end_time < cancel_ns  # type: ignore[operator]
    assert handshake.end_time >= cancel_ns  # type: ignore[operator]
    assert "tls.protocol.name" not in attrs(handshake)


async def test_cancellation_while_waiting_for_headers_is_not_an_error(
    make_session: SessionFactory, telemetry: Telemetry, tls: Tls
) -> None:
    arrived = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(0.3)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/hang", hang)
    async with serve(app, tls.server) as server:
        task = asyncio.create_task(fetch(make_session(), server.url("/hang")))
        await asyncio.wait_for(arrived.wait(), 2)
        cancel_ns = time_ns()
        await cancelled(task)

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, DNS), (2, CONNECT), (2, TLS)]
    assert_well_formed(telemetry)
    for span in telemetry.spans():
        assert_unset(span)
    request = telemetry.only_span()
    assert request.end_time >= cancel_ns  # type: ignore[operator]
    setup = child(telemetry, request, SETUP)
    for phase in [setup, *telemetry.children(setup)]:
        assert phase.end_time < cancel_ns, phase.name  # type: ignore[operator]
    assert attrs(setup)["network.peer.address"] == "127.0.0.1"


# -- 8. many concurrent requests --------------------------------------------------------------


async def test_concurrent_new_connections_are_not_cross_wired(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    count = 200 if server.scheme == "http" else 60
    session = make_session(connector_kwargs={"limit": 50, "force_close": True})
    urls = [server.url(f"/ok?n={i}") for i in range(count)]
    results = await asyncio.wait_for(asyncio.gather(*(fetch(session, u) for u in urls)), 30)
    assert results == [(200, "ok")] * count

    assert_well_formed(telemetry)
    spans = telemetry.spans()
    requests = telemetry.client_spans()
    assert len(requests) == count
    assert sorted(str(attrs(r)["url.full"]) for r in requests) == sorted(urls)
    by_id = {s.context.span_id: s for s in spans}

    def owner(span: ReadableSpan) -> ReadableSpan:
        while span.kind is not SpanKind.CLIENT:
            assert span.parent is not None
            span = by_id[span.parent.span_id]
        return span

    per_request: dict[int, list[str]] = {r.context.span_id: [] for r in requests}
    for span in spans:
        if span.kind is SpanKind.INTERNAL:
            per_request[owner(span).context.span_id].append(span.name)
    for request in requests:
        assert_unset(request)
        names = per_request[request.context.span_id]
        assert names.count(SETUP) == 1, names
        assert names.count(CONNECT) == 1, names
        assert names.count(DNS) <= 1, names
        assert names.count(TLS) == (1 if server.scheme == "https" else 0), names
        setup = child(telemetry, request, SETUP)
        connect = child(telemetry, setup, CONNECT)
        assert attrs(setup)["network.peer.port"] == server.port
        assert attrs(connect)["network.peer.port"] == server.port
        assert request.links == ()
    # 50 connections at a time: the others had to wait for a slot.
    assert len(named(spans, WAIT)) >= count - 50
    # One real lookup; every other request joined it or hit the cache.
    own_lookups = [s for s in named(spans, DNS) if "aiohttp.dns.joined" not in attrs(s)]
    assert len(own_lookups) == 1


# -- 9. redirect across hosts -----------------------------------------------------------------


async def test_a_redirect_to_another_host_sets_up_a_new_connection(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    target = server.url("/ok", host="127.0.0.1")
    url = server.url(f"/redirect-to?to={target}")
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller"):
        assert await fetch(make_session(), url) == (200, "ok")

    tls_hop = [(3, TLS)] if server.scheme == "https" else []
    assert telemetry.tree() == [
        (0, "caller"),
        (1, GET),
        (2, SETUP),
        (3, DNS),
        (3, CONNECT),
        *tls_hop,
        (1, GET),
        (2, SETUP),
        (3, CONNECT),
        *tls_hop,
    ]
    assert_well_formed(telemetry)
    first, second = telemetry.client_spans()
    assert attrs(first)["http.response.status_code"] == 302
    assert attrs(second)["http.request.resend_count"] == 1
    first_setup = child(telemetry, first, SETUP)
    second_setup = child(telemetry, second, SETUP)
    assert attrs(first_setup)["server.address"] == "localhost"
    assert attrs(second_setup)["server.address"] == "127.0.0.1"
    assert attrs(second_setup).get("aiohttp.dns.cache_hit") is None
    assert second.links == ()
    assert first.end_time <= second_setup.start_time  # type: ignore[operator]


# -- handlers after ours ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "phases"),
    [
        ("on_dns_resolvehost_end", (DNS,)),
        ("on_connection_create_end", (SETUP, DNS, CONNECT)),
    ],
)
async def test_a_phase_keeps_its_end_when_the_handlers_after_ours_are_slow(
    http_server: Server, telemetry: Telemetry, signal: str, phases: tuple[str, ...]
) -> None:
    """A second TraceConfig, after ours, takes 50 ms over the signal that ends the phase."""
    marks: list[int] = []

    async def slow(session: Any, context: Any, params: Any) -> None:
        marks.append(time_ns())
        await asyncio.sleep(0.05)

    slow_config = aiohttp.TraceConfig()
    getattr(slow_config, signal).append(slow)
    ours = create_trace_config(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    async with aiohttp.ClientSession(trace_configs=[ours, slow_config]) as session:
        assert await fetch(session, http_server.url()) == (200, "ok")

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, DNS), (2, CONNECT)]
    [slow_began] = marks
    for name in phases:
        [span] = named(telemetry.spans(), name)
        assert span.end_time is not None
        assert span.end_time <= slow_began, f"{name} ended after the slow handler began"


async def test_a_lookup_that_outlives_its_cancelled_request_is_measured_without_an_error(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    resolver = SlowResolver(delay=0.1)
    session = make_session(connector_kwargs={"resolver": resolver})
    task = asyncio.create_task(fetch(session, http_server.url()))
    await asyncio.wait_for(resolver.entered.wait(), 2)
    await cancelled(task)
    # Not measured yet: the lookup is still running, and its request's cancel is no error.
    assert telemetry.metric_points("dns.lookup.duration") == []

    # aiohttp signals the lookup's end just after the resolver returns.
    await until(lambda: telemetry.metric_points("dns.lookup.duration") != [])
    [point] = telemetry.metric_points("dns.lookup.duration")
    assert dict(point.attributes) == {"dns.question.name": "localhost"}
    assert point.count == 1
    # The whole lookup, not the part its request lived for: at least what the resolver took.
    assert point.sum >= (resolver.ended_ns - resolver.began_ns) / 1e9
