"""Export the package's metrics with OTLP (HTTP/protobuf).

    python -m pip install -e . opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
    export OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://localhost:4318/v1/metrics
    python examples/otlp_metrics.py

A collector (or anything that speaks OTLP over HTTP) must listen at the endpoint; the default is
the collector's usual ``http://localhost:4318/v1/metrics``. The script starts its own HTTP server
on 127.0.0.1, makes a few requests through it (keep-alive, a new connection, a 404), and flushes
the metrics before it exits.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
from aiohttp import web
from opentelemetry import metrics
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

from aiohttp_otel import AioHttpClientInstrumentor

ENDPOINT = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://localhost:4318/v1/metrics")


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def main() -> None:
    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/hello", "/hello", "/missing"):
                async with session.get(f"http://localhost:{port}{path}") as response:
                    print(path, response.status, await response.text())
        fresh = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        async with fresh, fresh.get(f"http://localhost:{port}/hello") as response:
            print("/hello (new connection)", response.status)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=ENDPOINT), export_interval_millis=60_000
    )
    provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(provider)
    AioHttpClientInstrumentor().instrument()
    asyncio.run(main())
    provider.shutdown()  # exports what was recorded, then stops
    print("metrics sent to", ENDPOINT)
