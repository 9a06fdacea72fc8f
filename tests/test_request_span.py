"""The CLIENT span of one request: name, kind, attributes at start and at the response."""

from __future__ import annotations

from opentelemetry.trace import SpanKind, StatusCode

from .conftest import Server, SessionFactory, Telemetry, attrs, fetch


async def test_get_makes_one_client_span_with_the_stable_attributes(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    assert await fetch(session, server.url("/ok")) == (200, "ok")

    span = telemetry.only_span()
    assert span.name == "GET"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert attrs(span) == {
        "http.request.method": "GET",
        "url.full": server.url("/ok"),
        "url.scheme": server.scheme,
        "server.address": "localhost",
        "server.port": server.port,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
        "network.peer.address": "127.0.0.1",
        "network.peer.port": server.port,
        "http.response.body.size": 2,
    }
