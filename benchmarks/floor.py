"""The floor: the least any aiohttp client instrumentation can do and still be one.

One CLIENT span with the five required attributes, its ``traceparent`` injected, the status
code set, and one ``http.client.request.duration`` measurement: three signal handlers and no
other work. A failed request gets a fourth: its span ends with ``error.type`` and an error
status, and the measurement carries ``error.type`` (no exception event). It has no redirect,
phase, body, redaction or fault handling, so it is not something to use; it is the benchmark's
reference for what the OpenTelemetry API and SDK cost by themselves, to tell that cost apart
from an instrumentation's own.
"""

from __future__ import annotations

from time import time_ns
from typing import Any

import aiohttp
from opentelemetry import metrics, trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode


def floor_trace_config(
    tracer_provider: Any = None, meter_provider: Any = None
) -> aiohttp.TraceConfig:
    tracer = trace.get_tracer("floor", tracer_provider=tracer_provider)
    duration = metrics.get_meter("floor", meter_provider=meter_provider).create_histogram(
        "http.client.request.duration", unit="s"
    )
    config = aiohttp.TraceConfig()

    async def start(_session: Any, ctx: Any, params: Any) -> None:
        url = params.url
        ctx.start = time_ns()
        ctx.span = tracer.start_span(
            params.method,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": params.method,
                "url.full": str(url),
                "server.address": url.host,
                "server.port": url.port,
                "url.scheme": url.scheme,
            },
        )

    async def headers_sent(_session: Any, ctx: Any, params: Any) -> None:
        inject(params.headers, context=trace.set_span_in_context(ctx.span))

    async def end(_session: Any, ctx: Any, params: Any) -> None:
        status = params.response.status
        ctx.span.set_attribute("http.response.status_code", status)
        ctx.span.end()
        url = params.url
        duration.record(
            (time_ns() - ctx.start) / 1e9,
            {
                "http.request.method": params.method,
                "server.address": url.host,
                "server.port": url.port,
                "url.scheme": url.scheme,
                "http.response.status_code": status,
            },
        )

    async def exception(_session: Any, ctx: Any, params: Any) -> None:
        cls = type(params.exception)
        error_type = f"{cls.__module__}.{cls.__qualname__}"
        ctx.span.set_attribute("error.type", error_type)
        ctx.span.set_status(Status(StatusCode.ERROR))
        ctx.span.end()
        url = params.url
        duration.record(
            (time_ns() - ctx.start) / 1e9,
            {
                "http.request.method": params.method,
                "server.address": url.host,
                "server.port": url.port,
                "url.scheme": url.scheme,
                "error.type": error_type,
            },
        )

    config.on_request_start.append(start)
    config.on_request_headers_sent.append(headers_sent)
    config.on_request_end.append(end)
    config.on_request_exception.append(exception)
    return config
