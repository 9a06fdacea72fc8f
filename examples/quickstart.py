"""Trace one aiohttp request and print its span.

Needs only this package and the OpenTelemetry SDK::

    python -m pip install -e . opentelemetry-sdk
    python examples/quickstart.py

It also runs under the zero-code agent; the agent's own exporter then prints the span::

    python -m pip install opentelemetry-distro
    opentelemetry-instrument --traces_exporter console --metrics_exporter none \\
        --logs_exporter none python examples/quickstart.py

The script starts its own HTTP server on 127.0.0.1 (a free port), so it needs no network.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from aiohttp_otel import create_trace_config


def configure_tracing() -> None:
    """Print spans on the console, unless an SDK is set up already (opentelemetry-instrument)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


async def hello(request: web.Request) -> web.Response:
    # Echo the propagated context, to show that the request carried its span's traceparent.
    return web.json_response(
        {"hello": request.query.get("name", "world"), "traceparent": request.headers["traceparent"]}
    )


async def main() -> None:
    configure_tracing()

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # port 0: the OS picks a free one
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()

    try:
        # Under opentelemetry-instrument every session is traced already; passing our
        # TraceConfig as well is harmless: a session keeps one of ours, never two.
        async with (
            aiohttp.ClientSession(trace_configs=[create_trace_config()]) as session,
            session.get(f"http://localhost:{port}/hello?name=aiohttp-otel") as response,
        ):
            print(f"HTTP {response.status}: {await response.text()}")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
