"""An application written for the official ``opentelemetry-instrumentation-aiohttp-client``,
run through aiohttp-otel with only the import changed.

The app below is written the way the official package documents it: hooks with its
signatures and its ``isinstance`` test on the response hook's params, a ``url_filter`` that
returns a string, ``trace_configs=``, ``tracer_provider=``, ``meter_provider=``, the
environment variables it reads, and ``uninstrument_session(client_session=...)``. Each test
checks the telemetry the app gets. The last section pins the differences that
``docs/migrating.md`` lists, as a migrating user meets them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import yarl
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Span, SpanKind, StatusCode

# The one line a migration changes.
from aiohttp_otel import AioHttpClientInstrumentor, create_trace_config

from .conftest import Server, Telemetry, Tls, attrs, closed_port, fetch

SCOPE = "aiohttp_otel"


# -- the official-style application ------------------------------------------------------------


def strip_query_params(url: yarl.URL) -> str:
    """The official documentation's ``url_filter``: it returns a string."""
    return str(url.with_query(None))


def request_hook(span: Span, params: aiohttp.TraceRequestStartParams) -> None:
    if span and span.is_recording():
        span.set_attribute("app.request.method", params.method)
        span.set_attribute("app.request.path", params.url.path)


def response_hook(
    span: Span,
    params: aiohttp.TraceRequestEndParams | aiohttp.TraceRequestExceptionParams,
) -> None:
    # The official package calls this with one of exactly these two types.
    if span and span.is_recording():
        if isinstance(params, aiohttp.TraceRequestEndParams):
            span.set_attribute("app.response.status", params.response.status)
        else:
            span.set_attribute("app.exception", type(params.exception).__name__)


class RequestCounter:
    """The app's own TraceConfig, passed through ``instrument(trace_configs=...)``."""

    def __init__(self) -> None:
        self.ended: list[str] = []
        self.trace_config = aiohttp.TraceConfig()
        self.trace_config.on_request_end.append(self._on_request_end)

    async def _on_request_end(
        self, _session: aiohttp.ClientSession, _ctx: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        self.ended.append(params.url.path)


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def instrumentor() -> Iterator[AioHttpClientInstrumentor]:
    instance = AioHttpClientInstrumentor()
    try:
        yield instance
    finally:
        if instance.is_instrumented_by_opentelemetry:
            instance.uninstrument()


@pytest.fixture
async def sessions(tls: Tls) -> AsyncIterator[list[aiohttp.ClientSession]]:
    """Sessions a test makes as the app would; closed at teardown."""
    made: list[aiohttp.ClientSession] = []
    yield made
    for session in made:
        await session.close()


def plain_session(
    tls: Tls, made: list[aiohttp.ClientSession], **kwargs: Any
) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.client), **kwargs)
    made.append(session)
    return session


def providers(telemetry: Telemetry) -> dict[str, Any]:
    return {
        "tracer_provider": telemetry.tracer_provider,
        "meter_provider": telemetry.meter_provider,
    }


def our_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiohttp_otel" and r.levelno >= logging.WARNING
    ]


def by_path(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {yarl.URL(str(attrs(span)["url.full"])).path: span for span in spans}


async def run_the_app(session: aiohttp.ClientSession, server: Server, dead_port: int) -> None:
    """What the app does: a success with a secret in the query, a 404, a refused connect."""
    assert await fetch(session, server.url("/ok?api_key=secret")) == (200, "ok")
    assert (await fetch(session, server.url("/status/404")))[0] == 404
    with pytest.raises(aiohttp.ClientConnectorError):
        await fetch(session, f"http://127.0.0.1:{dead_port}/refused")


def assert_the_app_telemetry(telemetry: Telemetry, server: Server, dead_port: int) -> None:
    clients = telemetry.client_spans()
    assert [span.name for span in clients] == ["GET", "GET", "GET"]
    assert {span.kind for span in clients} == {SpanKind.CLIENT}
    assert {span.instrumentation_scope.name for span in clients if span.instrumentation_scope} == {
        SCOPE
    }
    spans = by_path(clients)
    ok, missing, refused = spans["/ok"], spans["/status/404"], spans["/refused"]

    # url_filter ran first: no query is left to leak.
    assert attrs(ok)["url.full"] == server.url("/ok")
    assert attrs(ok)["http.request.method"] == "GET"
    assert attrs(ok)["server.address"] == "localhost"
    assert attrs(ok)["server.port"] == server.port
    assert attrs(ok)["http.response.status_code"] == 200
    assert ok.status.status_code is StatusCode.UNSET
    assert attrs(missing)["http.response.status_code"] == 404
    assert missing.status.status_code is StatusCode.ERROR
    assert attrs(missing)["error.type"] == "404"
    assert refused.status.status_code is StatusCode.ERROR
    assert attrs(refused)["error.type"] == "aiohttp.client_exceptions.ClientConnectorError"
    assert [event.name for event in refused.events if event.name == "exception"] == ["exception"]
    assert attrs(refused)["server.port"] == dead_port

    # The hooks saw the official params types.
    for path, span in spans.items():
        assert attrs(span)["app.request.method"] == "GET"
        assert attrs(span)["app.request.path"] == path
    assert attrs(ok)["app.response.status"] == 200
    assert attrs(missing)["app.response.status"] == 404
    assert attrs(refused)["app.exception"] == "ClientConnectorError"
    assert "app.response.status" not in attrs(refused)

    # The meter provider it was given got the duration metric, one point per request.
    durations = telemetry.metric_points("http.client.request.duration")
    assert sum(point.count for point in durations) == 3
    statuses = {point.attributes.get("http.response.status_code") for point in durations}
    assert statuses == {200, 404, None}


# -- the app, unchanged ---------------------------------------------------------------------------


async def test_instrument_with_the_official_keywords(
    instrumentor: AioHttpClientInstrumentor,
    sessions: list[aiohttp.ClientSession],
    tls: Tls,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    counter = RequestCounter()
    instrumentor.instrument(
        **providers(telemetry),
        url_filter=strip_query_params,
        request_hook=request_hook,
        response_hook=response_hook,
        trace_configs=[counter.trace_config],
    )
    dead_port = closed_port()

    await run_the_app(plain_session(tls, sessions), http_server, dead_port)

    assert_the_app_telemetry(telemetry, http_server, dead_port)
    # The app's own TraceConfig ran beside ours (the refused request has no end).
    assert counter.ended == ["/ok", "/status/404"]
    assert our_warnings(caplog) == []


async def test_create_trace_config_with_the_official_positional_arguments(
    sessions: list[aiohttp.ClientSession],
    tls: Tls,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    # url_filter, request_hook, response_hook, tracer_provider, meter_provider: its order.
    trace_config = create_trace_config(
        strip_query_params,
        request_hook,
        response_hook,
        telemetry.tracer_provider,
        telemetry.meter_provider,
    )
    dead_port = closed_port()

    await run_the_app(
        plain_session(tls, sessions, trace_configs=[trace_config]), http_server, dead_port
    )

    assert_the_app_telemetry(telemetry, http_server, dead_port)
    assert our_warnings(caplog) == []


async def test_uninstrument_session_with_the_official_keyword(
    instrumentor: AioHttpClientInstrumentor,
    sessions: list[aiohttp.ClientSession],
    tls: Tls,
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    instrumentor.instrument(**providers(telemetry))
    stopped, traced = plain_session(tls, sessions), plain_session(tls, sessions)

    AioHttpClientInstrumentor.uninstrument_session(client_session=stopped)

    assert await fetch(stopped, http_server.url("/ok?session=stopped")) == (200, "ok")
    assert await fetch(traced, http_server.url("/ok?session=traced")) == (200, "ok")
    [span] = telemetry.client_spans()
    assert attrs(span)["url.full"] == http_server.url("/ok?session=traced")


async def test_the_official_response_hook_works_on_every_redirect_hop(
    sessions: list[aiohttp.ClientSession],
    tls: Tls,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    trace_config = create_trace_config(response_hook=response_hook, **providers(telemetry))
    session = plain_session(tls, sessions, trace_configs=[trace_config])

    assert await fetch(session, http_server.url("/redirect/2")) == (200, "ok")

    hops = telemetry.client_spans()
    assert [attrs(span).get("app.response.status") for span in hops] == [302, 302, 200]
    assert [attrs(span)["http.response.status_code"] for span in hops] == [302, 302, 200]
    assert our_warnings(caplog) == [], "the hook raised on a hop"


async def test_the_official_environment_variables_configure_instrument(
    instrumentor: AioHttpClientInstrumentor,
    sessions: list[aiohttp.ClientSession],
    tls: Tls,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS", "status/204,healthcheck")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE", "x-answer")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", "x-tenant")
    instrumentor.instrument(**providers(telemetry))
    session = plain_session(tls, sessions)

    assert (await fetch(session, http_server.url("/status/204")))[0] == 204
    assert await fetch(session, http_server.url("/ok?healthcheck=1")) == (200, "ok")
    assert (await fetch(session, http_server.url("/status/201"), headers={"X-Tenant": "t1"}))[
        0
    ] == 201

    [span] = telemetry.client_spans()
    assert attrs(span)["http.response.status_code"] == 201
    # A tuple of strings, one per value (the official package's are named with "_" for "-").
    assert attrs(span)["http.response.header.x-answer"] == ("201",)
    assert attrs(span)["http.request.header.x-tenant"] == ("t1",)
    # Excluded URLs are not measured either.
    [duration] = telemetry.metric_points("http.client.request.duration")
    assert duration.count == 1


async def test_suppress_http_instrumentation_is_honoured(
    sessions: list[aiohttp.ClientSession], tls: Tls, http_server: Server, telemetry: Telemetry
) -> None:
    trace_config = create_trace_config(**providers(telemetry))
    session = plain_session(tls, sessions, trace_configs=[trace_config])

    with suppress_http_instrumentation():
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")
    assert telemetry.spans() == []
    assert await fetch(session, http_server.url("/ok")) == (200, "ok")
    assert len(telemetry.client_spans()) == 1


async def test_http_dup_gives_every_old_span_attribute_the_official_package_sets(
    sessions: list[aiohttp.ClientSession],
    tls: Tls,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http/dup")
    session = plain_session(
        tls, sessions, trace_configs=[create_trace_config(**providers(telemetry))]
    )
    assert await fetch(session, http_server.url("/ok")) == (200, "ok")

    span = attrs(telemetry.only_span())
    # What the official package puts on the span in http/dup mode, old names and new.
    assert {
        "http.method": "GET",
        "http.url": http_server.url("/ok"),
        "http.host": "localhost",
        "net.peer.port": http_server.port,
        "http.status_code": 200,
        "http.request.method": "GET",
        "url.full": http_server.url("/ok"),
        "server.address": "localhost",
        "server.port": http_server.port,
        "http.response.status_code": 200,
    }.items() <= span.items()


# -- the documented differences (docs/migrating.md), as a migrating user meets them -----------


async def test_the_schema_url_and_the_extra_instruments(
    sessions: list[aiohttp.ClientSession], tls: Tls, http_server: Server, telemetry: Telemetry
) -> None:
    session = plain_session(
        tls, sessions, trace_configs=[create_trace_config(**providers(telemetry))]
    )
    assert await fetch(session, http_server.url("/ok")) == (200, "ok")
    await session.close()

    span = telemetry.only_span()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.schema_url == "https://opentelemetry.io/schemas/1.27.0"
    data = telemetry.metric_reader.get_metrics_data()
    assert data is not None
    names = {
        metric.name: metric
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    assert set(names) == {
        "http.client.request.duration",
        "http.client.active_requests",
        "http.client.open_connections",
        "http.client.connection.duration",
        "dns.lookup.duration",
    }, "a GET without a body and without queueing records these"
    [duration] = names["http.client.request.duration"].data.data_points
    assert dict(duration.attributes) == {
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "server.address": "localhost",
        "server.port": http_server.port,
        "network.protocol.version": "1.1",
    }


def raising_hook(span: Span, params: Any) -> None:
    raise RuntimeError("a bug in the app's hook")


def raising_filter(url: yarl.URL) -> str:
    raise RuntimeError("a bug in the app's url_filter")


@pytest.mark.parametrize(
    "options",
    [
        {"request_hook": raising_hook},
        {"response_hook": raising_hook},
        {"url_filter": raising_filter},
    ],
    ids=["request_hook", "response_hook", "url_filter"],
)
async def test_a_raising_hook_or_url_filter_does_not_break_the_request(
    options: dict[str, Any],
    sessions: list[aiohttp.ClientSession],
    tls: Tls,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    trace_config = create_trace_config(**options, **providers(telemetry))
    session = plain_session(tls, sessions, trace_configs=[trace_config])

    for _ in range(2):
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")

    assert len(our_warnings(caplog)) == 1, "logged once per process, not per request"
    if "url_filter" in options:
        # No URL that is safe to record: the request goes on untraced.
        assert telemetry.client_spans() == []
    else:
        assert len(telemetry.client_spans()) == 2


async def test_the_apps_own_trace_config_does_not_see_the_request_span_as_current(
    sessions: list[aiohttp.ClientSession], tls: Tls, http_server: Server, telemetry: Telemetry
) -> None:
    seen: list[int] = []

    async def on_headers_sent(_session: Any, _ctx: Any, _params: Any) -> None:
        seen.append(trace.get_current_span().get_span_context().span_id)

    own = aiohttp.TraceConfig()
    own.on_request_headers_sent.append(on_headers_sent)
    session = plain_session(
        tls, sessions, trace_configs=[create_trace_config(**providers(telemetry)), own]
    )
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("caller") as caller:
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")

    span = telemetry.only_span()
    # The official package attaches its span; ours leaves the caller's context as it was.
    assert seen == [caller.get_span_context().span_id]
    assert seen != [span.context.span_id]


@pytest.mark.parametrize("how", ["wait_for", "asyncio.timeout", "ClientTimeout"])
async def test_only_aiohttps_own_timeout_is_an_error(
    how: str,
    sessions: list[aiohttp.ClientSession],
    tls: Tls,
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    if how == "asyncio.timeout" and sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout() is new in Python 3.11")
    session = plain_session(
        tls, sessions, trace_configs=[create_trace_config(**providers(telemetry))]
    )
    url = http_server.url("/slow?delay=2")

    async def request() -> None:
        if how == "wait_for":
            await asyncio.wait_for(fetch(session, url), 0.1)
        elif how == "asyncio.timeout":
            async with asyncio.timeout(0.1):  # type: ignore[attr-defined,unused-ignore]
                await fetch(session, url)
        else:
            await fetch(session, url, timeout=aiohttp.ClientTimeout(total=0.1))

    with pytest.raises(asyncio.TimeoutError):
        await request()

    span = telemetry.only_span()
    if how == "ClientTimeout":
        assert span.status.status_code is StatusCode.ERROR
        # The fully qualified name; on Python 3.10 asyncio's is not the built-in one.
        timeout = asyncio.TimeoutError
        builtin = timeout is TimeoutError
        assert attrs(span)["error.type"] == (
            "TimeoutError" if builtin else f"{timeout.__module__}.{timeout.__qualname__}"
        )
    else:
        # The caller cancelled the request: not an error of the request.
        assert span.status.status_code is StatusCode.UNSET
        assert "error.type" not in attrs(span)
