"""Exceptions as log records (semconv): ``OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN``.

``logs``: a log record ``http.client.request.exception`` (severity WARN, ``exception.*``, the
attempt's trace and span ids) and no exception span event; ``logs/dup``: both; unset: the span
event only. The span keeps its ``error.type`` and status in every mode, and a cancellation is
no error, so it logs nothing.

The first part tests the logger against the real SDK ``LoggerProvider``; the second, end to end
against real servers, each failure path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags

from aiohttp_otel import AioHttpClientInstrumentor, create_trace_config
from aiohttp_otel._exception_logs import (
    ENV_EXCEPTION_SIGNAL,
    EVENT_NAME,
    EXCEPTION_SIGNAL_CHOICES,
    ExceptionLogger,
)
from aiohttp_otel._instrumentation import Instrumentation
from aiohttp_otel._options import parse_options

from .conftest import Server, SessionFactory, Telemetry, attrs, closed_port, fetch

try:  # the SDK renamed it; the old name stays as a deprecated alias
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as InMemoryLogs
except ImportError:  # pragma: no cover - an older SDK
    from opentelemetry.sdk._logs.export import InMemoryLogExporter as InMemoryLogs

TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass
class Logs:
    exporter: Any
    provider: LoggerProvider

    def records(self) -> list[Any]:
        return [data.log_record for data in self.exporter.get_finished_logs()]


@pytest.fixture
def logs() -> Iterator[Logs]:
    exporter = InMemoryLogs()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield Logs(exporter, provider)
    provider.shutdown()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_EXCEPTION_SIGNAL, raising=False)


def our_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiohttp_otel" and r.levelno == logging.WARNING
    ]


def event_name(record: Any) -> Any:
    """The record's event name, wherever this API version keeps it."""
    name = getattr(record, "event_name", None)
    return name if name is not None else dict(record.attributes or {}).get("event.name")


SPAN_CONTEXT = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=False,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
)


# -- the logger --------------------------------------------------------------------------------


def test_a_record_is_the_semconv_event(logs: Logs) -> None:
    logger = ExceptionLogger(logs.provider, "logs")
    failed_at = time.time_ns() - 5_000_000
    logger.emit(
        SPAN_CONTEXT,
        "aiohttp.client_exceptions.ClientConnectorError",
        "Cannot connect to host localhost:1",
        "Traceback (most recent call last): ...",
        failed_at,
    )
    [record] = logs.records()
    assert event_name(record) == EVENT_NAME == "http.client.request.exception"
    assert record.severity_number is SeverityNumber.WARN
    assert record.severity_text == "WARN"
    assert record.timestamp == failed_at
    assert record.trace_id == SPAN_CONTEXT.trace_id
    assert record.span_id == SPAN_CONTEXT.span_id
    assert int(record.trace_flags) == int(TraceFlags.SAMPLED)
    record_attrs = dict(record.attributes or {})
    assert record_attrs["exception.type"] == "aiohttp.client_exceptions.ClientConnectorError"
    assert record_attrs["exception.message"] == "Cannot connect to host localhost:1"
    assert record_attrs["exception.stacktrace"] == "Traceback (most recent call last): ..."
    [data] = logs.exporter.get_finished_logs()
    assert data.instrumentation_scope.name == "aiohttp_otel"


def test_an_unsampled_span_context_is_carried_as_it_is(logs: Logs) -> None:
    unsampled = SpanContext(
        trace_id=SPAN_CONTEXT.trace_id,
        span_id=SPAN_CONTEXT.span_id,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.DEFAULT),
    )
    ExceptionLogger(logs.provider, "logs/dup").emit(unsampled, "T", "m", "s", 1)
    [record] = logs.records()
    assert (record.trace_id, record.span_id) == (unsampled.trace_id, unsampled.span_id)
    assert int(record.trace_flags) == 0


def test_an_empty_message_or_stacktrace_is_left_out(logs: Logs) -> None:
    ExceptionLogger(logs.provider, "logs").emit(SPAN_CONTEXT, "builtins.TimeoutError", "", "", 1)
    [record] = logs.records()
    record_attrs = dict(record.attributes or {})
    assert record_attrs["exception.type"] == "builtins.TimeoutError"
    assert "exception.message" not in record_attrs
    assert "exception.stacktrace" not in record_attrs


def test_the_record_is_not_the_ambient_context(logs: Logs) -> None:
    """The ids come from the span context passed, not from whatever span is current."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("ambient") as ambient:
        ExceptionLogger(logs.provider, "logs").emit(SPAN_CONTEXT, "T", "m", "s", 1)
    [record] = logs.records()
    assert record.span_id == SPAN_CONTEXT.span_id != ambient.get_span_context().span_id


@pytest.mark.parametrize(
    ("mode", "spans", "logged"),
    [("span_events", True, False), ("logs", False, True), ("logs/dup", True, True)],
)
def test_each_mode_says_where_exceptions_go(
    logs: Logs, mode: str, spans: bool, logged: bool
) -> None:
    logger = ExceptionLogger(logs.provider, mode)
    assert logger.spans is spans
    assert logger.logs is logged
    logger.emit(SPAN_CONTEXT, "T", "m", "s", 1)
    assert len(logs.records()) == (1 if logged else 0)


def test_a_failing_logger_provider_is_reported_once_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")

    class Broken:
        def get_logger(self, *args: Any, **kwargs: Any) -> Any:
            return self

        def emit(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("exporter down")

    logger = ExceptionLogger(Broken(), "logs")
    for _ in range(3):
        logger.emit(SPAN_CONTEXT, "T", "m", "s", 1)
    warnings = our_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "logger provider" in warnings[0]


def test_a_logger_provider_that_cannot_make_a_logger_falls_back_to_span_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")

    class Broken:
        def get_logger(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("no logger")

    logger = ExceptionLogger(Broken(), "logs")
    assert logger.logs is False
    assert logger.spans is True  # the exception is still recorded somewhere
    logger.emit(SPAN_CONTEXT, "T", "m", "s", 1)
    [warning] = our_warnings(caplog)
    assert "logger provider" in warning


def test_without_a_logger_provider_the_global_one_is_used() -> None:
    # The API's proxy: records reach whatever provider is set later, none is set here.
    logger = ExceptionLogger(None, "logs")
    assert logger.logs is True
    logger.emit(SPAN_CONTEXT, "T", "m", "s", 1)  # no SDK configured: dropped, no error


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, "span_events"),
        ("", "span_events"),
        ("logs", "logs"),
        ("LOGS", "logs"),
        ("logs/dup", "logs/dup"),
        (" logs/dup ", "logs/dup"),
        ("logs,logs/dup", "logs/dup"),  # as for the stability variable, the dup wins
    ],
)
def test_the_exception_signal_comes_from_the_environment(env: str | None, expected: str) -> None:
    environ = {} if env is None else {ENV_EXCEPTION_SIGNAL: env}
    assert parse_options(environ=environ).exception_signal == expected


@pytest.mark.parametrize("mode", EXCEPTION_SIGNAL_CHOICES)
def test_the_keyword_wins_over_the_environment(mode: str) -> None:
    environ = {ENV_EXCEPTION_SIGNAL: "logs/dup" if mode != "logs/dup" else "logs"}
    assert parse_options(exception_signal=mode, environ=environ).exception_signal == mode


@pytest.mark.parametrize(
    ("env", "expected"), [("log", "span_events"), ("events", "span_events"), ("x,logs", "logs")]
)
def test_a_bad_environment_value_warns_naming_the_variable(
    caplog: pytest.LogCaptureFixture, env: str, expected: str
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    assert parse_options(environ={ENV_EXCEPTION_SIGNAL: env}).exception_signal == expected
    [warning] = our_warnings(caplog)
    for needle in (ENV_EXCEPTION_SIGNAL, repr(env), "logs, logs/dup", "unset"):
        assert needle in warning


def test_a_bad_keyword_warns_and_keeps_span_events(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    assert parse_options(exception_signal="both", environ={}).exception_signal == "span_events"
    [warning] = our_warnings(caplog)
    for needle in ("exception_signal", ENV_EXCEPTION_SIGNAL, "'both'", "span_events, logs"):
        assert needle in warning


def test_the_instrumentation_carries_the_logger(logs: Logs) -> None:
    inst = Instrumentation(parse_options(logger_provider=logs.provider, exception_signal="logs"))
    assert inst.exception_logs.logs is True
    assert inst.exception_logs.spans is False
    inst.exception_logs.emit(SPAN_CONTEXT, "T", "m", "s", 1)
    assert len(logs.records()) == 1
    default = Instrumentation(parse_options(environ={}))
    assert default.exception_logs.spans is True
    assert default.exception_logs.logs is False


def test_create_trace_config_and_instrument_take_the_keywords(
    logs: Logs, telemetry: Telemetry
) -> None:
    trace_config: Any = create_trace_config(
        logger_provider=logs.provider, exception_signal="logs/dup"
    )
    trace_config.instrumentation.exception_logs.emit(SPAN_CONTEXT, "T", "m", "s", 1)
    assert len(logs.records()) == 1

    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider,
        logger_provider=logs.provider,
        exception_signal="logs",
    )
    try:
        assert instrumentor._trace_config is not None
        exception_logs = instrumentor._trace_config.instrumentation.exception_logs
        assert (exception_logs.spans, exception_logs.logs) == (False, True)
        exception_logs.emit(SPAN_CONTEXT, "T", "m", "s", 2)
        assert [r.timestamp for r in logs.records()] == [1, 2]
    finally:
        instrumentor.uninstrument()


# -- end to end --------------------------------------------------------------------------------


def exception_events(span: Any) -> list[Any]:
    return [e for e in span.events if e.name == "exception"]


async def outcome(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> Any:
    try:
        return await fetch(session, url, **kwargs)
    except Exception as exc:
        return type(exc)


def assert_record_of(record: Any, span: Any) -> None:
    """The record belongs to the span's attempt and says what its error is."""
    assert event_name(record) == EVENT_NAME
    assert record.severity_number is SeverityNumber.WARN
    assert (record.trace_id, record.span_id) == (span.context.trace_id, span.context.span_id)
    assert int(record.trace_flags) == int(span.context.trace_flags)
    assert dict(record.attributes)["exception.type"] == attrs(span)["error.type"]
    assert dict(record.attributes).get("exception.stacktrace", "").startswith("Traceback")
    # Timed when the attempt failed: within the span.
    assert span.start_time <= record.timestamp <= span.end_time


def session_with(
    make_session: SessionFactory, logs: Logs, mode: str | None, **options: Any
) -> aiohttp.ClientSession:
    return make_session(
        session_kwargs={"timeout": TIMEOUT},
        logger_provider=logs.provider,
        exception_signal=mode,
        **options,
    )


async def test_by_default_an_exception_is_a_span_event_and_no_record(
    make_session: SessionFactory, telemetry: Telemetry, logs: Logs
) -> None:
    seen = await outcome(
        session_with(make_session, logs, None), f"http://127.0.0.1:{closed_port()}/"
    )
    assert issubclass(seen, aiohttp.ClientConnectorError)
    span = telemetry.only_span()
    assert len(exception_events(span)) == 1
    assert logs.records() == []


async def test_logs_mode_a_refused_connection_is_one_record_and_no_span_event(
    make_session: SessionFactory, telemetry: Telemetry, logs: Logs
) -> None:
    seen = await outcome(
        session_with(make_session, logs, "logs"), f"http://127.0.0.1:{closed_port()}/"
    )
    assert issubclass(seen, aiohttp.ClientConnectorError)
    span = telemetry.only_span()
    assert exception_events(span) == []
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == f"aiohttp.client_exceptions.{seen.__name__}"
    [record] = logs.records()
    assert_record_of(record, span)
    assert "Cannot connect to host" in dict(record.attributes)["exception.message"]


async def test_the_environment_variable_switches_to_logs(
    make_session: SessionFactory,
    telemetry: Telemetry,
    logs: Logs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_EXCEPTION_SIGNAL, "logs")
    await outcome(session_with(make_session, logs, None), f"http://127.0.0.1:{closed_port()}/")
    span = telemetry.only_span()
    assert exception_events(span) == []
    [record] = logs.records()
    assert_record_of(record, span)


async def test_logs_dup_mode_is_a_record_and_the_span_event(
    make_session: SessionFactory, telemetry: Telemetry, logs: Logs
) -> None:
    await outcome(
        session_with(make_session, logs, "logs/dup"), f"http://127.0.0.1:{closed_port()}/"
    )
    span = telemetry.only_span()
    [event] = exception_events(span)
    [record] = logs.records()
    assert_record_of(record, span)
    for key in ("exception.type", "exception.message", "exception.stacktrace"):
        assert dict(record.attributes)[key] == event.attributes[key]


@pytest.mark.parametrize("mode", ["logs", "logs/dup"])
async def test_a_timeout_is_logged(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    logs: Logs,
    mode: str,
) -> None:
    seen = await outcome(
        session_with(make_session, logs, mode),
        http_server.url("/slow?delay=2"),
        timeout=aiohttp.ClientTimeout(total=0.1),
    )
    assert issubclass(seen, asyncio.TimeoutError)
    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert len(exception_events(span)) == (0 if mode == "logs" else 1)
    [record] = logs.records()
    assert_record_of(record, span)


@contextlib.asynccontextmanager
async def truncating_server() -> AsyncIterator[str]:
    """Promises 10000 bytes, sends 100, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"z" * 100)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("mode", ["logs", "logs/dup"])
async def test_a_body_failure_is_logged(
    make_session: SessionFactory, telemetry: Telemetry, logs: Logs, mode: str
) -> None:
    async with truncating_server() as url:
        seen = await outcome(session_with(make_session, logs, mode), url)
    assert seen is aiohttp.ClientPayloadError
    span = telemetry.only_span()
    assert attrs(span)["http.response.status_code"] == 200
    assert attrs(span)["error.type"] == "aiohttp.client_exceptions.ClientPayloadError"
    assert len(exception_events(span)) == (0 if mode == "logs" else 1)
    [record] = logs.records()
    assert_record_of(record, span)


@pytest.mark.parametrize("mode", ["logs", "logs/dup"])
async def test_a_cancellation_logs_nothing(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    logs: Logs,
    mode: str,
) -> None:
    session = session_with(make_session, logs, mode)
    task = asyncio.create_task(fetch(session, http_server.url("/slow?delay=5")))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = telemetry.only_span()
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attrs(span)
    assert exception_events(span) == []
    assert logs.records() == []


@pytest.mark.parametrize("mode", ["logs", "logs/dup"])
async def test_an_http_error_status_logs_nothing(
    make_session: SessionFactory,
    http_server: Server,
    telemetry: Telemetry,
    logs: Logs,
    mode: str,
) -> None:
    status, _ = await fetch(session_with(make_session, logs, mode), http_server.url("/status/503"))
    assert status == 503
    assert attrs(telemetry.only_span())["error.type"] == "503"
    assert logs.records() == []


async def test_a_record_quoting_the_url_leaks_no_secret(
    make_session: SessionFactory, http_server: Server, telemetry: Telemetry, logs: Logs
) -> None:
    """aiohttp's TooManyRedirects quotes the request URL: the record is redacted as the span
    event is."""
    url = http_server.url("/loop?sig=s3cr3t&color=blue")
    with pytest.raises(aiohttp.TooManyRedirects):
        await fetch(session_with(make_session, logs, "logs"), url, max_redirects=2)
    last = telemetry.client_spans()[-1]
    [record] = logs.records()
    assert_record_of(record, last)
    record_attrs = dict(record.attributes)
    assert "s3cr3t" not in record_attrs["exception.message"]
    assert "s3cr3t" not in record_attrs["exception.stacktrace"]
    assert "sig=REDACTED" in record_attrs["exception.message"]
