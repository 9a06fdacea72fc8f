"""A production setup: sampled traces, batched export, one span per request, a clean shutdown.

    python -m pip install -e . opentelemetry-sdk opentelemetry-exporter-otlp  # in a clone
    OTEL_SERVICE_NAME=checkout OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \\
        python examples/production.py --orders 200

Every choice is explained where it is made below:

- a ``ParentBased(TraceIdRatioBased(ratio))`` sampler, the ratio from ``OTEL_TRACES_SAMPLER_ARG``
  (default 0.25);
- a ``BatchSpanProcessor``, so exporting never happens on the request path;
- ``phases="events"``: one span per request, the connection phases as events on it;
- metrics for every request, sampled or not;
- on SIGTERM or Ctrl-C the orders in flight finish, then the last spans and metrics are flushed.

The OTLP exporter follows the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` for port 4317, headers, TLS). With no endpoint set, the
spans are printed one line each instead, so the example runs anywhere. It starts its own HTTP
server on 127.0.0.1 (a free port) and processes ``--orders`` orders against it, each an
inventory lookup and a payment, eight at a time; ``--orders 0`` runs until stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket

import aiohttp
from aiohttp import web
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from aiohttp_otel import AioHttpClientInstrumentor

CONCURRENCY = 8
POOL_SIZE = 4  # fewer connections than orders in flight: requests queue for one


# -- telemetry ---------------------------------------------------------------------------------


def otlp_configured() -> bool:
    return any(
        os.environ.get(name)
        for name in (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        )
    )


def otlp_grpc() -> bool:
    return os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "grpc"


def sampling_ratio() -> float:
    try:
        return min(max(float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "0.25")), 0.0), 1.0)
    except ValueError:
        return 0.25


def one_line(span: ReadableSpan) -> str:
    duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    url = (span.attributes or {}).get("url.full")
    target = f" {url}" if url else ""
    return (
        f"trace {span.context.trace_id:032x} {span.name}{target} {duration_ms:.1f} ms, "
        f"{len(span.events)} events\n"
    )


def span_exporter() -> SpanExporter:
    if not otlp_configured():
        return ConsoleSpanExporter(formatter=one_line)
    if otlp_grpc():
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return OTLPSpanExporter()  # endpoint, headers, TLS and timeout from OTEL_EXPORTER_OTLP_*


def metric_readers() -> list[MetricReader]:
    if not otlp_configured():
        return []
    if otlp_grpc():
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
    return [PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=60_000)]


def configure_telemetry() -> tuple[TracerProvider, MeterProvider]:
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", "production-example")}
    )
    # TraceIdRatioBased decides from the trace id alone, so every service using the same
    # ratio keeps the same traces. ParentBased makes a span follow its parent's decision:
    # a trace is kept or dropped whole, never with holes, and an upstream caller that chose
    # to trace a request gets our spans too.
    sampler = ParentBased(TraceIdRatioBased(sampling_ratio()))
    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    # A background thread exports, so a slow or unreachable collector never delays a request.
    # When the queue is full new spans are dropped: memory stays bounded if the collector
    # is down. The values are the SDK's defaults, spelled out to be tuned.
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            span_exporter(),
            max_queue_size=2048,
            schedule_delay_millis=5000,
            max_export_batch_size=512,
            export_timeout_millis=30_000,
        )
    )
    trace.set_tracer_provider(tracer_provider)
    # Metrics are not sampled: the duration histogram counts every request, so rates and
    # percentiles stay exact whatever the sampling ratio.
    meter_provider = MeterProvider(metric_readers=metric_readers(), resource=resource)
    metrics.set_meter_provider(meter_provider)

    AioHttpClientInstrumentor().instrument(
        # One span per request: the wait for a pooled connection, DNS, connect and TLS are
        # events on it. A third of the spans to store, and the timings are all still there.
        phases="events",
        # A large download must not grow the span by hundreds of events; the body's total
        # size is recorded in full whatever the cap.
        max_chunk_events=8,
        # Health checks are noise: no span and no metric for them.
        excluded_urls="/healthz",
    )
    return tracer_provider, meter_provider


# -- a local server standing in for the services this one calls ---------------------------------


async def inventory(request: web.Request) -> web.Response:
    return web.json_response({"item": request.query["item"], "in_stock": 3})


async def payment(request: web.Request) -> web.Response:
    order = await request.json()
    await asyncio.sleep(0.01)  # a payment provider takes its time
    return web.json_response({"order": order["order"], "paid": True}, status=201)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def start_server() -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/inventory", inventory)
    app.router.add_post("/payment", payment)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # port 0: the OS picks a free one
    await web.SockSite(runner, sock).start()
    return runner, f"http://localhost:{sock.getsockname()[1]}"


# -- the workload ------------------------------------------------------------------------------


async def process_order(session: aiohttp.ClientSession, base: str, order: int) -> bool:
    """One order: its own trace, sampled or not as a whole. Returns whether it was sampled."""
    tracer = trace.get_tracer("production-example")
    with tracer.start_as_current_span("process order", attributes={"order.id": order}) as span:
        async with session.get(f"{base}/inventory", params={"item": f"sku-{order % 7}"}) as r:
            await r.json()
        async with session.post(f"{base}/payment", json={"order": order}) as r:
            await r.json()
        return span.get_span_context().trace_flags.sampled


async def run(orders: int, stop: asyncio.Event) -> tuple[int, int]:
    runner, base = await start_server()
    processed = sampled = 0
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_SIZE)
        ) as session:
            async with session.get(f"{base}/healthz") as response:
                print(f"downstream at {base}: {await response.text()}", flush=True)
            print("processing orders; Ctrl-C or SIGTERM to stop", flush=True)
            while not stop.is_set() and (orders == 0 or processed < orders):
                batch = CONCURRENCY if orders == 0 else min(CONCURRENCY, orders - processed)
                # Orders already started run to the end: a stop never leaves half an order.
                results = await asyncio.gather(
                    *(process_order(session, base, processed + i) for i in range(batch))
                )
                processed += batch
                sampled += sum(results)
    finally:
        await runner.cleanup()
    return processed, sampled


async def main(orders: int) -> tuple[int, int]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Without a handler SIGTERM kills the process before the exporters flush.
        with contextlib.suppress(NotImplementedError):  # no add_signal_handler on Windows
            loop.add_signal_handler(signum, stop.set)
    return await run(orders, stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=40, help="0: until stopped (default: 40)")
    arguments = parser.parse_args()

    tracer_provider, meter_provider = configure_telemetry()
    try:
        processed, sampled = asyncio.run(main(arguments.orders))
        print(f"processed {processed} orders; {sampled} traced at ratio {sampling_ratio()}")
    finally:
        # Exports what is still queued (bounded by the export timeout), then stops the
        # exporters. Skipping this loses up to the last five seconds of spans.
        tracer_provider.shutdown()
        meter_provider.shutdown()
        print("telemetry flushed", flush=True)
