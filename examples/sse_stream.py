"""Trace a stream of server-sent events, and read its timeline from the span.

A local aiohttp server streams server-sent events (``text/event-stream``), one every few
milliseconds, the way an LLM API streams its tokens. A traced client reads them as they come
and prints each one; then it prints what the request's CLIENT span says about the stream: the
time to the response headers, the body chunks and the longest gap between them. Run it::

    python -m pip install aiohttp-otel opentelemetry-sdk
    python examples/sse_stream.py
    python examples/sse_stream.py --events 10 --interval 0.1

The server listens on 127.0.0.1 (a free port), so the example needs no network. The same
stream, drawn in the terminal chunk by chunk::

    aiohttp-otel trace --stream http://127.0.0.1:PORT/events
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from aiohttp_otel import create_trace_config

WORDS = ("Streaming", "responses", "arrive", "a", "piece", "at", "a", "time.")
# What the span holds about the stream, when the installed aiohttp-otel records it.
STREAM_ATTRIBUTES = (
    "aiohttp.response.time_to_first_chunk",
    "aiohttp.response.chunk_gap.max",
    "aiohttp.response.chunk_count",
)

# -- the server --------------------------------------------------------------------------------


def events_app(count: int, interval: float) -> web.Application:
    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for number in range(1, count + 1):
            await asyncio.sleep(interval)
            data = json.dumps({"token": WORDS[(number - 1) % len(WORDS)], "n": number})
            await response.write(f"id: {number}\nevent: token\ndata: {data}\n\n".encode())
        await response.write(b"event: done\ndata: {}\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/events", events)
    return app


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    await web.SockSite(runner, sock).start()
    return runner, port


# -- the client --------------------------------------------------------------------------------


async def server_sent_events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, str]]:
    """Each event of a ``text/event-stream`` body, as its fields, the moment it is complete."""
    fields: dict[str, str] = {}
    async for raw in response.content:  # one line at a time, as the bytes arrive
        line = raw.decode().rstrip("\r\n")
        if not line:
            if fields:
                yield fields
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")


def stream_timeline(span: ReadableSpan) -> list[str]:
    """What the span says about the stream, from its events and attributes."""
    start = span.start_time or 0
    headers = [e.timestamp for e in span.events if e.name == "aiohttp.response.headers"]
    chunks = [e.timestamp for e in span.events if e.name == "aiohttp.response.chunk_received"]
    lines = []
    if headers:
        lines.append(f"response headers after {(headers[0] - start) / 1e6:.1f} ms")
    if chunks:
        gaps = [later - earlier for earlier, later in itertools.pairwise(chunks)]
        longest = f", longest gap {max(gaps) / 1e6:.1f} ms" if gaps else ""
        lines.append(f"{len(chunks)} body chunk events{longest}")
    attributes = span.attributes or {}
    for name in STREAM_ATTRIBUTES:
        if name in attributes:
            lines.append(f"{name} = {attributes[name]}")
    return lines


async def main(count: int, interval: float) -> None:
    runner, port = await serve(events_app(count, interval))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_config = create_trace_config(tracer_provider=provider)
    try:
        async with (
            aiohttp.ClientSession(trace_configs=[trace_config]) as session,
            session.get(f"http://127.0.0.1:{port}/events") as response,
        ):
            received = 0
            async for event in server_sent_events(response):
                if event.get("event") == "done":
                    break
                received += 1
                print(f"event {event.get('id')}: {json.loads(event['data'])['token']}")
            # The stream is over: reading to its end lets the span end with the last byte.
            await response.read()
            print(f"GET /events -> {response.status}, {received} events")
    finally:
        await runner.cleanup()
        provider.shutdown()
    # The request's CLIENT span; its connection phases are spans of their own beside it.
    (span,) = (s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT)
    print("the span's stream timeline:")
    for line in stream_timeline(span):
        print(f"  {line}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5, help="how many events (default: 5)")
    parser.add_argument(
        "--interval", type=float, default=0.02, help="seconds between events (default: 0.02)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.events, args.interval))
