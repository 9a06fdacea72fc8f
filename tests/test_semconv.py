"""OTEL_SEMCONV_STABILITY_OPT_IN: stable HTTP names by default, plus the old ones with http/dup."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from .conftest import Server, SessionFactory, Telemetry, attrs, fetch, requires


def official_dup_member() -> Any:
    """The official package's ``_StabilityMode.HTTP_DUP`` (opentelemetry-instrumentation
    0.51b0 and later; older ones have no such member)."""
    from opentelemetry.instrumentation import _semconv

    stability_mode = getattr(_semconv, "_StabilityMode", None)
    return getattr(stability_mode, "HTTP_DUP", "missing")


ENV_SEMCONV = "OTEL_SEMCONV_STABILITY_OPT_IN"
DURATION = "http.client.request.duration"
OLD_DURATION = "http.client.duration"

#: Names the pre-1.21 HTTP client duration metric may carry (the official package's list, plus
#: the 1.20 network names). A stable-only name there splits the old series in two.
OLD_METRIC_NAMES = {
    "http.method",
    "http.status_code",
    "http.host",
    "http.scheme",
    "http.flavor",
    "net.peer.name",
    "net.peer.port",
    "net.protocol.name",
    "net.protocol.version",
}
REQUIRED_OLD = ("http.method", "http.status_code", "net.peer.name", "net.peer.port")


@pytest.fixture(autouse=True)
def _no_semconv_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_SEMCONV, raising=False)


def stable_attributes(server: Server, path: str = "/ok", body_size: int = 2) -> dict[str, Any]:
    """The CLIENT span's attributes for a GET of ``path``; the ``/ok`` body is ``ok``."""
    return {
        "http.request.method": "GET",
        "url.full": server.url(path),
        "url.scheme": server.scheme,
        "server.address": "localhost",
        "server.port": server.port,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
        "network.peer.address": "127.0.0.1",
        "network.peer.port": server.port,
        "http.response.body.size": body_size,
    }


def dup_attributes(server: Server, path: str = "/ok", body_size: int = 2) -> dict[str, Any]:
    return {
        **stable_attributes(server, path, body_size),
        "http.method": "GET",
        "http.url": server.url(path),
        "http.status_code": 200,
        # The official package emits the Host too.
        "http.host": "localhost",
        "net.peer.name": "localhost",
        "net.peer.port": server.port,
    }


def metric_units(telemetry: Telemetry) -> dict[str, str]:
    data = telemetry.metric_reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric.unit
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name in (DURATION, OLD_DURATION)
    }


def span_duration_ns(span: ReadableSpan) -> int:
    assert span.start_time is not None
    assert span.end_time is not None
    return span.end_time - span.start_time


# -- span attributes -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "http", "database", "", "http/dupe"])
async def test_stable_names_only_unless_http_dup(
    make_session: SessionFactory,
    server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
) -> None:
    if value is not None:
        monkeypatch.setenv(ENV_SEMCONV, value)
    session = make_session()
    await fetch(session, server.url("/ok"))

    assert attrs(telemetry.only_span()) == stable_attributes(server)


@pytest.mark.parametrize(
    "value", ["http/dup", "database,http/dup", " database , http/dup ", "http,http/dup"]
)
async def test_http_dup_adds_the_old_names(
    make_session: SessionFactory,
    server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
) -> None:
    monkeypatch.setenv(ENV_SEMCONV, value)
    session = make_session()
    await fetch(session, server.url("/ok"))

    assert attrs(telemetry.only_span()) == dup_attributes(server)


async def test_http_dup_old_url_is_redacted_like_url_full(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_SEMCONV, "http/dup")
    session = make_session()
    url = f"http://u:p@localhost:{http_server.port}/ok?sig=xyz&a=1"
    await fetch(session, url)

    span_attributes = attrs(telemetry.only_span())
    expected = f"http://REDACTED:REDACTED@localhost:{http_server.port}/ok?sig=REDACTED&a=1"
    assert span_attributes["url.full"] == expected
    assert span_attributes["http.url"] == expected


async def test_http_dup_on_an_error_status(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_SEMCONV, "http/dup")
    session = make_session()
    await fetch(session, http_server.url("/status/404"))

    assert attrs(telemetry.only_span()) == {
        **dup_attributes(http_server, "/status/404", body_size=len("status 404")),
        "http.response.status_code": 404,
        "http.status_code": 404,
        "error.type": "404",
    }


@pytest.mark.parametrize(
    "mode",
    [
        "http/dup",
        pytest.param(
            official_dup_member(),
            marks=requires("opentelemetry-instrumentation", "0.51b0"),
            id="_StabilityMode.HTTP_DUP",
        ),
    ],
)
async def test_the_keyword_selects_dup_mode(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry, mode: Any
) -> None:
    # The official package's own enum member is accepted, for a drop-in migration.
    session = make_session(sem_conv_opt_in_mode=mode)
    await fetch(session, http_server.url("/ok"))

    assert attrs(telemetry.only_span()) == dup_attributes(http_server)


async def test_the_keyword_wins_over_the_env_var(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_SEMCONV, "http/dup")
    session = make_session(sem_conv_opt_in_mode="http")
    await fetch(session, http_server.url("/ok"))

    assert attrs(telemetry.only_span()) == stable_attributes(http_server)
    assert OLD_DURATION not in metric_units(telemetry)


# -- metrics ---------------------------------------------------------------------------------


async def test_stable_duration_metric(
    make_session: SessionFactory, server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    await fetch(session, server.url("/ok"))

    span = telemetry.only_span()
    [point] = telemetry.metric_points(DURATION)
    assert dict(point.attributes) == {
        "http.request.method": "GET",
        "server.address": "localhost",
        "server.port": server.port,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    assert point.count == 1
    assert point.sum == pytest.approx(span_duration_ns(span) / 1e9, abs=1e-9)
    assert metric_units(telemetry) == {DURATION: "s"}
    assert telemetry.metric_points(OLD_DURATION) == []


async def test_stable_duration_metric_on_an_error_status(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    await fetch(session, http_server.url("/status/404"))

    span = telemetry.only_span()
    [point] = telemetry.metric_points(DURATION)
    assert dict(point.attributes) == {
        "http.request.method": "GET",
        "server.address": "localhost",
        "server.port": http_server.port,
        "http.response.status_code": 404,
        "network.protocol.version": "1.1",
        "error.type": "404",
    }
    assert point.count == 1
    assert point.sum == pytest.approx(span_duration_ns(span) / 1e9, abs=1e-9)


# The bucket advice (explicit_bucket_boundaries_advisory) is in the API from 1.30 on.
@requires("opentelemetry-api", "1.30")
async def test_stable_duration_metric_uses_the_semconv_buckets(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry
) -> None:
    session = make_session()
    await fetch(session, http_server.url("/ok"))

    [point] = telemetry.metric_points(DURATION)
    assert tuple(point.explicit_bounds) == (
        0.005,
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.25,
        0.5,
        0.75,
        1,
        2.5,
        5,
        7.5,
        10,
    )


async def test_http_dup_records_both_duration_metrics(
    make_session: SessionFactory,
    server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_SEMCONV, "database,http/dup")
    session = make_session()
    await fetch(session, server.url("/ok"))

    span = telemetry.only_span()
    assert metric_units(telemetry) == {DURATION: "s", OLD_DURATION: "ms"}

    [stable] = telemetry.metric_points(DURATION)
    assert dict(stable.attributes) == {
        "http.request.method": "GET",
        "server.address": "localhost",
        "server.port": server.port,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    assert stable.count == 1
    assert stable.sum == pytest.approx(span_duration_ns(span) / 1e9, abs=1e-9)

    [old] = telemetry.metric_points(OLD_DURATION)
    assert old.count == 1
    assert old.sum == pytest.approx(span_duration_ns(span) / 1e6, abs=1e-6)
    old_attributes = dict(old.attributes)
    assert {k: old_attributes.get(k) for k in REQUIRED_OLD} == {
        "http.method": "GET",
        "http.status_code": 200,
        "net.peer.name": "localhost",
        "net.peer.port": server.port,
    }
    # Old names only: no stable name may leak into the old series...
    assert sorted(set(old_attributes) - OLD_METRIC_NAMES) == []
    # ...and the optional old names, when present, carry the right values.
    optional = {
        "http.host": "localhost",
        "http.scheme": server.scheme,
        "http.flavor": "1.1",
        "net.protocol.name": "http",
        "net.protocol.version": "1.1",
    }
    assert {k: v for k, v in old_attributes.items() if k not in REQUIRED_OLD} == {
        k: optional[k] for k in old_attributes if k not in REQUIRED_OLD
    }


async def test_http_dup_old_duration_metric_on_an_error_status(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_SEMCONV, "http/dup")
    session = make_session()
    await fetch(session, http_server.url("/status/404"))

    [stable] = telemetry.metric_points(DURATION)
    assert stable.attributes["error.type"] == "404"
    [old] = telemetry.metric_points(OLD_DURATION)
    old_attributes = dict(old.attributes)
    assert old_attributes["http.status_code"] == 404
    # error.type is a stable name: the old series is keyed by http.status_code alone.
    assert sorted(set(old_attributes) - OLD_METRIC_NAMES) == []
