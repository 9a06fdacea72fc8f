"""Trace one aiohttp session with ``create_trace_config`` and a TracerProvider of your own.

Nothing global is set: the provider goes to the trace config, so only this session is traced,
and whatever else the process does with OpenTelemetry is left alone. Run it::

    python -m pip install -e . opentelemetry-sdk  # in a clone: not on the package index yet
    python examples/manual_session.py

It prints the span tree of its requests. To send the spans to an OTLP endpoint as well (a
collector, Jaeger, Tempo), install an exporter and set the standard variables::

    python -m pip install opentelemetry-exporter-otlp
    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 python examples/manual_session.py
    OTEL_EXPORTER_OTLP_PROTOCOL=grpc OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 \\
        python examples/manual_session.py

The script starts its own HTTP server on 127.0.0.1 (a free port), so it needs no network. Its
requests: one on a new connection (with the body streamed in three chunks), one that reuses
that connection, a redirect and a 404.
"""

from __future__ import annotations

import asyncio
import os
import socket

import aiohttp
from aiohttp import web
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aiohttp_otel import create_trace_config

# -- where the spans go ------------------------------------------------------------------------


def otlp_exporter_from_environment() -> SpanExporter | None:
    """The OTLP exporter the standard variables ask for, or None when no endpoint is set."""
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        return None
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    # With no arguments the exporter reads the endpoint, headers, TLS and timeout from the
    # same OTEL_EXPORTER_OTLP_* variables.
    return OTLPSpanExporter()


def make_tracer_provider(printed: InMemorySpanExporter) -> TracerProvider:
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", "manual-session-example")}
    )
    provider = TracerProvider(resource=resource)
    # Kept in memory to print the tree at the end.
    provider.add_span_processor(SimpleSpanProcessor(printed))
    otlp = otlp_exporter_from_environment()
    if otlp is not None:
        provider.add_span_processor(BatchSpanProcessor(otlp))
        print(f"exporting spans with {type(otlp).__module__}.{type(otlp).__name__}")
    return provider


# -- a local server to call --------------------------------------------------------------------


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def download(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for i in range(3):
        if i:
            await asyncio.sleep(0.05)  # a slow body: the span ends when it is over
        await response.write(b"x" * 1000)
    await response.write_eof()
    return response


async def moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/hello")


async def start_server() -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/download", download)
    app.router.add_get("/moved", moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # port 0: the OS picks a free one
    await web.SockSite(runner, sock).start()
    return runner, sock.getsockname()[1]


# -- the requests ------------------------------------------------------------------------------


async def make_requests(provider: TracerProvider, port: int) -> None:
    trace_config = create_trace_config(
        tracer_provider=provider,
        # Options beyond the official package's; each has an OTEL_PYTHON_AIOHTTP_CLIENT_*
        # variable too (see docs/configuration.md).
        phases="spans",
        captured_response_headers=["content-type"],
    )
    base = f"http://localhost:{port}"
    async with aiohttp.ClientSession(trace_configs=[trace_config]) as session:
        async with session.get(f"{base}/download") as response:
            size = 0
            async for chunk in response.content.iter_chunked(1000):
                size += len(chunk)
            print(f"GET /download -> {response.status}, {size} bytes")
        for path in ("/hello", "/moved", "/missing"):
            async with session.get(base + path) as response:
                print(f"GET {path} -> {response.status} {await response.text()!r}")


def print_tree(spans: tuple[ReadableSpan, ...]) -> None:
    """Each span under its parent, with its duration and what a trace view would show."""
    spans = tuple(sorted(spans, key=lambda span: span.start_time or 0))
    ids = {span.context.span_id for span in spans}

    def show(span: ReadableSpan, depth: int) -> None:
        attributes = span.attributes or {}
        duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        label = f"{span.name} {attributes.get('url.full', '')}".strip()
        notes = []
        if "http.response.status_code" in attributes:
            notes.append(f"HTTP {attributes['http.response.status_code']!s}")
        if not span.status.is_ok:
            notes.append(f"error.type={attributes.get('error.type')!s}")
        chunks = [event for event in span.events if event.name.endswith("chunk_received")]
        if chunks:
            notes.append(f"{len(chunks)} body chunk events")
        if span.name == "HTTP connection_setup":
            notes.append(f"span {span.context.span_id:016x}")
        for link in span.links:
            notes.append(f"reused the connection of span {link.context.span_id:016x}")
        line = f"{'  ' * depth}{label:<{60 - 2 * depth}} {duration_ms:7.1f} ms  {', '.join(notes)}"
        print(line.rstrip())
        for child in spans:
            if child.parent is not None and child.parent.span_id == span.context.span_id:
                show(child, depth + 1)

    for span in spans:
        if span.parent is None or span.parent.span_id not in ids:
            show(span, 0)


async def main() -> None:
    printed = InMemorySpanExporter()
    provider = make_tracer_provider(printed)
    runner, port = await start_server()
    try:
        await make_requests(provider, port)
    finally:
        await runner.cleanup()
        # Sends what the batch processor still holds, then stops the exporters.
        provider.shutdown()
    print()
    print_tree(printed.get_finished_spans())


if __name__ == "__main__":
    asyncio.run(main())
