"""With the OpenTelemetry API but no SDK, nothing is recorded and the request is barely
touched; a trace that came in still goes on, and an SDK configured later is picked up.

The global providers can be set once per process, so the "set later" cases run in a child
process of their own.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from typing import Any

import aiohttp
from opentelemetry import context as otel_context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider, Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from aiohttp_otel import create_trace_config

from .conftest import Server, echoed_headers, fetch

INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def _headers_seen(server: Server, **options: Any) -> dict[str, str]:
    async with aiohttp.ClientSession(trace_configs=[create_trace_config(**options)]) as session:
        status, body = await fetch(session, server.url("/headers"))
    assert status == 200
    return echoed_headers(body)


async def test_without_an_sdk_no_traceparent_is_invented(http_server: Server) -> None:
    seen = await _headers_seen(http_server)
    assert "traceparent" not in {name.lower() for name in seen}


async def test_without_an_sdk_an_incoming_trace_is_passed_on(http_server: Server) -> None:
    incoming = TraceContextTextMapPropagator().extract({"traceparent": INCOMING})
    token = otel_context.attach(incoming)
    try:
        seen = await _headers_seen(http_server)
    finally:
        otel_context.detach(token)
    # No span of ours exists to be the parent: the caller's context goes on unchanged.
    assert seen["traceparent"] == INCOMING


async def test_explicit_no_op_providers_record_nothing_and_redirect_hops_carry_the_trace(
    http_server: Server,
) -> None:
    incoming = TraceContextTextMapPropagator().extract({"traceparent": INCOMING})
    token = otel_context.attach(incoming)
    try:
        async with aiohttp.ClientSession(
            trace_configs=[
                create_trace_config(
                    tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()
                )
            ]
        ) as session:
            status, body = await fetch(session, http_server.url("/redirect-to?to=/headers"))
    finally:
        otel_context.detach(token)
    assert status == 200
    assert echoed_headers(body)["traceparent"] == INCOMING


async def test_hooks_still_see_every_hop_without_an_sdk(http_server: Server) -> None:
    seen: list[tuple[str, bool]] = []

    def request_hook(span: Span, params: Any) -> None:
        seen.append(("request", span.is_recording()))

    def response_hook(span: Span, params: Any) -> None:
        seen.append(("response", span.is_recording()))

    async with aiohttp.ClientSession(
        trace_configs=[create_trace_config(request_hook=request_hook, response_hook=response_hook)]
    ) as session:
        status, _ = await fetch(session, http_server.url("/ok"))
    assert status == 200
    assert seen == [("request", False), ("response", False)]


SDK_LATER = textwrap.dedent(
    """
    import asyncio, json, sys

    import aiohttp
    from aiohttp import web
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from aiohttp_otel import create_trace_config

    which = sys.argv[1]


    async def main():
        async def ok(request):
            return web.json_response({"traceparent": request.headers.get("traceparent")})

        app = web.Application()
        app.router.add_get("/", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = "http://127.0.0.1:%d/" % site._server.sockets[0].getsockname()[1]
        report = {}
        # Instrumented first, the way applications usually do it; the SDK comes later.
        async with aiohttp.ClientSession(trace_configs=[create_trace_config()]) as session:
            async with session.get(url) as response:
                report["before"] = (await response.json())["traceparent"]
            exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
            if which in ("traces", "both"):
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                trace.set_tracer_provider(provider)
            if which in ("metrics", "both"):
                metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
            async with session.get(url) as response:
                report["after"] = (await response.json())["traceparent"]
        await runner.cleanup()
        report["spans"] = [s.name for s in exporter.get_finished_spans()]
        data = reader.get_metrics_data()
        report["metrics"] = sorted(
            m.name
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
        )
        print(json.dumps(report))


    asyncio.run(main())
    """
)


async def _run_sdk_later(which: str, **env: str) -> dict[str, Any]:
    import json

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SDK_LATER,
        which,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            **os.environ,
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            **env,
        },
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


async def test_a_tracer_provider_set_after_instrumenting_is_picked_up() -> None:
    report = await _run_sdk_later("traces")
    assert report["before"] is None
    assert str(report["after"]).startswith("00-")
    assert report["spans"] == ["GET"]


async def test_a_meter_provider_set_after_instrumenting_is_picked_up() -> None:
    report = await _run_sdk_later("metrics")
    assert report["spans"] == []
    assert "http.client.request.duration" in report["metrics"]


async def test_a_tracer_provider_named_in_the_environment_records_from_the_first_request() -> None:
    """The API loads it on the first lookup: no provider is set in code, and none is missing."""
    report = await _run_sdk_later("none", OTEL_PYTHON_TRACER_PROVIDER="sdk_tracer_provider")
    assert str(report["before"]).startswith("00-")
    assert str(report["after"]).startswith("00-")
