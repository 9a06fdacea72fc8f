"""Load and leak (DESIGN §5, §6): under thousands of mixed requests nothing stays behind.

Each mixed-load test sends successes (200), HTTP errors (4xx), refused connections (a closed
port), timeouts (a short ``ClientTimeout`` on a slow route) and cancellations (the caller's
task cancelled at a random point: while connecting, waiting for headers or reading a body),
at most ``CONCURRENCY`` at a time, and then checks:

* every span that started ended, exactly once (a counting processor; the exporter drops
  spans so memory stays flat);
* ``http.client.active_requests`` is back to 0 for every attribute set, and
  ``http.client.open_connections`` too once the sessions are closed;
* the body watch registry (``_body._receiving``) is empty, no fault was reported, and the
  ``_semconv`` caches stayed small;
* memory retained after a warm-up stays under a stated bound (``tracemalloc``; the figure is
  printed, run with ``-s`` to see it).

Variants (``soak`` ones are skipped unless asked for, see ``conftest.py``):

=================================  ========  =========  ========  =================
test                               requests  warm-up    sessions  marker
=================================  ========  =========  ========  =================
mixed load, one session            2,000     500        1         (default)
mixed load, many sessions          2,000     500        200       (default)
mixed load, one session            10,000    1,000      1         soak
mixed load, many sessions          10,000    1,000      1,000     soak
=================================  ========  =========  ========  =================

Another sends 1,000 concurrent requests through ``TCPConnector(limit=50)`` over HTTPS and
checks that every phase span sits under its own request's CLIENT span, which the server tells
apart by the connection each request arrived on. The last checks that a connection waiting in
the pool does not keep alive the request that opened it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import random
import socket
import time
import tracemalloc
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, use_span

from aiohttp_otel import _diagnostics, _semconv, create_trace_config
from aiohttp_otel._probes import body as _body

from ..conftest import Server, SessionFactory, Telemetry, Tls, make_app, parse_traceparent, serve

#: At most this many requests in flight at once.
CONCURRENCY = 100
#: Share of each kind of request in the mix (they add up to 100).
MIX = {"ok": 55, "http_error": 15, "refused": 10, "timeout": 10, "cancel": 10}
HTTP_ERRORS = (400, 403, 404, 429)
#: The client gives up on the slow route after this; the route answers much later.
SHORT_TIMEOUT = aiohttp.ClientTimeout(total=0.05)
SLOW_ROUTE_S = 0.5
#: A cancelled request is cancelled this long after it started (uniformly drawn); the body it
#: reads takes DRIP_CHUNKS * DRIP_PAUSE_S, so cancellations land in every phase.
CANCEL_AFTER_S = (0.0005, 0.08)
DRIP_CHUNKS, DRIP_PAUSE_S = 5, 0.02
#: Every other request gives up after this, so nothing can hang.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
#: How many sessions are open at once in the many-sessions variants.
SESSION_BATCH = 50


@dataclass(frozen=True)
class Load:
    requests: int
    warmup: int
    sessions: int
    #: Retained memory growth allowed from the end of the warm-up to the end of the run,
    #: whole process (client, server, SDK) and this package alone. What this package keeps
    #: for a pooled connection (its record, for links and the connection metrics) is about
    #: 0.5 KiB, and the pool may hold up to 100 more connections at the end than after the
    #: warm-up; 128 KiB is that with room, and less than 100 bytes per measured request.
    growth_bound: int
    own_growth_bound: int
    #: The whole test stops with a failure past this.
    time_limit_s: float


DEFAULT_ONE = Load(2_000, 500, 1, 2 * 1024**2, 128 * 1024, 120)
DEFAULT_MANY = Load(2_000, 500, 200, 2 * 1024**2, 128 * 1024, 120)
SOAK_ONE = Load(10_000, 1_000, 1, 2 * 1024**2, 128 * 1024, 600)
SOAK_MANY = Load(10_000, 1_000, 1_000, 2 * 1024**2, 128 * 1024, 600)


# -- telemetry that keeps nothing --------------------------------------------------------------


class CountingProcessor(SpanProcessor):
    """Counts starts and ends; remembers only the spans open right now (bounded by the
    concurrency), so it can tell an end it never saw start, or a second end."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0
        self.unmatched_ends = 0
        self.open: dict[int, str] = {}
        #: CLIENT spans by their error.type (None: no error): a handful of keys.
        self.client_outcomes: collections.Counter[str | None] = collections.Counter()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started += 1
        self.open[span.context.span_id] = span.name

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1
        if self.open.pop(span.context.span_id, None) is None:
            self.unmatched_ends += 1
        if span.kind is SpanKind.CLIENT:
            error = (span.attributes or {}).get("error.type")
            self.client_outcomes[None if error is None else str(error)] += 1


class DroppingExporter(SpanExporter):
    """Goes through the export path and keeps nothing."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


class WarningCounter(logging.Handler):
    """Warnings from the SDK (e.g. "Calling end() on an ended span") and from us (faults)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(record.getMessage())


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


# -- the server and the requests -----------------------------------------------------------


async def _drip(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    try:
        for i in range(DRIP_CHUNKS):
            if i:
                await asyncio.sleep(DRIP_PAUSE_S)
            await response.write(b"d" * 1024)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client was cancelled mid-body: that is the point
    return response


def load_app() -> web.Application:
    app = make_app()  # /ok, /status/{code}, /slow, ...
    app.router.add_get("/drip", _drip)
    return app


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port bound but never listened on, while the block runs: connecting to it is
    refused at once. Released, its number could become a new connection's own source port
    over thousands of requests, and a loopback connection from a port to itself succeeds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@dataclass(frozen=True)
class Urls:
    ok: str
    status: str
    refused: str
    slow: str
    drip: str

    @classmethod
    def of(cls, server: Server, refused_port: int) -> Urls:
        return cls(
            ok=server.url("/ok"),
            status=server.url("/status/{}"),
            refused=f"http://127.0.0.1:{refused_port}/ok",
            slow=server.url(f"/slow?delay={SLOW_ROUTE_S}"),
            drip=server.url("/drip"),
        )


async def _read(
    session: aiohttp.ClientSession, url: str, headers: asyncio.Event | None = None
) -> int:
    async with session.get(url, timeout=REQUEST_TIMEOUT) as response:
        if headers is not None:
            headers.set()
        await response.read()
        return response.status


async def one_request(
    session: aiohttp.ClientSession, kind: str, urls: Urls, rng: random.Random
) -> str:
    """Send one request of ``kind``; return what the caller saw."""
    if kind == "ok":
        return f"status {await _read(session, urls.ok)}"
    if kind == "http_error":
        return f"status {await _read(session, urls.status.format(rng.choice(HTTP_ERRORS)))}"
    if kind == "refused":
        try:
            await _read(session, urls.refused)
        except aiohttp.ClientConnectorError:
            return "refused"
        return "not refused"
    if kind == "timeout":
        try:
            async with session.get(urls.slow, timeout=SHORT_TIMEOUT) as response:
                await response.read()
        except asyncio.TimeoutError:
            return "timeout"
        return "no timeout"
    assert kind == "cancel"
    headers = asyncio.Event()
    task = asyncio.ensure_future(_read(session, urls.drip, headers))
    if rng.random() < 0.5:
        # At a random time from the start: queued, connecting or waiting for the headers.
        await asyncio.wait({task}, timeout=rng.uniform(*CANCEL_AFTER_S))
    else:
        # While the body arrives, which takes DRIP_CHUNKS * DRIP_PAUSE_S.
        waiter = asyncio.ensure_future(headers.wait())
        await asyncio.wait(
            {task, waiter}, timeout=REQUEST_TIMEOUT.total, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        await asyncio.wait({task}, timeout=rng.uniform(0, DRIP_CHUNKS * DRIP_PAUSE_S * 0.75))
    if task.done():
        task.result()
        return "finished before the cancel"
    task.cancel()
    await asyncio.wait({task}, timeout=REQUEST_TIMEOUT.total)
    assert task.cancelled()
    return "cancelled mid-body" if headers.is_set() else "cancelled before the headers"


# -- the mixed-load run --------------------------------------------------------------------


@dataclass
class Run:
    urls: Urls
    trace_config: aiohttp.TraceConfig
    rng: random.Random
    outcomes: collections.Counter[str]
    injected: collections.Counter[str]

    def plan(self, count: int) -> list[str]:
        kinds = self.rng.choices(list(MIX), weights=list(MIX.values()), k=count)
        self.injected.update(kinds)
        return kinds

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(trace_configs=[self.trace_config])

    async def send(self, session: aiohttp.ClientSession, kinds: list[str]) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def gated(kind: str) -> None:
            async with gate:
                self.outcomes[await one_request(session, kind, self.urls, self.rng)] += 1

        await asyncio.gather(*(gated(kind) for kind in kinds))

    async def over_sessions(self, sessions: int, kinds: list[str]) -> None:
        """``kinds`` spread over ``sessions`` new sessions, ``SESSION_BATCH`` open at a time."""
        per_session = len(kinds) // sessions
        gate = asyncio.Semaphore(CONCURRENCY)

        async def gated(session: aiohttp.ClientSession, kind: str) -> None:
            async with gate:
                self.outcomes[await one_request(session, kind, self.urls, self.rng)] += 1

        for first in range(0, sessions, SESSION_BATCH):
            batch = [self.session() for _ in range(min(SESSION_BATCH, sessions - first))]
            try:
                await asyncio.gather(
                    *(
                        gated(session, kind)
                        for n, session in enumerate(batch)
                        for kind in kinds[(first + n) * per_session : (first + n + 1) * per_session]
                    )
                )
            finally:
                for session in batch:
                    await session.close()


async def _settled(reader: InMemoryMetricReader, name: str, limit_s: float = 2.0) -> list[Any]:
    """The points of an up-down count once they are all back to 0 (closed connections are
    counted when the loop has run their ``connection_lost``), or as they are at the limit."""
    deadline = time.monotonic() + limit_s
    for _ in range(200):
        points = metric_points(reader, name)
        if all(p.value == 0 for p in points) or time.monotonic() > deadline:
            return points
        await asyncio.sleep(0.01)
    return metric_points(reader, name)


async def _measure() -> tuple[int, tracemalloc.Snapshot]:
    # Let the loop run the callbacks still queued: the one that resumed us holds the gather
    # that just finished, and with it every task of the batch.
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    return tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot()


def _own_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> int:
    own = [tracemalloc.Filter(True, "*aiohttp_otel*")]
    diff = after.filter_traces(own).compare_to(before.filter_traces(own), "filename")
    return sum(stat.size_diff for stat in diff)


async def run_mixed_load(load: Load) -> None:
    processor = CountingProcessor()
    exporter = DroppingExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(processor)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    warnings = WarningCounter()
    watched = [logging.getLogger("opentelemetry"), logging.getLogger("aiohttp_otel")]
    for logger in watched:
        logger.addHandler(warnings)
    reported_before = set(_diagnostics._reported)
    caches_before = len(_semconv._error_type_cache), len(_semconv._protocol_versions)
    trace_config = create_trace_config(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    methods = trace_config.instrumentation.methods  # type: ignore[attr-defined]
    started_at = time.monotonic()
    tracemalloc.start()
    try:
        with refusing_port() as refused_port:
            async with serve(load_app()) as server:
                run = Run(
                    Urls.of(server, refused_port),
                    trace_config,
                    random.Random(20240605),
                    collections.Counter(),
                    collections.Counter(),
                )
                warmup = run.plan(load.warmup)
                rest = run.plan(load.requests - load.warmup)
                share = load.warmup / load.requests
                if load.sessions == 1:
                    async with run.session() as session:
                        await run.send(session, warmup)
                        baseline, before = await _measure()
                        tracemalloc.reset_peak()
                        await run.send(session, rest)
                        retained, after = await _measure()
                        peak = tracemalloc.get_traced_memory()[1]
                else:
                    await run.over_sessions(round(load.sessions * share), warmup)
                    await _settled(reader, "http.client.open_connections")
                    baseline, before = await _measure()
                    tracemalloc.reset_peak()
                    await run.over_sessions(round(load.sessions * (1 - share)), rest)
                    await _settled(reader, "http.client.open_connections")
                    retained, after = await _measure()
                    peak = tracemalloc.get_traced_memory()[1]
                open_connections = await _settled(reader, "http.client.open_connections")
    finally:
        tracemalloc.stop()
        for logger in watched:
            logger.removeHandler(warnings)
    elapsed = time.monotonic() - started_at
    growth = retained - baseline
    own_growth = _own_growth(before, after)
    print(
        f"\n{load.requests} requests over {load.sessions} session(s) in {elapsed:.1f} s"
        f" (tracemalloc on); injected {dict(run.injected)}; outcomes {dict(run.outcomes)};"
        f" spans started {processor.started}, ended {processor.ended},"
        f" exported {exporter.exported}; CLIENT spans by error.type"
        f" {dict(processor.client_outcomes)}; memory after the warm-up of {load.warmup}:"
        f" retained growth {growth / 1024:.0f} KiB (bound {load.growth_bound / 1024:.0f} KiB),"
        f" of which aiohttp_otel {own_growth / 1024:.1f} KiB"
        f" (bound {load.own_growth_bound / 1024:.0f} KiB),"
        f" transient peak {(peak - baseline) / 1024:.0f} KiB"
    )

    # Each kind of fault did what it was meant to.
    injected, outcomes = run.injected, run.outcomes
    assert sum(injected.values()) == load.requests
    assert outcomes["refused"] == injected["refused"]
    assert outcomes["timeout"] == injected["timeout"]
    assert sum(outcomes[f"status {code}"] for code in HTTP_ERRORS) == injected["http_error"]
    assert outcomes["status 200"] == injected["ok"]
    cancelled = outcomes["cancelled mid-body"] + outcomes["cancelled before the headers"]
    assert cancelled + outcomes["finished before the cancel"] == injected["cancel"]
    assert cancelled > injected["cancel"] // 2
    assert outcomes["cancelled mid-body"] > 0
    assert outcomes["cancelled before the headers"] > 0

    # Every span ended, once; one CLIENT span per request, its outcome matching the caller's.
    assert processor.open == {}
    assert processor.started == processor.ended == exporter.exported
    assert processor.unmatched_ends == 0
    client = processor.client_outcomes
    assert sum(client.values()) == load.requests
    assert sum(client[str(code)] for code in HTTP_ERRORS) == injected["http_error"]
    refused = sum(n for error, n in client.items() if error and "Connector" in error)
    assert refused == injected["refused"]
    timed_out = sum(n for error, n in client.items() if error and "Timeout" in error)
    assert timed_out == injected["timeout"]
    # Cancellation is not an error.
    assert client[None] == outcomes["status 200"] + injected["cancel"]

    # Nothing left behind.
    active = metric_points(reader, "http.client.active_requests")
    assert active
    assert [p for p in active if p.value != 0] == []
    # The connections were counted (a missing metric must not pass as "all back to 0"), in
    # both states, and every count went back to 0.
    assert {p.attributes["http.connection.state"] for p in open_connections} == {"active", "idle"}
    assert [p for p in open_connections if p.value != 0] == []
    assert _body._receiving == {}
    assert set(_diagnostics._reported) == reported_before
    assert warnings.count == 0, warnings.first
    # The caches are per process (other tests fill them too): a few new entries at most.
    assert len(_semconv._error_type_cache) - caches_before[0] <= 8, list(_semconv._error_type_cache)
    assert len(_semconv._protocol_versions) - caches_before[1] <= 2
    assert len(methods._cache) <= 64

    # Memory: what one request allocates, it gives back.
    assert growth < load.growth_bound
    assert own_growth < load.own_growth_bound


@pytest.mark.parametrize(
    "load",
    [
        pytest.param(DEFAULT_ONE, id="one-session-2000"),
        pytest.param(DEFAULT_MANY, id="200-sessions-2000"),
        pytest.param(SOAK_ONE, id="one-session-10000", marks=pytest.mark.soak),
        pytest.param(SOAK_MANY, id="1000-sessions-10000", marks=pytest.mark.soak),
    ],
)
async def test_mixed_load_leaves_nothing_behind(load: Load) -> None:
    await asyncio.wait_for(run_mixed_load(load), load.time_limit_s)


# -- phase spans of concurrent requests --------------------------------------------------------

CONCURRENT = 1_000
POOL_LIMIT = 50
PHASES_UNDER_CLIENT = ("HTTP wait_for_connection", "HTTP connection_setup")
PHASES_UNDER_SETUP = ("DNS lookup", "socket connect", "TLS client handshake")


def connection_seq_app() -> web.Application:
    """Answers with the traceparent it got, the client's port (which connection) and how
    many requests that connection has carried so far."""
    carried: collections.Counter[int] = collections.Counter()

    async def handler(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        port = int(peer[1]) if peer else -1
        carried[port] += 1
        return web.json_response(
            {
                "traceparent": request.headers.get("traceparent"),
                "port": port,
                "seq": carried[port],
            }
        )

    app = web.Application()
    app.router.add_get("/conn", handler)
    return app


async def test_concurrent_phase_spans_sit_under_their_own_request(
    telemetry: Telemetry, make_session: SessionFactory, tls: Tls
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("load-test")
    # Each request runs under a root span of its own, in a trace of its own.
    callers: dict[int, int] = {}  # caller span id -> request index
    answers: dict[int, dict[str, Any]] = {}

    async def one(session: aiohttp.ClientSession, url: str, i: int) -> None:
        caller = tracer.start_span(f"caller {i}", context=Context())
        callers[caller.get_span_context().span_id] = i
        # Each gathered coroutine is a task with a context of its own: attaching here stays
        # in this request.
        with use_span(caller, end_on_exit=True):
            async with session.get(url, timeout=REQUEST_TIMEOUT) as response:
                answers[i] = await response.json()

    async with serve(connection_seq_app(), tls.server) as server:
        session = make_session(connector_kwargs={"limit": POOL_LIMIT})
        url = server.url("/conn")
        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(one(session, url, i) for i in range(CONCURRENT))), 120
        )
        elapsed = time.monotonic() - started
        await session.close()

    assert len(answers) == CONCURRENT
    spans = telemetry.spans()
    by_id = {s.context.span_id: s for s in spans}
    clients: dict[int, ReadableSpan] = {}
    for span in spans:
        if span.kind is SpanKind.CLIENT:
            assert span.parent is not None
            i = callers[span.parent.span_id]
            assert i not in clients, f"request {i} has two CLIENT spans"
            clients[i] = span
    assert sorted(clients) == list(range(CONCURRENT))

    # The traceparent each request carried is its own CLIENT span's.
    for i, answer in answers.items():
        trace_id, span_id = parse_traceparent(answer["traceparent"])
        assert (int(trace_id, 16), int(span_id, 16)) == (
            clients[i].context.trace_id,
            clients[i].context.span_id,
        )

    def client_of(span: ReadableSpan) -> ReadableSpan:
        chain = [span]
        for _ in range(4):
            parent = chain[-1].parent
            assert parent is not None, [s.name for s in chain]
            above = by_id[parent.span_id]
            assert above.context.trace_id == span.context.trace_id
            if above.kind is SpanKind.CLIENT:
                return above
            chain.append(above)
        raise AssertionError([s.name for s in chain])

    setups_of: dict[int, list[ReadableSpan]] = collections.defaultdict(list)
    waits = 0
    for span in spans:
        if span.name in PHASES_UNDER_CLIENT or span.name in PHASES_UNDER_SETUP:
            client = client_of(span)
            assert span.parent is not None
            parent = by_id[span.parent.span_id]
            if span.name in PHASES_UNDER_SETUP:
                assert parent.name == "HTTP connection_setup", span.name
            else:
                assert parent is client, span.name
            # Inside its request's time, as a trace view would nest it.
            assert client.start_time <= span.start_time <= span.end_time <= client.end_time  # type: ignore[operator]
            if span.name == "HTTP connection_setup":
                setups_of[client.context.span_id].append(span)
            waits += span.name == "HTTP wait_for_connection"

    # The server says which requests opened a connection (the first on it): exactly those
    # have a setup span, and every other one links to the setup span of its connection's
    # first request.
    first_on_port = {a["port"]: i for i, a in answers.items() if a["seq"] == 1}
    for i, answer in answers.items():
        client = clients[i]
        setups = setups_of.get(client.context.span_id, [])
        if answer["seq"] == 1:
            assert len(setups) == 1, i
            names = sorted(
                s.name for s in spans if s.parent and s.parent.span_id == setups[0].context.span_id
            )
            assert "socket connect" in names, names
            assert "TLS client handshake" in names, names
            # Its own lookup, a wait for another request's, or a cache hit on the setup span.
            assert "DNS lookup" in names or (setups[0].attributes or {}).get(
                "aiohttp.dns.cache_hit"
            ), names
        else:
            assert setups == [], i
            opener = clients[first_on_port[answer["port"]]]
            (opener_setup,) = setups_of[opener.context.span_id]
            assert [link.context.span_id for link in client.links] == [
                opener_setup.context.span_id
            ], i
    assert len(first_on_port) == sum(len(v) for v in setups_of.values())
    assert len(first_on_port) <= POOL_LIMIT * 2
    assert waits >= CONCURRENT - POOL_LIMIT
    print(
        f"\n{CONCURRENT} concurrent HTTPS requests through limit={POOL_LIMIT} in {elapsed:.1f} s:"
        f" {len(spans)} spans, {len(first_on_port)} connections, {waits} queue waits"
    )


# -- what a pooled connection keeps ------------------------------------------------------------


class _UserContext:
    """Stands for whatever a caller passes as ``trace_request_ctx`` (weakly referenceable)."""


async def test_a_pooled_connection_does_not_keep_the_request_that_opened_it_alive(
    make_session: SessionFactory, server: Server
) -> None:
    """A finished request's tracing state (and the caller's ``trace_request_ctx`` in it) is
    garbage once the request is over, even while the connection it opened waits in the pool:
    otherwise every idle connection pins a request, its spans and the caller's objects."""
    session = make_session()

    async def request() -> weakref.ref[_UserContext]:
        # In a frame of its own, so that no local of the test holds the response.
        marker = _UserContext()
        async with session.get(server.url("/ok"), trace_request_ctx=marker) as response:
            await response.read()
        return weakref.ref(marker)

    gone = await request()
    for _ in range(3):  # let the loop run what the request left queued
        await asyncio.sleep(0)
    gc.collect()

    connector = session.connector
    assert connector is not None
    pooled = sum(len(conns) for conns in connector._conns.values())  # type: ignore[attr-defined]
    assert pooled == 1  # the connection is still open, waiting for the next request
    assert gone() is None, "the pooled connection keeps the finished request alive"
