"""Metrics: request, body, connection, queue and DNS instruments, checked against what really
happened on the wire (the server counts the connections it accepted)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver
from opentelemetry.metrics import Histogram, Meter, MeterProvider
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind

from aiohttp_otel import AioHttpClientInstrumentor, _metrics

from .conftest import (
    Server,
    SessionFactory,
    Telemetry,
    Tls,
    fetch,
    readme_quick_start,
    run_python,
    serve,
)

DURATION = "http.client.request.duration"


def points(telemetry: Telemetry, name: str) -> list[Any]:
    return telemetry.metric_points(name)


def by_state(telemetry: Telemetry) -> dict[str, int]:
    return {
        p.attributes["http.connection.state"]: p.value
        for p in points(telemetry, "http.client.open_connections")
    }


def total_count(telemetry: Telemetry, name: str) -> int:
    return sum(p.count for p in points(telemetry, name))


@pytest.fixture
async def counting_server() -> AsyncIterator[tuple[Server, set[tuple[str, int]]]]:
    """A server that records each client address: one per connection it accepted."""
    peers: set[tuple[str, int]] = set()

    async def ok(request: web.Request) -> web.Response:
        peername = request.transport.get_extra_info("peername") if request.transport else None
        assert peername is not None
        peers.add(peername[:2])
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    async with serve(app) as server:
        yield server, peers


async def test_connection_and_dns_metrics_match_the_real_connections_and_lookups(
    make_session: SessionFactory,
    counting_server: tuple[Server, set[tuple[str, int]]],
    telemetry: Telemetry,
) -> None:
    server, peers = counting_server
    keep_alive = make_session()
    for _ in range(3):
        assert await fetch(keep_alive, server.url("/ok")) == (200, "ok")
    assert len(peers) == 1
    # The keep-alive connection waits in the pool: one idle, none active.
    assert by_state(telemetry) == {"active": 0, "idle": 1}

    fresh = make_session(connector_kwargs={"force_close": True})
    for _ in range(2):
        assert await fetch(fresh, server.url("/ok")) == (200, "ok")
    await asyncio.sleep(0.05)  # let the closed connections' connection_lost run
    assert len(peers) == 3, "3 real connections: 1 kept alive, 2 closed after use"
    assert by_state(telemetry) == {"active": 0, "idle": 1}
    assert total_count(telemetry, "http.client.connection.duration") == 2

    # One real lookup per connector (the second new connection of `fresh` hit its cache).
    [dns] = points(telemetry, "dns.lookup.duration")
    assert dict(dns.attributes) == {"dns.question.name": "localhost"}
    assert dns.count == 2

    await keep_alive.close()
    await asyncio.sleep(0.05)
    assert by_state(telemetry) == {"active": 0, "idle": 0}
    assert total_count(telemetry, "http.client.connection.duration") == 3
    [duration_point] = points(telemetry, "http.client.connection.duration")
    assert dict(duration_point.attributes) == {
        "server.address": "localhost",
        "server.port": server.port,
        "network.protocol.version": "1.1",
    }
    assert total_count(telemetry, DURATION) == 5


async def test_a_connection_is_active_while_a_body_is_being_read(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    async with held_stream() as (server, release):
        session = make_session()
        async with session.get(server.url("/stream")) as response:
            # Mid-body: the server holds the rest back until we have looked.
            assert await response.content.readexactly(5) == b"first"
            assert by_state(telemetry) == {"active": 1}  # and never idle so far
            release.set()
            assert await response.read() == b"last"
        assert by_state(telemetry) == {"active": 0, "idle": 1}
    active = {p.value for p in points(telemetry, "http.client.active_requests")}
    assert active == {0}


async def test_active_requests_go_back_to_zero_on_every_path(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    await fetch(session, http_server.url("/ok"))
    await fetch(session, http_server.url("/status/404"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(aiohttp.ClientConnectorError):
        await fetch(session, f"http://127.0.0.1:{port}/")
    with pytest.raises(asyncio.TimeoutError):
        await fetch(
            session, http_server.url("/slow?delay=1"), timeout=aiohttp.ClientTimeout(total=0.1)
        )
    task = asyncio.create_task(fetch(session, http_server.url("/slow?delay=1")))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    values = [p.value for p in points(telemetry, "http.client.active_requests")]
    assert values
    assert set(values) == {0}
    durations = {
        (p.attributes.get("http.response.status_code"), p.attributes.get("error.type"))
        for p in points(telemetry, DURATION)
    }
    assert durations == {
        (200, None),
        (404, "404"),
        (None, "aiohttp.client_exceptions.ClientConnectorError"),
        (None, "TimeoutError" if TimeoutError is asyncio.TimeoutError else durations_timeout()),
        (None, None),  # the cancelled request: not an error
    }


def durations_timeout() -> str:
    return f"{asyncio.TimeoutError.__module__}.{asyncio.TimeoutError.__qualname__}"


async def test_active_requests_counts_a_request_until_its_body_is_over(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    async with held_stream() as (server, release):
        session = make_session()
        async with session.get(server.url("/stream")) as response:
            assert await response.content.readexactly(5) == b"first"
            [during] = points(telemetry, "http.client.active_requests")
            assert during.value == 1
            release.set()
            assert await response.read() == b"last"
        [after] = points(telemetry, "http.client.active_requests")
        assert after.value == 0


async def test_body_size_metrics(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(body_size_metrics=True)
    assert await fetch(session, http_server.url("/ok"), "POST", data=b"x" * 3000) == (200, "ok")
    [sent] = points(telemetry, "http.client.request.body.size")
    [received] = points(telemetry, "http.client.response.body.size")
    assert (sent.count, sent.sum) == (1, 3000)
    assert (received.count, received.sum) == (1, 2)
    assert sent.attributes["http.request.method"] == "POST"
    assert received.attributes["http.response.status_code"] == 200


async def test_time_in_queue_is_recorded_per_wait(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(connector_kwargs={"limit": 1})
    await asyncio.gather(
        fetch(session, http_server.url("/slow?delay=0.15")),
        fetch(session, http_server.url("/slow?delay=0.15")),
    )
    [queued] = points(telemetry, "http.client.request.time_in_queue")
    assert queued.count == 1
    assert 0.1 <= queued.sum <= 1.0
    assert dict(queued.attributes) == {
        "http.request.method": "GET",
        "server.address": "localhost",
        "server.port": http_server.port,
    }


class FailingResolver(AbstractResolver):
    """A resolver (aiohttp's extension point) that fails like getaddrinfo for an unknown name."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[Any]:
        raise OSError(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        return None


async def test_a_failed_lookup_is_measured_with_its_error(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    session = make_session(connector_kwargs={"resolver": FailingResolver()})
    with pytest.raises(aiohttp.ClientConnectorError):
        await fetch(session, "http://no-such-host.invalid:1/")
    [dns] = points(telemetry, "dns.lookup.duration")
    assert dns.count == 1
    assert dict(dns.attributes) == {
        "dns.question.name": "no-such-host.invalid",
        "error.type": "host_not_found",
    }


def test_dns_error_type_falls_back_to_the_exception_name() -> None:
    assert _metrics.dns_error_type(OSError(socket.EAI_AGAIN, "again")) == "try_again"
    assert _metrics.dns_error_type(ValueError("odd")) == "ValueError"


async def test_a_thousand_sessions_share_one_set_of_instruments(
    http_server: Server, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    original = _metrics.Instruments.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(_metrics.Instruments, "__init__", counting_init)
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        sessions = [aiohttp.ClientSession() for _ in range(1000)]
        for session in sessions[:3]:
            await fetch(session, http_server.url("/ok"))
        for session in sessions:
            await session.close()
    finally:
        instrumentor.uninstrument()
    assert len(built) == 1
    [duration] = points(telemetry, DURATION)
    assert duration.count == 3


# -- the observable counts, shared per meter provider ----------------------------------------


@contextlib.asynccontextmanager
async def held_stream() -> AsyncIterator[tuple[Server, asyncio.Event]]:
    """A server that sends the first bytes of a body, then holds it until the event is set."""
    release = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first")
        await asyncio.wait_for(release.wait(), 10)
        await response.write(b"last")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/stream", stream)
    async with serve(app) as server:
        try:
            yield server, release
        finally:
            release.set()


def active_total(telemetry: Telemetry) -> int:
    return sum(p.value for p in points(telemetry, "http.client.active_requests"))


async def test_two_trace_configs_on_one_provider_both_count(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    # A trace config per session: each is its own create_trace_config() call.
    first, second = make_session(), make_session()
    async with held_stream() as (server, release):
        async with (
            first.get(server.url("/stream")) as one,
            second.get(server.url("/stream")) as two,
        ):
            assert await one.content.readexactly(5) == b"first"
            assert await two.content.readexactly(5) == b"first"
            assert active_total(telemetry) == 2
            assert by_state(telemetry) == {"active": 2}
            release.set()
            assert await one.read() == b"last"
            assert await two.read() == b"last"
        assert active_total(telemetry) == 0
        assert by_state(telemetry) == {"active": 0, "idle": 2}


async def test_instrument_after_uninstrument_still_counts(tls: Tls, telemetry: Telemetry) -> None:
    instrumentor = AioHttpClientInstrumentor()
    providers = {
        "tracer_provider": telemetry.tracer_provider,
        "meter_provider": telemetry.meter_provider,
    }
    async with held_stream() as (server, release):
        for round_ in range(2):
            instrumentor.instrument(**providers)
            try:
                connector = aiohttp.TCPConnector(ssl=tls.client)
                async with (
                    aiohttp.ClientSession(connector=connector) as session,
                    session.get(server.url("/stream")) as response,
                ):
                    assert await response.content.readexactly(5) == b"first"
                    assert active_total(telemetry) == 1, f"round {round_}"
                    assert by_state(telemetry)["active"] == 1, f"round {round_}"
                    release.set()
                    assert await response.read() == b"last"
                release.clear()
            finally:
                instrumentor.uninstrument()
            assert active_total(telemetry) == 0
            assert by_state(telemetry) == {"active": 0, "idle": 0}
    # Both rounds were measured: the duration metric saw two requests.
    assert total_count(telemetry, DURATION) == 2


_SDK = """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

reader = InMemoryMetricReader()
"""
_SET_PROVIDER = "metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))\n"
_REPORT = """
for rm in reader.get_metrics_data().resource_metrics:
    for sm in rm.scope_metrics:
        for metric in sm.metrics:
            print("METRIC", metric.name, len(metric.data.data_points), flush=True)
"""


@pytest.mark.parametrize("sdk", ["before", "after-instrument"])
async def test_the_readme_quick_start_exports_both_counts(sdk: str, http_server: Server) -> None:
    """The README's quick start (``instrument()`` plus a session given
    ``create_trace_config()``) on the global meter provider, set before the code runs or
    between ``instrument()`` and the request (the API's proxy then stands in for it)."""
    code = readme_quick_start(http_server.url("/ok"))
    at = code.index("async def main")  # after the module-level instrument() call
    if sdk == "before":
        script = _SDK + _SET_PROVIDER + code + _REPORT
    else:
        script = _SDK + code[:at] + _SET_PROVIDER + code[at:] + _REPORT
    returncode, out, err = await run_python(script)
    assert returncode == 0, err
    assert "200 ok" in out
    counts = {
        fields[1]: int(fields[2])
        for fields in (line.split() for line in out.splitlines())
        if fields and fields[0] == "METRIC"
    }
    assert counts.get("http.client.request.duration") == 1, out
    assert counts.get("http.client.active_requests") == 1, out
    assert counts.get("http.client.open_connections") == 2, out  # active and idle


class NoBucketAdviceMeter:
    """The SDK's meter as an OpenTelemetry API before 1.30 shapes it: ``create_histogram``
    takes no ``explicit_bucket_boundaries_advisory``."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter

    def create_histogram(self, name: str, unit: str = "", description: str = "") -> Histogram:
        return self._meter.create_histogram(name, unit=unit, description=description)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._meter, name)


class NoBucketAdviceMeterProvider(MeterProvider):
    def __init__(self, sdk: MeterProvider) -> None:
        self._sdk = sdk

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        return NoBucketAdviceMeter(self._sdk.get_meter(*args, **kwargs))


async def test_histograms_work_where_the_api_takes_no_bucket_advice(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = make_session(
        meter_provider=NoBucketAdviceMeterProvider(telemetry.meter_provider),
        body_size_metrics=True,
    )
    with caplog.at_level("WARNING", logger="aiohttp_otel"):
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")
    assert [r for r in caplog.records if r.name == "aiohttp_otel"] == []
    [duration] = points(telemetry, DURATION)
    assert duration.count == 1
    # The SDK's default buckets (milliseconds-sized): the advice never reached it.
    assert list(duration.explicit_bounds) != list(_metrics.DURATION_BUCKETS_S)
    [received] = points(telemetry, "http.client.response.body.size")
    assert received.count == 1


async def test_a_connection_answered_with_connection_close_is_never_counted_idle(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    async def bye(request: web.Request) -> web.Response:
        response = web.Response(text="bye")
        response.force_close()  # "Connection: close"
        return response

    app = web.Application()
    app.router.add_get("/bye", bye)
    async with serve(app) as server:
        session = make_session()
        for _ in range(2):
            async with session.get(server.url("/bye")) as response:
                assert response.headers["Connection"] == "close"
                assert await response.read() == b"bye"
        for _ in range(100):  # the closes are counted when the loop runs connection_lost
            if by_state(telemetry).get("active") == 0:
                break
            await asyncio.sleep(0.01)
    # A state once counted keeps reporting (0 included): no "idle" series means never idle.
    assert by_state(telemetry) == {"active": 0}
    assert total_count(telemetry, "http.client.connection.duration") == 2


class FailsOnPhaseStart(SpanProcessor):
    """A span processor that raises when a phase (INTERNAL) span starts: a fault in the
    middle of a request that was already counted active."""

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        if span.kind is SpanKind.INTERNAL:
            raise RuntimeError("processor fault")


async def test_active_requests_go_back_to_zero_after_an_instrumentation_fault(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(FailsOnPhaseStart())
    # A new connection each time: each request starts a phase span.
    session = make_session(tracer_provider=provider, connector_kwargs={"force_close": True})
    for _ in range(2):
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")
    [active] = points(telemetry, "http.client.active_requests")
    assert active.value == 0


@pytest.mark.parametrize("how", ["default", "keyword", "env"])
async def test_body_size_metrics_are_opt_in(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """Each costs a histogram record per request, so they are off unless asked for; the span
    carries the sizes either way."""
    if how == "env":
        monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_CLIENT_BODY_SIZE_METRICS", "true")
    session = make_session(**({"body_size_metrics": True} if how == "keyword" else {}))
    assert await fetch(session, http_server.url("/ok"), "POST", data=b"x" * 10) == (200, "ok")
    wanted = ("http.client.request.body.size", "http.client.response.body.size")
    recorded = {name: len(points(telemetry, name)) for name in wanted}
    assert recorded == dict.fromkeys(wanted, 0 if how == "default" else 1)
    span = telemetry.only_span()
    assert span.attributes["http.request.body.size"] == 10  # type: ignore[index]
    assert span.attributes["http.response.body.size"] == 2  # type: ignore[index]
