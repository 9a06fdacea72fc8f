"""Options: keyword or environment, read once; a bad value warns once and falls back."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from .conftest import Server, SessionFactory, Telemetry, attrs, echoed_headers, fetch

ENV_EXCLUDED = "OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS"
ENV_EXCLUDED_GENERIC = "OTEL_PYTHON_EXCLUDED_URLS"
ENV_KNOWN_METHODS = "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS"
ENV_CAPTURE_REQUEST = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST"
ENV_SANITIZE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"
ENV_SENSITIVE_QUERY = "OTEL_PYTHON_AIOHTTP_CLIENT_SENSITIVE_QUERY_PARAMS"

DURATION = "http.client.request.duration"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests own the environment variables they read."""
    for var in (
        ENV_EXCLUDED,
        ENV_EXCLUDED_GENERIC,
        ENV_KNOWN_METHODS,
        ENV_CAPTURE_REQUEST,
        ENV_SANITIZE,
        ENV_SENSITIVE_QUERY,
        "OTEL_SEMCONV_STABILITY_OPT_IN",
    ):
        monkeypatch.delenv(var, raising=False)


def our_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiohttp_otel" and r.levelno == logging.WARNING
    ]


def all_metric_points(telemetry: Telemetry) -> list[tuple[str, Any]]:
    data = telemetry.metric_reader.get_metrics_data()
    if data is None:
        return []
    return [
        (metric.name, point)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for point in metric.data.data_points
    ]


# -- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "must_mention"),
    [
        pytest.param(
            {"captured_request_headers": 123},
            ["captured_request_headers", "list of strings", "comma-separated string", "123"],
            id="captured_request_headers-not-a-list",
        ),
        pytest.param(
            {"captured_response_headers": [b"x-answer"]},
            ["captured_response_headers", "list of strings"],
            id="captured_response_headers-bytes-entry",
        ),
        pytest.param(
            {"captured_request_headers": ["("]},
            [
                "captured_request_headers",
                ENV_CAPTURE_REQUEST,
                "'('",
                "not a valid regular expression",
            ],
            id="captured_request_headers-bad-regex",
        ),
        pytest.param(
            {"sensitive_headers": ["[x"]},
            ["sensitive_headers", ENV_SANITIZE, "'[x'", "not a valid regular expression"],
            id="sensitive_headers-bad-regex",
        ),
        pytest.param(
            {"request_hook": "not callable"},
            ["request_hook", "callable", "'not callable'"],
            id="request_hook-not-callable",
        ),
        pytest.param(
            {"response_hook": 42},
            ["response_hook", "callable", "42"],
            id="response_hook-not-callable",
        ),
        pytest.param(
            {"url_filter": "x"},
            ["url_filter", "callable"],
            id="url_filter-not-callable",
        ),
        pytest.param(
            {"sem_conv_opt_in_mode": "bogus"},
            ["sem_conv_opt_in_mode", "'bogus'", "'http'", "'http/dup'"],
            id="sem_conv_opt_in_mode-unknown",
        ),
        pytest.param(
            {"excluded_urls": ["("]},
            ["excluded_urls", ENV_EXCLUDED, ENV_EXCLUDED_GENERIC, "'('", "regular expression"],
            id="excluded_urls-bad-regex",
        ),
        pytest.param(
            {"known_methods": 7},
            ["known_methods", "list of strings"],
            id="known_methods-not-a-list",
        ),
        pytest.param(
            {"phases": "sometimes"},
            ["phases", "'sometimes'", "spans, events, off", "'spans'"],
            id="phases-unknown",
        ),
        pytest.param(
            {"span_end": "later"},
            ["span_end", "'later'", "body, headers", "'body'"],
            id="span_end-unknown",
        ),
        pytest.param(
            {"chunk_events": "maybe"},
            ["chunk_events", "'maybe'", "true or false", "True"],
            id="chunk_events-not-a-flag",
        ),
    ],
)
async def test_a_bad_keyword_warns_once_and_the_request_is_traced_with_the_default(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, Any],
    must_mention: list[str],
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    # Two trace configs and three requests: still one warning per process.
    sessions = [make_session(**options), make_session(**options)]
    for session in (*sessions, sessions[0]):
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")

    messages = our_warnings(caplog)
    assert len(messages) == 1, messages
    for text in must_mention:
        assert text in messages[0]
    spans = telemetry.client_spans()
    assert [s.name for s in spans] == ["GET", "GET", "GET"]
    # The default configuration: the stable attributes, nothing captured.
    assert attrs(spans[0]) == {
        "http.request.method": "GET",
        "url.full": http_server.url("/ok"),
        "url.scheme": "http",
        "server.address": "localhost",
        "server.port": http_server.port,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
        "network.peer.address": "127.0.0.1",
        "network.peer.port": http_server.port,
        "http.response.body.size": 2,
    }


async def test_a_bad_header_pattern_is_dropped_and_the_others_are_kept(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    session = make_session(captured_request_headers=["(", "x-custom"])
    await fetch(session, http_server.url("/ok"), headers={"X-Custom": "v"})

    assert len(our_warnings(caplog)) == 1
    assert list(attrs(telemetry.only_span())["http.request.header.x-custom"]) == ["v"]


async def test_a_bad_regex_in_the_env_var_warns_with_the_variable_and_keeps_the_rest(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    monkeypatch.setenv(ENV_EXCLUDED, "(,/status/.*")
    session = make_session()
    await fetch(session, http_server.url("/status/200"))
    await fetch(session, http_server.url("/ok"))

    messages = our_warnings(caplog)
    assert len(messages) == 1, messages
    assert ENV_EXCLUDED in messages[0]
    assert "'('" in messages[0]
    assert "regular expression" in messages[0]
    assert [attrs(s)["url.full"] for s in telemetry.client_spans()] == [http_server.url("/ok")]


async def test_a_bad_regex_in_the_capture_env_var_names_the_variable(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    monkeypatch.setenv(ENV_CAPTURE_REQUEST, "x-custom,(")
    session = make_session()
    await fetch(session, http_server.url("/ok"), headers={"X-Custom": "v"})

    messages = our_warnings(caplog)
    assert len(messages) == 1, messages
    assert ENV_CAPTURE_REQUEST in messages[0]
    assert list(attrs(telemetry.only_span())["http.request.header.x-custom"]) == ["v"]


async def test_good_options_log_nothing(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp_otel")
    session = make_session(
        captured_request_headers="x-a,x-b",
        excluded_urls=["healthz"],
        known_methods=("GET",),
        sem_conv_opt_in_mode="http/dup",
        request_hook=lambda span, params: None,
    )
    await fetch(session, http_server.url("/ok"))

    assert [r for r in caplog.records if r.name.startswith("aiohttp_otel")] == []
    assert len(telemetry.client_spans()) == 1


# -- read once -------------------------------------------------------------------------------


async def test_env_vars_are_read_when_the_trace_config_is_built(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_EXCLUDED, "/status/")
    monkeypatch.setenv(ENV_SENSITIVE_QUERY, "color")
    built_before = make_session()
    # Changing the environment afterwards does not touch that trace config...
    monkeypatch.setenv(ENV_EXCLUDED, "/ok")
    monkeypatch.delenv(ENV_SENSITIVE_QUERY)
    await fetch(built_before, http_server.url("/status/200"))
    await fetch(built_before, http_server.url("/ok?color=blue&sig=s"))

    assert [attrs(s)["url.full"] for s in telemetry.client_spans()] == [
        http_server.url("/ok?color=REDACTED&sig=s")
    ]
    telemetry.exporter.clear()

    # ...while a trace config built now sees the new values.
    built_after = make_session()
    await fetch(built_after, http_server.url("/status/200"))
    await fetch(built_after, http_server.url("/ok?color=blue&sig=s"))
    assert [attrs(s)["url.full"] for s in telemetry.client_spans()] == [
        http_server.url("/status/200")
    ]


# -- known methods ---------------------------------------------------------------------------


async def test_an_unknown_method_is_other_by_default(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    assert await fetch(session, http_server.url("/ok"), "PROPFIND") == (200, "ok")

    span = telemetry.only_span()
    assert span.name == "HTTP"
    assert attrs(span)["http.request.method"] == "_OTHER"
    assert attrs(span)["http.request.method_original"] == "PROPFIND"
    [point] = telemetry.metric_points(DURATION)
    assert point.attributes["http.request.method"] == "_OTHER"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
async def test_standard_methods_are_known_by_default(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry, method: str
) -> None:
    session = make_session()
    await fetch(session, http_server.url("/ok"), method)

    span = telemetry.only_span()
    assert span.name == method
    assert attrs(span)["http.request.method"] == method
    assert "http.request.method_original" not in attrs(span)


async def _methods_seen(session: Any, server: Server, telemetry: Telemetry) -> list[Any]:
    # The loopback server's parser may answer an invented method with 400: only the span matters.
    for method in ("GET", "FOO", "POST"):
        await fetch(session, server.url("/ok"), method)
    return [
        (
            s.name,
            attrs(s)["http.request.method"],
            attrs(s).get("http.request.method_original"),
        )
        for s in telemetry.client_spans()
    ]


KNOWN_GET_FOO = [
    ("GET", "GET", None),
    ("FOO", "FOO", None),
    ("HTTP", "_OTHER", "POST"),
]


async def test_known_methods_env_var_is_a_full_override(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_KNOWN_METHODS, "GET,FOO")
    session = make_session()
    assert await _methods_seen(session, http_server, telemetry) == KNOWN_GET_FOO
    methods = sorted(p.attributes["http.request.method"] for p in telemetry.metric_points(DURATION))
    assert methods == ["FOO", "GET", "_OTHER"]


async def test_known_methods_keyword_is_a_full_override(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(known_methods=["GET", "FOO"])
    assert await _methods_seen(session, http_server, telemetry) == KNOWN_GET_FOO


async def test_known_methods_keyword_wins_over_the_env_var(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_KNOWN_METHODS, "POST")
    session = make_session(known_methods="GET, FOO")
    assert await _methods_seen(session, http_server, telemetry) == KNOWN_GET_FOO


async def test_an_empty_known_methods_env_var_is_the_same_as_unset(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # OTel configuration spec: an empty value is interpreted exactly like an unset variable.
    monkeypatch.setenv(ENV_KNOWN_METHODS, "")
    session = make_session()
    await fetch(session, http_server.url("/ok"), "POST")

    span = telemetry.only_span()
    assert span.name == "POST"
    assert attrs(span)["http.request.method"] == "POST"


# -- excluded URLs ---------------------------------------------------------------------------


async def test_excluded_urls_env_var_means_no_span_no_metric_no_header(
    make_session: SessionFactory,
    server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_EXCLUDED, "/status/.*,healthz")
    session = make_session()
    assert await fetch(session, server.url("/status/200")) == (200, "status 200")
    assert await fetch(session, server.url("/status/503")) == (503, "status 503")
    status, body = await fetch(session, server.url("/headers?healthz=1"))
    assert status == 200

    assert "traceparent" not in {k.lower() for k in echoed_headers(body)}
    assert telemetry.spans() == []
    assert all_metric_points(telemetry) == []

    assert await fetch(session, server.url("/ok")) == (200, "ok")
    [span] = telemetry.spans()
    assert attrs(span)["url.full"] == server.url("/ok")
    # The traced request reused a connection that untraced requests opened: no connection,
    # DNS or queue metric, only the request's own.
    assert sorted(name for name, _ in all_metric_points(telemetry)) == [
        "http.client.active_requests",
        DURATION,
    ]


async def test_excluded_urls_keyword(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session(excluded_urls=["/headers"])
    _, body = await fetch(session, http_server.url("/headers"))
    await fetch(session, http_server.url("/ok"))

    assert "traceparent" not in echoed_headers(body)
    assert [attrs(s)["url.full"] for s in telemetry.spans()] == [http_server.url("/ok")]


async def test_excluded_urls_keyword_wins_over_the_env_vars(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_EXCLUDED, "/ok")
    monkeypatch.setenv(ENV_EXCLUDED_GENERIC, "/ok")
    session = make_session(excluded_urls="/status/")
    await fetch(session, http_server.url("/status/200"))
    await fetch(session, http_server.url("/ok"))

    assert [attrs(s)["url.full"] for s in telemetry.spans()] == [http_server.url("/ok")]


@pytest.mark.parametrize("variable", [ENV_EXCLUDED, ENV_EXCLUDED_GENERIC])
async def test_an_explicit_empty_excluded_urls_wins_over_the_env_vars(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    """``excluded_urls=[]`` means "exclude nothing", not "not given"."""
    monkeypatch.setenv(variable, "/ok")
    session = make_session(excluded_urls=[])
    await fetch(session, http_server.url("/ok"))

    assert [attrs(s)["url.full"] for s in telemetry.client_spans()] == [http_server.url("/ok")]


async def test_generic_excluded_urls_is_the_fallback(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_EXCLUDED_GENERIC, "/status/.*")
    session = make_session()
    await fetch(session, http_server.url("/status/200"))
    _, body = await fetch(session, http_server.url("/headers"))

    assert "traceparent" in echoed_headers(body)
    assert [attrs(s)["url.full"] for s in telemetry.spans()] == [http_server.url("/headers")]


async def test_the_aiohttp_specific_excluded_urls_wins_over_the_generic_one(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_EXCLUDED, "/headers")
    monkeypatch.setenv(ENV_EXCLUDED_GENERIC, "/status/.*")
    session = make_session()
    await fetch(session, http_server.url("/status/200"))
    _, body = await fetch(session, http_server.url("/headers"))

    assert "traceparent" not in echoed_headers(body)
    [client] = telemetry.client_spans()
    assert attrs(client)["url.full"] == http_server.url("/status/200")
    # The excluded request made no span at all: the phase spans here are the traced one's.
    assert {s.context.trace_id for s in telemetry.spans()} == {client.context.trace_id}


async def test_an_empty_aiohttp_excluded_urls_falls_back_to_the_generic_one(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An empty variable is an unset one (OTel configuration spec), so the fallback applies.
    monkeypatch.setenv(ENV_EXCLUDED, "")
    monkeypatch.setenv(ENV_EXCLUDED_GENERIC, "/status/.*")
    session = make_session()
    await fetch(session, http_server.url("/status/200"))
    await fetch(session, http_server.url("/ok"))

    assert [attrs(s)["url.full"] for s in telemetry.spans()] == [http_server.url("/ok")]


# -- empty env var = unset, where it matters for secrets ------------------------------------


async def test_an_empty_sensitive_query_params_env_var_keeps_the_default_redaction(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_SENSITIVE_QUERY, "")
    session = make_session()
    await fetch(session, http_server.url("/ok?X-Amz-Signature=abc&sig=xyz"))

    assert attrs(telemetry.only_span())["url.full"] == http_server.url(
        "/ok?X-Amz-Signature=REDACTED&sig=REDACTED"
    )


async def test_an_empty_sanitize_fields_env_var_keeps_the_default_header_redaction(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_SANITIZE, "")
    session = make_session(captured_request_headers=["authorization"])
    await fetch(session, http_server.url("/ok"), headers={"Authorization": "Bearer tok3n"})

    assert list(attrs(telemetry.only_span())["http.request.header.authorization"]) == ["[REDACTED]"]
