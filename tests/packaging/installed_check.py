"""Run by ``smoke.py`` inside a clean virtualenv where aiohttp-otel was just installed.

Usage: ``VENV_PYTHON -I installed_check.py EXPECTED_VERSION VENV_DIR``. It checks that the
package is imported from that virtualenv, with the expected version in ``__version__`` and in
the installed metadata, with ``py.typed`` and the ``opentelemetry_instrumentor`` entry point;
then it makes one request to an aiohttp server on 127.0.0.1 and checks the CLIENT span that
the OpenTelemetry SDK recorded. Every problem is printed; any problem means exit status 1.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.resources
import sys
from pathlib import Path

import aiohttp
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import aiohttp_otel

REQUEST_TIMEOUT_S = 30


def check_installation(expected_version: str, venv_dir: Path) -> list[str]:
    problems = []
    location = Path(aiohttp_otel.__file__).resolve()
    if venv_dir not in location.parents:
        problems.append(f"aiohttp_otel was imported from {location}, not from the venv")
    if aiohttp_otel.__version__ != expected_version:
        problems.append(
            f"aiohttp_otel.__version__ is {aiohttp_otel.__version__!r}, the file name says "
            f"{expected_version!r}"
        )
    metadata_version = importlib.metadata.version("aiohttp-otel")
    if metadata_version != expected_version:
        problems.append(
            f"the installed metadata says version {metadata_version!r}, the file name says "
            f"{expected_version!r}"
        )
    if not (importlib.resources.files("aiohttp_otel") / "py.typed").is_file():
        problems.append("py.typed is not installed: type checkers would ignore the annotations")
    found = [
        entry_point
        for entry_point in importlib.metadata.entry_points(group="opentelemetry_instrumentor")
        if entry_point.name == "aiohttp_otel"
    ]
    if len(found) != 1:
        problems.append(f"{len(found)} 'aiohttp_otel' entry points in opentelemetry_instrumentor")
    elif found[0].load() is not aiohttp_otel.AioHttpClientInstrumentor:
        problems.append(f"the entry point loads {found[0].value}, not AioHttpClientInstrumentor")
    return problems


async def check_one_traced_request() -> list[str]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    received_traceparents: list[str] = []

    async def hello(request: web.Request) -> web.Response:
        received_traceparents.append(request.headers.get("traceparent", ""))
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    trace_config = aiohttp_otel.create_trace_config(tracer_provider=provider)
    try:
        async with (
            aiohttp.ClientSession(trace_configs=[trace_config]) as session,
            session.get(f"http://127.0.0.1:{port}/hello") as response,
        ):
            status, body = response.status, await response.text()
    finally:
        await runner.cleanup()

    problems = []
    if (status, body) != (200, "hello"):
        problems.append(f"the request returned {status} {body!r}")
    clients = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.CLIENT]
    if len(clients) != 1:
        return [*problems, f"expected one CLIENT span, got {len(clients)}"]
    span = clients[0]
    status_code = (span.attributes or {}).get("http.response.status_code")
    if span.name != "GET":
        problems.append(f"the CLIENT span is named {span.name!r}, not 'GET'")
    if status_code != 200:
        problems.append(f"the CLIENT span's http.response.status_code is {status_code!r}")
    context = span.get_span_context()
    sent = None if context is None else f"00-{context.trace_id:032x}-{context.span_id:016x}-"
    arrived = received_traceparents[0] if len(received_traceparents) == 1 else None
    if sent is None or arrived is None or not arrived.startswith(sent):
        problems.append(
            f"the server got traceparent {received_traceparents!r}, not the CLIENT span's {sent}"
        )
    return problems


def main(argv: list[str]) -> int:
    expected_version, venv_dir = argv[1], Path(argv[2]).resolve()
    problems = check_installation(expected_version, venv_dir)
    problems += asyncio.run(asyncio.wait_for(check_one_traced_request(), REQUEST_TIMEOUT_S))
    for problem in problems:
        print(f"in the venv: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"in the venv: aiohttp-otel {expected_version} imports, and traced one request")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
