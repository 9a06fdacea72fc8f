"""The aiohttp TraceConfig: a table of signals, each handler a translation into one step.

Handlers never raise into the user's request. A fault in our code or in the SDK is logged once
and the request goes on untraced; a hook's fault is logged once and tracing goes on.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from opentelemetry._logs import LoggerProvider
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ._diagnostics import report_fault
from ._hooks import settle
from ._instrumentation import Instrumentation
from ._options import parse_options
from ._request import RequestTrace

_Step = Callable[[RequestTrace, aiohttp.ClientSession, Any], "Awaitable[Any] | None"]

#: Which step of the request state machine each aiohttp signal drives.
SIGNALS: tuple[tuple[str, _Step], ...] = (
    ("on_request_start", RequestTrace.start),
    ("on_connection_queued_start", RequestTrace.queued_start),
    ("on_connection_queued_end", RequestTrace.queued_end),
    ("on_connection_create_start", RequestTrace.create_start),
    ("on_connection_create_end", RequestTrace.create_end),
    ("on_dns_resolvehost_start", RequestTrace.dns_start),
    ("on_dns_resolvehost_end", RequestTrace.dns_end),
    ("on_dns_cache_hit", RequestTrace.dns_cache_hit),
    ("on_request_headers_sent", RequestTrace.headers_sent),
    ("on_request_chunk_sent", RequestTrace.chunk_sent),
    ("on_request_redirect", RequestTrace.redirect),
    ("on_request_end", RequestTrace.end),
    ("on_request_exception", RequestTrace.exception),
)


def _handler(step: _Step) -> Callable[[aiohttp.ClientSession, RequestTrace, Any], Awaitable[None]]:
    name = step.__name__

    async def handle(session: aiohttp.ClientSession, request: RequestTrace, params: Any) -> None:
        try:
            pending = step(request, session, params)
        except Exception as exc:
            report_fault(f"handler {name}", exc)
            request.abandon()
            return
        if pending is not None:
            await settle(pending)

    handle.__name__ = handle.__qualname__ = f"_on_{name}"
    return handle


_HANDLERS = tuple((signal, _handler(step)) for signal, step in SIGNALS)

#: Signals that only the connection phases need: with ``phases="off"`` nothing listens to them,
#: and aiohttp does not call a handler that has nothing to do.
PHASES_ONLY = frozenset({"on_connection_create_end", "on_dns_cache_hit"})


class OtelTraceConfig(aiohttp.TraceConfig):
    """An :class:`aiohttp.TraceConfig` that traces requests with OpenTelemetry."""

    def __init__(self, instrumentation: Instrumentation) -> None:
        super().__init__(
            trace_config_ctx_factory=functools.partial(RequestTrace, instrumentation)  # type: ignore[arg-type]
        )
        self.instrumentation = instrumentation
        phases = instrumentation.phase_recorder is not None
        for signal, handler in _HANDLERS:
            if phases or signal not in PHASES_ONLY:
                getattr(self, signal).append(handler)


def create_trace_config(
    url_filter: Callable[[Any], str] | None = None,
    request_hook: Callable[..., Any] | None = None,
    response_hook: Callable[..., Any] | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    sem_conv_opt_in_mode: Any = None,
    captured_request_headers: Sequence[str] | str | None = None,
    captured_response_headers: Sequence[str] | str | None = None,
    sensitive_headers: Sequence[str] | str | None = None,
    *,
    sensitive_query_params: Sequence[str] | str | None = None,
    excluded_urls: Sequence[str] | str | None = None,
    known_methods: Sequence[str] | str | None = None,
    phases: str | None = None,
    chunk_events: bool | str | None = None,
    max_chunk_events: int | str | None = None,
    span_end: str | None = None,
    body_size_metrics: bool | str | None = None,
    capture_request_body: bool | int | str | None = None,
    capture_response_body: bool | int | str | None = None,
    body_filter: Callable[[str, str | bytes, Any], str | bytes | None] | None = None,
    logger_provider: LoggerProvider | None = None,
    exception_signal: str | None = None,
) -> aiohttp.TraceConfig:
    """Create a TraceConfig that traces every request of the sessions it is given to.

    The first nine keywords are those of `opentelemetry-instrumentation-aiohttp-client`, in
    the same order; the others are keyword-only. An option left at `None` is read from its
    environment variable, once, here, and a bad value is logged once and replaced by the
    default: it never raises. An unknown keyword raises `TypeError`, as for any function.

    ```python
    import aiohttp
    from aiohttp_otel import create_trace_config

    trace_config = create_trace_config(captured_response_headers=["content-type"])
    async with aiohttp.ClientSession(trace_configs=[trace_config]) as session:
        async with session.get("http://localhost:8080/") as response:
            await response.text()
    ```

    :param url_filter: `(yarl.URL) -> str`, run on the request URL to build `url.full`
        before redaction; the request itself is unchanged. Example:
        `url_filter=lambda url: str(url.with_query(None))`.
    :param request_hook: `(span, params)`, or `(span, params, trace_request_ctx)` for a hook
        with three positional parameters; sync or async. Called when the first hop's span
        starts (`aiohttp.TraceRequestStartParams`), and for each later hop when its headers are
        sent (`TraceRequestHeadersSentParams`). Example:
        `request_hook=lambda span, params: span.set_attribute("app.path", params.url.path)`.
    :param response_hook: the same shapes, called before each hop's span ends: with
        `aiohttp.TraceRequestRedirectParams`, `aiohttp.TraceRequestEndParams` or
        `aiohttp.TraceRequestExceptionParams`. Example:
        `response_hook=lambda span, params: span.set_attribute("app.ok", True)`.
    :param tracer_provider: where the spans go; default: the global tracer provider.
        Example: `tracer_provider=TracerProvider()`.
    :param meter_provider: where the metrics go; default: the global meter provider.
        Example: `meter_provider=MeterProvider(metric_readers=[reader])`.
    :param sem_conv_opt_in_mode: `"http"` (the stable conventions, the default) or
        `"http/dup"` (stable plus the pre-1.21 names); default from
        `OTEL_SEMCONV_STABILITY_OPT_IN`. Example: `sem_conv_opt_in_mode="http/dup"`.
    :param captured_request_headers: header names or case-insensitive patterns, matched
        against the whole name, to record as `http.request.header.<name>`; default: none,
        or `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST`. Example:
        `captured_request_headers=["content-type", "x-.*"]`.
    :param captured_response_headers: the same for `http.response.header.<name>`; default:
        none, or `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE`. Example:
        `captured_response_headers="content-type,etag"`.
    :param sensitive_headers: patterns whose captured values become `[REDACTED]`. Replaces
        [`DEFAULT_SENSITIVE_HEADERS`][aiohttp_otel.DEFAULT_SENSITIVE_HEADERS]; default from
        `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS`. Example:
        `sensitive_headers=[*DEFAULT_SENSITIVE_HEADERS, "x-api-key"]`.
    :param sensitive_query_params: query keys whose values become `REDACTED` in `url.full`,
        matched exactly. Replaces
        [`DEFAULT_SENSITIVE_QUERY_PARAMS`][aiohttp_otel.DEFAULT_SENSITIVE_QUERY_PARAMS]; default
        from `OTEL_PYTHON_AIOHTTP_CLIENT_SENSITIVE_QUERY_PARAMS`. Example:
        `sensitive_query_params=[*DEFAULT_SENSITIVE_QUERY_PARAMS, "token"]`.
    :param excluded_urls: regular expressions searched in the URL; a match means no span, no
        metric and no injected headers. Default: none, or
        `OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS`, then `OTEL_PYTHON_EXCLUDED_URLS`. Example:
        `excluded_urls=["/healthz$"]`.
    :param known_methods: methods recorded as they are; any other is `_OTHER` and the span is
        named `HTTP`. Replaces the default (the RFC 9110 methods, `PATCH`, `QUERY`); default
        from `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`. Example:
        `known_methods=["GET", "POST", "PURGE"]`.
    :param phases: `"spans"` (the default): the connection phases as INTERNAL child spans;
        `"events"`: the same data as events on the one CLIENT span; `"off"`: no phases.
        Default from `OTEL_PYTHON_AIOHTTP_CLIENT_PHASES`. Example: `phases="events"`.
    :param chunk_events: record body chunks as span events; default `True`, or
        `OTEL_PYTHON_AIOHTTP_CLIENT_CHUNK_EVENTS`. Example: `chunk_events=False`.
    :param max_chunk_events: at most this many chunk events per direction per span (0 or
        more); the body sizes are counted past the cap. Default `64`, or
        `OTEL_PYTHON_AIOHTTP_CLIENT_MAX_CHUNK_EVENTS`. Example: `max_chunk_events=16`.
    :param span_end: `"body"` (the default): the CLIENT span ends when the response body is
        over; `"headers"`: when the response headers arrive, as in the official package.
        Default from `OTEL_PYTHON_AIOHTTP_CLIENT_SPAN_END`. Example: `span_end="headers"`.
    :param body_size_metrics: also record the `http.client.request.body.size` and
        `http.client.response.body.size` histograms (the span always carries the sizes).
        Off by default: each costs about as much as the duration histogram, on every request.
        Default `False`, or `OTEL_PYTHON_AIOHTTP_CLIENT_BODY_SIZE_METRICS`. Example:
        `body_size_metrics=True`.
    :param capture_request_body: record the request body as sent, in
        `http.request.body.content`: `False` (the default), `True` (the first 4096 bytes) or
        a cap in bytes. A `str` for textual Content-Types, cut on a character boundary;
        `bytes` otherwise. Default from `OTEL_PYTHON_AIOHTTP_CLIENT_CAPTURE_REQUEST_BODY`
        (`true`, `false` or a number). Example: `capture_request_body=1024`.
    :param capture_response_body: the same for the response body as received (decoded, when
        it came compressed), in `http.response.body.content`; what the caller reads is
        unchanged. Default from `OTEL_PYTHON_AIOHTTP_CLIENT_CAPTURE_RESPONSE_BODY`. Example:
        `capture_response_body=True`.
    :param body_filter: `(direction, content, headers) -> content | None`, run on each
        captured body before it is recorded: `direction` is `"request"` or `"response"`,
        `content` the `str` or `bytes` value, `headers` that body's headers. Return the value
        to record, or `None` to record none; if it raises, nothing is recorded. Example:
        `body_filter=lambda direction, content, headers: None if direction == "request" else
        content`.
    :param logger_provider: where exception log records go (see `exception_signal`);
        default: the global logger provider. Example: `logger_provider=LoggerProvider()`.
    :param exception_signal: how a failed request's exception is recorded: `"span_events"`
        (the default): an `exception` event on its span; `"logs"`: a log record
        `http.client.request.exception` instead; `"logs/dup"`: both. Default from
        `OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN` (`logs` or `logs/dup`). Example:
        `exception_signal="logs"`.
    :returns: a new `aiohttp.TraceConfig`, for `aiohttp.ClientSession(trace_configs=[...])`.
    """
    options = parse_options(
        url_filter=url_filter,
        request_hook=request_hook,
        response_hook=response_hook,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        sem_conv_opt_in_mode=sem_conv_opt_in_mode,
        captured_request_headers=captured_request_headers,
        captured_response_headers=captured_response_headers,
        sensitive_headers=sensitive_headers,
        sensitive_query_params=sensitive_query_params,
        excluded_urls=excluded_urls,
        known_methods=known_methods,
        phases=phases,
        chunk_events=chunk_events,
        max_chunk_events=max_chunk_events,
        span_end=span_end,
        body_size_metrics=body_size_metrics,
        capture_request_body=capture_request_body,
        capture_response_body=capture_response_body,
        body_filter=body_filter,
        logger_provider=logger_provider,
        exception_signal=exception_signal,
    )
    return OtelTraceConfig(Instrumentation(options))
