"""Context propagation on the wire, suppression, and the ambient context around a request."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import (
    suppress_http_instrumentation,
    suppress_instrumentation,
)

from .conftest import (
    Server,
    SessionFactory,
    Telemetry,
    echoed_headers,
    fetch,
    parse_traceparent,
    span_ids,
)


async def test_the_traceparent_on_the_wire_is_the_client_span(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    _, body = await fetch(make_session(), server.url("/headers"))
    sent = echoed_headers(body)["traceparent"]
    assert parse_traceparent(sent) == span_ids(telemetry.only_span())
    assert sent.split("-")[3] in ("01", "03")  # sampled


async def test_baggage_travels_with_the_request(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        _, body = await fetch(make_session(), http_server.url("/headers"))
    finally:
        otel_context.detach(token)
    assert echoed_headers(body)["baggage"] == "tenant=acme"


@pytest.mark.parametrize("suppress", [suppress_http_instrumentation, suppress_instrumentation])
async def test_suppression_means_no_span_and_no_injected_headers(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry, suppress: object
) -> None:
    session = make_session()
    with suppress():  # type: ignore[operator]
        _, body = await fetch(session, http_server.url("/headers"))
    assert "traceparent" not in echoed_headers(body)
    assert telemetry.spans() == []
    assert telemetry.metric_points("http.client.request.duration") == []
    # The same session traces again once suppression is over.
    await fetch(session, http_server.url("/ok"))
    assert len(telemetry.spans()) == 1


async def test_the_span_is_a_child_of_the_callers_span(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    session = make_session()
    with tracer.start_as_current_span("caller") as caller:
        await fetch(session, http_server.url("/ok"))
        # After the request the caller's span is current again, not the request's.
        assert trace.get_current_span() is caller
        with tracer.start_as_current_span("after") as after:
            pass
    request = telemetry.client_spans()[0]
    assert request.parent is not None
    assert request.parent.span_id == caller.context.span_id
    assert request.context.trace_id == caller.context.trace_id
    assert after.parent is not None
    assert after.parent.span_id == caller.context.span_id


async def test_without_a_caller_span_the_request_is_a_root(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    await fetch(make_session(), http_server.url("/ok"))
    assert telemetry.only_span().parent is None


async def test_the_context_is_untouched_while_a_response_is_open(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    before = otel_context.get_current()
    async with make_session().get(http_server.url("/ok")) as response:
        assert otel_context.get_current() == before
        await response.read()
    assert otel_context.get_current() == before


async def test_concurrent_requests_each_have_their_own_span_under_the_caller(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    session = make_session(connector_kwargs={"limit": 3})
    with tracer.start_as_current_span("caller") as caller:
        results = await asyncio.gather(
            *(fetch(session, http_server.url("/headers")) for _ in range(20))
        )
    spans = telemetry.client_spans()
    assert len(spans) == 20
    assert {s.parent.span_id for s in spans if s.parent} == {caller.context.span_id}
    sent = {parse_traceparent(echoed_headers(body)["traceparent"]) for _, body in results}
    assert sent == {span_ids(s) for s in spans}
