"""The examples run as users run them, against loopback only."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from .conftest import serve

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def run_example(name: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / name),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


async def test_quickstart_prints_the_client_span() -> None:
    code, out = await run_example("quickstart.py")
    assert code == 0, out
    assert '"kind": "SpanKind.CLIENT"' in out
    assert '"http.request.method": "GET"' in out
    assert '"http.response.status_code": 200' in out


@pytest.fixture
async def otlp_receiver() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback OTLP/HTTP endpoint that keeps every metrics request it gets."""
    received: list[bytes] = []

    async def metrics(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/metrics", metrics)
    async with serve(app) as server:
        yield f"http://127.0.0.1:{server.port}/v1/metrics", received


async def test_otlp_metrics_example_delivers_the_metrics(
    otlp_receiver: tuple[str, list[bytes]],
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    endpoint, received = otlp_receiver
    code, out = await run_example(
        "otlp_metrics.py", {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": endpoint}
    )
    assert code == 0, out
    assert received, "nothing arrived at the OTLP receiver"
    names: dict[str, int] = {}
    for body in received:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                if scope_metrics.scope.name != "aiohttp_otel":
                    continue
                for metric in scope_metrics.metrics:
                    if metric.HasField("histogram"):
                        names[metric.name] = sum(p.count for p in metric.histogram.data_points)
                    elif metric.HasField("sum"):
                        names[metric.name] = len(metric.sum.data_points)
    assert names["http.client.request.duration"] == 4
    assert names["dns.lookup.duration"] == 2
    assert names["http.client.connection.duration"] == 2
    assert {"http.client.open_connections", "http.client.active_requests"} <= set(names)
