"""Captured request and response headers: opt-in, case-insensitive, secrets redacted."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from multidict import CIMultiDict
from opentelemetry.sdk.trace import ReadableSpan

from .conftest import (
    Server,
    SessionFactory,
    Telemetry,
    attrs,
    echoed_headers,
    fetch,
    span_ids,
)

REQ = "http.request.header."
RESP = "http.response.header."

ENV_REQUEST = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST"
ENV_RESPONSE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE"
ENV_SANITIZE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"

SECRET_REQUEST_HEADERS = {
    "Authorization": "Bearer tok3n",
    "Cookie": "session=s3cret",
    "Proxy-Authorization": "Basic cHJveHk6cHc=",
}


def header_attrs(span: ReadableSpan) -> dict[str, list[str]]:
    """The captured-header attributes, values as lists (the SDK stores sequences as tuples)."""
    return {k: list(v) for k, v in attrs(span).items() if k.startswith((REQ, RESP))}


def traceparent_of(span: ReadableSpan) -> str:
    trace_id, span_id = span_ids(span)
    return f"00-{trace_id}-{span_id}-{int(span.context.trace_flags):02x}"


async def test_nothing_is_captured_by_default(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    await fetch(session, server.url("/cookie"), headers={"X-Custom": "v", **SECRET_REQUEST_HEADERS})

    assert header_attrs(telemetry.only_span()) == {}


async def test_captured_request_headers_by_name_and_pattern(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    session = make_session(captured_request_headers=["x-custom", "content-.*"])
    await fetch(session, server.url("/ok"), "POST", data=b"abc", headers={"X-Custom": "v"})

    assert header_attrs(telemetry.only_span()) == {
        f"{REQ}x-custom": ["v"],
        f"{REQ}content-length": ["3"],
        f"{REQ}content-type": ["application/octet-stream"],
    }


async def test_a_repeated_request_header_gives_every_value(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(captured_request_headers=["x-custom"])
    headers = CIMultiDict([("X-Custom", "a"), ("X-Custom", "b"), ("X-Other", "c")])
    await fetch(session, http_server.url("/ok"), headers=headers)

    assert header_attrs(telemetry.only_span()) == {f"{REQ}x-custom": ["a", "b"]}


async def test_header_names_match_case_insensitively_and_are_recorded_lower_case(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(
        captured_request_headers=["X-CUSTOM", "x-Mixed-.*"],
        captured_response_headers=["X-ANSWER", "Content-Type"],
    )
    await fetch(
        session, http_server.url("/status/201"), headers={"x-cUsToM": "v", "X-MIXED-case": "w"}
    )

    assert header_attrs(telemetry.only_span()) == {
        f"{REQ}x-custom": ["v"],
        f"{REQ}x-mixed-case": ["w"],
        f"{RESP}x-answer": ["201"],
        f"{RESP}content-type": ["text/plain; charset=utf-8"],
    }


async def test_a_pattern_must_match_the_whole_header_name(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(captured_request_headers=["custom", "x-cust"])
    await fetch(session, http_server.url("/ok"), headers={"X-Custom": "v"})

    assert header_attrs(telemetry.only_span()) == {}


async def test_captured_response_headers(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    session = make_session(captured_response_headers=["x-answer", "content-type"])
    assert await fetch(session, server.url("/status/201")) == (201, "status 201")

    assert header_attrs(telemetry.only_span()) == {
        f"{RESP}x-answer": ["201"],
        f"{RESP}content-type": ["text/plain; charset=utf-8"],
    }


async def test_sensitive_headers_are_redacted_by_default_even_under_dot_star(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    session = make_session(captured_request_headers=[".*"], captured_response_headers=[".*"])
    await fetch(session, server.url("/cookie"), headers={"X-Custom": "v", **SECRET_REQUEST_HEADERS})

    span = telemetry.only_span()
    span_attributes = header_attrs(span)
    assert sorted(span_attributes) == sorted(
        [f"{REQ}{name}" for name in ("host", "accept", "accept-encoding", "user-agent")]
        + [f"{REQ}{name}" for name in ("x-custom", "traceparent")]
        + [f"{REQ}{name}" for name in ("authorization", "cookie", "proxy-authorization")]
        + [f"{RESP}{name}" for name in ("content-type", "content-length", "date", "server")]
        + [f"{RESP}{name}" for name in ("set-cookie", "www-authenticate")]
    )
    assert span_attributes[f"{REQ}authorization"] == ["[REDACTED]"]
    assert span_attributes[f"{REQ}cookie"] == ["[REDACTED]"]
    assert span_attributes[f"{REQ}proxy-authorization"] == ["[REDACTED]"]
    assert span_attributes[f"{REQ}x-custom"] == ["v"]
    assert span_attributes[f"{REQ}traceparent"] == [traceparent_of(span)]
    assert span_attributes[f"{REQ}host"] == [f"localhost:{server.port}"]
    assert span_attributes[f"{RESP}set-cookie"] == ["[REDACTED]"]
    assert span_attributes[f"{RESP}www-authenticate"] == ["[REDACTED]"]
    assert span_attributes[f"{RESP}content-type"] == ["text/plain; charset=utf-8"]
    assert span_attributes[f"{RESP}content-length"] == ["6"]
    for secret in ("tok3n", "s3cret", "cHJveHk6cHc=", "realm"):
        assert secret not in repr(span_attributes)


async def test_every_value_of_a_sensitive_header_is_redacted(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(captured_request_headers=["authorization"])
    headers = CIMultiDict([("Authorization", "a"), ("Authorization", "b")])
    await fetch(session, http_server.url("/ok"), headers=headers)

    assert header_attrs(telemetry.only_span()) == {
        f"{REQ}authorization": ["[REDACTED]", "[REDACTED]"]
    }


async def test_sensitive_headers_keyword_replaces_the_default_list(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    # Override semantics: the keyword is the whole list, so the defaults (authorization,
    # set-cookie, ...) are no longer redacted unless they are listed again.
    session = make_session(
        captured_request_headers=[".*"],
        captured_response_headers=[".*"],
        sensitive_headers=["x-secret"],
    )
    await fetch(
        session,
        http_server.url("/cookie"),
        headers={"X-Secret": "hidden", "Authorization": "Bearer tok3n"},
    )

    span_attributes = header_attrs(telemetry.only_span())
    assert span_attributes[f"{REQ}x-secret"] == ["[REDACTED]"]
    assert span_attributes[f"{REQ}authorization"] == ["Bearer tok3n"]
    assert span_attributes[f"{RESP}set-cookie"] == ["session=s3cret; Path=/"]
    assert span_attributes[f"{RESP}www-authenticate"] == ["Basic realm=x"]


async def test_sensitive_headers_are_patterns(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(captured_request_headers=["x-.*"], sensitive_headers=["x-api-.*"])
    await fetch(session, http_server.url("/ok"), headers={"X-Api-Key": "k", "X-Plain": "p"})

    assert header_attrs(telemetry.only_span()) == {
        f"{REQ}x-api-key": ["[REDACTED]"],
        f"{REQ}x-plain": ["p"],
    }


async def test_env_vars_capture_headers_like_the_keywords(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_REQUEST, "x-custom, content-.*")
    monkeypatch.setenv(ENV_RESPONSE, "x-answer,content-type")
    session = make_session()
    await fetch(
        session, http_server.url("/status/201"), "POST", data=b"abc", headers={"X-Custom": "v"}
    )

    assert header_attrs(telemetry.only_span()) == {
        f"{REQ}x-custom": ["v"],
        f"{REQ}content-length": ["3"],
        f"{REQ}content-type": ["application/octet-stream"],
        f"{RESP}x-answer": ["201"],
        f"{RESP}content-type": ["text/plain; charset=utf-8"],
    }


async def test_env_var_sanitize_fields_replaces_the_default_list(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_REQUEST, "x-secret,authorization")
    monkeypatch.setenv(ENV_RESPONSE, "set-cookie")
    monkeypatch.setenv(ENV_SANITIZE, "x-secret")
    session = make_session()
    await fetch(
        session,
        http_server.url("/cookie"),
        headers={"X-Secret": "hidden", "Authorization": "Bearer tok3n"},
    )

    assert header_attrs(telemetry.only_span()) == {
        f"{REQ}x-secret": ["[REDACTED]"],
        f"{REQ}authorization": ["Bearer tok3n"],
        f"{RESP}set-cookie": ["session=s3cret; Path=/"],
    }


async def test_keywords_win_over_env_vars(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_REQUEST, "x-custom")
    monkeypatch.setenv(ENV_RESPONSE, "x-answer")
    monkeypatch.setenv(ENV_SANITIZE, "x-other")
    session = make_session(
        captured_request_headers=["x-other", "x-api-key"],
        captured_response_headers=["content-type"],
        sensitive_headers=["x-api-key"],
    )
    await fetch(
        session,
        http_server.url("/status/201"),
        headers={"X-Custom": "v", "X-Other": "o", "X-Api-Key": "k"},
    )

    assert header_attrs(telemetry.only_span()) == {
        f"{REQ}x-other": ["o"],
        f"{REQ}x-api-key": ["[REDACTED]"],
        f"{RESP}content-type": ["text/plain; charset=utf-8"],
    }


async def test_the_injected_traceparent_is_captured_as_sent(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    session = make_session(captured_request_headers=[".*"])
    _, body = await fetch(session, server.url("/headers"))

    span = telemetry.only_span()
    traceparent = traceparent_of(span)
    assert header_attrs(span)[f"{REQ}traceparent"] == [traceparent]
    assert echoed_headers(body)["traceparent"] == traceparent


async def test_request_headers_are_captured_per_hop(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(captured_request_headers=["traceparent", "host"])
    _, body = await fetch(session, http_server.url("/redirect-to?to=/headers"))

    hops = telemetry.client_spans()
    assert len(hops) == 2
    first, second = (header_attrs(hop) for hop in hops)
    assert first == {
        f"{REQ}traceparent": [traceparent_of(hops[0])],
        f"{REQ}host": [f"localhost:{http_server.port}"],
    }
    assert second == {
        f"{REQ}traceparent": [traceparent_of(hops[1])],
        f"{REQ}host": [f"localhost:{http_server.port}"],
    }
    assert traceparent_of(hops[0]) != traceparent_of(hops[1])
    assert echoed_headers(body)["traceparent"] == traceparent_of(hops[1])


async def test_a_captured_location_header_is_redacted_like_url_full(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    """A redirect's Location may carry a signed URL: captured, its secrets are redacted."""
    target = "/ok?X-Amz-Signature=s3cr3t&color=blue"
    url = http_server.url(f"/redirect-to?to={quote(target, safe='')}")
    session = make_session(captured_response_headers=["location"])
    assert await fetch(session, url) == (200, "ok")
    first = telemetry.client_spans()[0]
    assert attrs(first)["http.response.header.location"] == (
        "/ok?X-Amz-Signature=REDACTED&color=blue",
    )
