"""Request and response hooks: sync or async, per hop, with ``trace_request_ctx``, fault-proof."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Span, StatusCode

from .conftest import (
    Server,
    SessionFactory,
    Telemetry,
    attrs,
    echoed_headers,
    fetch,
    parse_traceparent,
)


def closed_port() -> int:
    """A loopback port that nothing listens on (bound once to pick it, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def our_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aiohttp_otel" and r.levelno == logging.WARNING]


def span_id(span: Span) -> int:
    return span.get_span_context().span_id


# -- when the hooks run ------------------------------------------------------------------------


async def test_hooks_run_once_per_request_with_its_span(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    calls: list[tuple[str, int, type]] = []

    def request_hook(span: Span, params: Any) -> None:
        calls.append(("request", span_id(span), type(params)))
        span.set_attribute("test.request_hook", str(params.url))

    def response_hook(span: Span, params: Any) -> None:
        calls.append(("response", span_id(span), type(params)))
        span.set_attribute("test.response_hook", params.response.status)

    session = make_session(request_hook=request_hook, response_hook=response_hook)
    assert await fetch(session, server.url("/ok")) == (200, "ok")

    span = telemetry.only_span()
    sid = span.context.span_id
    assert calls == [
        ("request", sid, aiohttp.TraceRequestStartParams),
        ("response", sid, aiohttp.TraceRequestEndParams),
    ]
    assert attrs(span)["test.request_hook"] == server.url("/ok")
    assert attrs(span)["test.response_hook"] == 200


async def test_hooks_run_on_every_redirect_hop_with_that_hops_span(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    requests: list[tuple[int, Any]] = []
    responses: list[tuple[int, Any]] = []

    def request_hook(span: Span, params: Any) -> None:
        requests.append((span_id(span), params))
        span.set_attribute("test.request_hook", len(requests))

    def response_hook(span: Span, params: Any) -> None:
        responses.append((span_id(span), params))
        span.set_attribute("test.response_hook", len(responses))

    session = make_session(request_hook=request_hook, response_hook=response_hook)
    assert await fetch(session, server.url("/redirect/2")) == (200, "ok")

    hops = telemetry.client_spans()
    assert len(hops) == 3
    hop_ids = [hop.context.span_id for hop in hops]
    assert [sid for sid, _ in requests] == hop_ids
    assert [sid for sid, _ in responses] == hop_ids
    assert [type(params) for _, params in requests] == [
        aiohttp.TraceRequestStartParams,
        aiohttp.tracing.TraceRequestHeadersSentParams,
        aiohttp.tracing.TraceRequestHeadersSentParams,
    ]
    # Every hop that ended with a response gets the end-params shape, as in the official
    # package, whose hooks know end and exception params only.
    assert [type(params) for _, params in responses] == [
        aiohttp.TraceRequestEndParams,
        aiohttp.TraceRequestEndParams,
        aiohttp.TraceRequestEndParams,
    ]
    assert [params.url.path for _, params in requests] == ["/redirect/2", "/redirect/1", "/ok"]
    assert [params.response.status for _, params in responses] == [302, 302, 200]
    assert [attrs(hop)["test.request_hook"] for hop in hops] == [1, 2, 3]
    assert [attrs(hop)["test.response_hook"] for hop in hops] == [1, 2, 3]


async def test_the_response_hook_sees_a_connection_error(
    make_session: SessionFactory, telemetry: Telemetry
) -> None:
    seen: list[tuple[int, Any]] = []

    def response_hook(span: Span, params: Any) -> None:
        seen.append((span_id(span), params))
        span.set_attribute("test.response_hook", type(params.exception).__name__)

    session = make_session(response_hook=response_hook)
    with pytest.raises(aiohttp.ClientConnectorError) as raised:
        await fetch(session, f"http://127.0.0.1:{closed_port()}/ok")

    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert len(seen) == 1
    sid, params = seen[0]
    assert sid == span.context.span_id
    assert isinstance(params, aiohttp.TraceRequestExceptionParams)
    assert params.exception is raised.value
    assert attrs(span)["test.response_hook"] == type(raised.value).__name__


# -- async hooks -------------------------------------------------------------------------------


async def test_an_async_request_hook_is_awaited(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    async def request_hook(span: Span, params: Any) -> None:
        await asyncio.sleep(0)
        span.set_attribute("test.async_request_hook", params.method)

    session = make_session(request_hook=request_hook)
    assert await fetch(session, server.url("/ok")) == (200, "ok")

    assert attrs(telemetry.only_span())["test.async_request_hook"] == "GET"


async def test_an_async_response_hook_can_read_the_body(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    async def response_hook(span: Span, params: Any) -> None:
        body = await params.response.read()
        span.set_attribute("test.body_length", len(body))

    session = make_session(response_hook=response_hook)
    async with session.get(server.url("/ok")) as response:
        assert response.status == 200
        assert await response.text() == "ok"

    span = telemetry.only_span()
    assert attrs(span)["test.body_length"] == len(b"ok")
    assert attrs(span)["http.response.status_code"] == 200


# -- trace_request_ctx -------------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_three_argument_hook_gets_the_callers_trace_request_ctx(
    is_async: bool, make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    seen: list[tuple[str, Any]] = []

    def record(kind: str, span: Span, ctx: Any) -> None:
        seen.append((kind, ctx))
        span.set_attribute(f"test.{kind}_tenant", ctx["tenant"])

    if is_async:

        async def request_hook(span: Span, params: Any, trace_request_ctx: Any) -> None:
            record("request", span, trace_request_ctx)

        async def response_hook(span: Span, params: Any, trace_request_ctx: Any) -> None:
            record("response", span, trace_request_ctx)

    else:

        def request_hook(span: Span, params: Any, trace_request_ctx: Any) -> None:
            record("request", span, trace_request_ctx)

        def response_hook(span: Span, params: Any, trace_request_ctx: Any) -> None:
            record("response", span, trace_request_ctx)

    session = make_session(request_hook=request_hook, response_hook=response_hook)
    mine = {"tenant": "acme", "nested": {"k": [1, 2]}}
    snapshot = {"tenant": "acme", "nested": {"k": [1, 2]}}

    async with session.get(server.url("/ok"), trace_request_ctx=mine) as response:
        assert await response.text() == "ok"

    assert [kind for kind, _ in seen] == ["request", "response"]
    assert all(ctx is mine for _, ctx in seen)
    assert mine == snapshot
    span = telemetry.only_span()
    assert attrs(span)["test.request_tenant"] == "acme"
    assert attrs(span)["test.response_tenant"] == "acme"


async def test_a_two_argument_hook_is_called_without_the_trace_request_ctx(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    seen: list[tuple[Any, ...]] = []

    def request_hook(span: Span, params: Any) -> None:
        seen.append((span, params))

    session = make_session(request_hook=request_hook)
    mine = {"tenant": "acme"}
    async with session.get(server.url("/ok"), trace_request_ctx=mine) as response:
        assert await response.text() == "ok"

    assert len(seen) == 1
    assert isinstance(seen[0][1], aiohttp.TraceRequestStartParams)
    assert span_id(seen[0][0]) == telemetry.only_span().context.span_id
    assert mine == {"tenant": "acme"}


# -- faults ------------------------------------------------------------------------------------


class HookFault(Exception):
    pass


def _raising_hook(is_async: bool) -> Any:
    if is_async:

        async def async_hook(span: Span, params: Any) -> None:
            await asyncio.sleep(0)
            raise HookFault("boom")

        return async_hook

    def sync_hook(span: Span, params: Any) -> None:
        raise HookFault("boom")

    return sync_hook


FAULTY_HOOKS = pytest.mark.parametrize(
    ("which", "is_async"),
    [
        ("request_hook", False),
        ("request_hook", True),
        ("response_hook", False),
        ("response_hook", True),
    ],
    ids=["sync-request", "async-request", "sync-response", "async-response"],
)


@FAULTY_HOOKS
async def test_a_raising_hook_never_breaks_the_request_and_is_logged_once(
    which: str,
    is_async: bool,
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    session = make_session(**{which: _raising_hook(is_async)})

    for _ in range(20):
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")

    # Every span that started ended (the ledger checks it at teardown) and was exported.
    assert telemetry.ledger.open_spans() == []
    spans = telemetry.client_spans()
    assert len(spans) == 20
    warnings = our_warnings(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].exc_info is not None
    assert warnings[0].exc_info[0] is HookFault


@FAULTY_HOOKS
async def test_tracing_goes_on_after_a_hook_fault(
    which: str,
    is_async: bool,
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    session = make_session(**{which: _raising_hook(is_async)})

    status, body = await fetch(session, http_server.url("/headers"))

    assert status == 200
    span = telemetry.only_span()
    assert attrs(span)["http.response.status_code"] == 200
    assert "traceparent" in {k.lower() for k in echoed_headers(body)}


async def test_a_raising_url_filter_never_breaks_the_request_and_is_logged_once(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")

    def url_filter(url: Any) -> str:
        raise HookFault("bad filter")

    session = make_session(url_filter=url_filter)
    for _ in range(20):
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")

    assert telemetry.ledger.open_spans() == []
    spans = telemetry.spans()
    # Untraced, or traced without the URL it could not build: never a half-open span.
    requests = telemetry.client_spans()
    assert len(requests) in (0, 20)
    if not requests:
        assert spans == []  # untraced means no phase span either
    assert all("url.full" not in attrs(span) for span in spans)
    warnings = our_warnings(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].exc_info is not None
    assert warnings[0].exc_info[0] is HookFault


# -- sampling ----------------------------------------------------------------------------------


async def test_a_sampled_out_request_exports_nothing_but_still_propagates(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hooked: list[bool] = []

    def request_hook(span: Span, params: Any) -> None:
        hooked.append(span.is_recording())

    session = make_session(tracer_provider=provider, request_hook=request_hook)

    status, body = await fetch(session, server.url("/headers"))

    assert status == 200
    assert exporter.get_finished_spans() == ()
    assert telemetry.spans() == []
    headers = {k.lower(): v for k, v in echoed_headers(body).items()}
    assert "traceparent" in headers
    trace_id, parent_id = parse_traceparent(headers["traceparent"])
    assert int(trace_id, 16) != 0
    assert int(parent_id, 16) != 0
    # The sampled bit is off; the SDK may set the random-trace-id bit (0x02) beside it.
    flags = int(headers["traceparent"].split("-")[3], 16)
    assert flags & 0x01 == 0
    assert flags & ~0x02 == 0
    assert all(recording is False for recording in hooked)
