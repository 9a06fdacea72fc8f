"""``aiohttp-otel demo``: local HTTP and HTTPS servers, and a tour of traced requests.

Everything runs on this machine: the servers listen on 127.0.0.1, the HTTPS certificate for
``localhost`` comes from a CA made in memory, and the client trusts that CA alone. Each stop of
the tour prints a heading saying what to look at, then the waterfall of its trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import trustme
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Tracer
from rich.console import Console
from rich.text import Text

from .._trace_config import create_trace_config
from .._version import __version__
from .waterfall import WaterfallSpanExporter, segment_legend

STREAM_CHUNKS = 5
STREAM_CHUNK_SIZE = 4096
STREAM_INTERVAL_S = 0.02
SLOW_RESPONSE_S = 0.03
REDIRECT_HOPS = 3

# -- the servers -----------------------------------------------------------------------------


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello from the demo server\n")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(SLOW_RESPONSE_S)
    return web.Response(text="slow hello\n")


async def _redirect(request: web.Request) -> web.Response:
    hops = int(request.match_info["hops"])
    raise web.HTTPFound("/" if hops <= 1 else f"/redirect/{hops - 1}")


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = STREAM_CHUNKS * STREAM_CHUNK_SIZE
    await response.prepare(request)
    for index in range(STREAM_CHUNKS):
        if index:
            await asyncio.sleep(STREAM_INTERVAL_S)
        await response.write(b"." * STREAM_CHUNK_SIZE)
    await response.write_eof()
    return response


def demo_app() -> web.Application:
    """The demo server's routes: ``/``, ``/slow``, ``/redirect/{hops}`` and ``/stream``."""
    app = web.Application()
    app.router.add_get("/", _hello)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/redirect/{hops:\\d+}", _redirect)
    app.router.add_get("/stream", _stream)
    return app


@dataclass(frozen=True)
class DemoServers:
    http_port: int
    https_port: int
    client_ssl: ssl.SSLContext
    """Trusts the demo's in-memory CA, and nothing else."""

    def http(self, path: str = "/") -> str:
        return f"http://localhost:{self.http_port}{path}"

    def https(self, path: str = "/") -> str:
        return f"https://localhost:{self.https_port}{path}"


@contextlib.asynccontextmanager
async def demo_servers() -> AsyncIterator[DemoServers]:
    """Serve :func:`demo_app` over HTTP and HTTPS on 127.0.0.1, on ports the system picks."""
    ca = trustme.CA()
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ssl)
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)
    runner = web.AppRunner(demo_app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        ports = []
        for context in (None, server_ssl):
            # Bound here, so the port the system picked is known without aiohttp internals.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
            await web.SockSite(runner, sock, ssl_context=context).start()
        yield DemoServers(ports[0], ports[1], client_ssl)
    finally:
        await runner.cleanup()


def _closed_port() -> int:
    """A loopback port nothing listens on: bound to pick it, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the tour --------------------------------------------------------------------------------


class Tour:
    """The sessions the tour's stops share, traced by the demo's own tracer provider."""

    def __init__(self, servers: DemoServers, tracer_provider: TracerProvider) -> None:
        self.servers = servers
        meter_provider = MeterProvider()
        self._trace_config = create_trace_config(
            tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        self.tracer: Tracer = tracer_provider.get_tracer("aiohttp_otel.demo", __version__)
        # IPv4 only: the servers listen on 127.0.0.1, and a resolver that also answers ::1
        # for localhost would add a refused IPv6 attempt to every new connection.
        self.https = self.session(tls=servers.client_ssl)
        self.one_connection = self.session(limit=1)

    def session(
        self, *, tls: ssl.SSLContext | bool = True, limit: int = 100
    ) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(family=socket.AF_INET, ssl=tls, limit=limit)
        return aiohttp.ClientSession(
            connector=connector,
            trace_configs=[self._trace_config],
            timeout=aiohttp.ClientTimeout(total=10),
        )

    async def close(self) -> None:
        await self.https.close()
        await self.one_connection.close()


async def _get(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url) as response:
        async for _ in response.content.iter_chunked(STREAM_CHUNK_SIZE):
            pass


async def _new_connection(tour: Tour) -> None:
    await _get(tour.https, tour.servers.https())


async def _reuse(tour: Tour) -> None:
    await _get(tour.https, tour.servers.https())


async def _queueing(tour: Tour) -> None:
    slow = tour.servers.http("/slow")
    await asyncio.gather(_get(tour.one_connection, slow), _get(tour.one_connection, slow))


async def _redirects(tour: Tour) -> None:
    await _get(tour.one_connection, tour.servers.http(f"/redirect/{REDIRECT_HOPS}"))


async def _streamed_body(tour: Tour) -> None:
    await _get(tour.https, tour.servers.https("/stream"))


async def _failure(tour: Tour) -> None:
    with contextlib.suppress(aiohttp.ClientConnectionError):
        await _get(tour.https, f"http://localhost:{_closed_port()}/")


@dataclass(frozen=True)
class Stop:
    """One stop of the tour: a heading, what to look at, and the requests to trace."""

    title: str
    root_name: str
    hint: str
    run: Callable[[Tour], Awaitable[None]]


TOUR = (
    Stop(
        "A new connection: GET https://localhost/",
        "new connection",
        "HTTP connection_setup holds the DNS lookup, TCP connect and TLS handshake.",
        _new_connection,
    ),
    Stop(
        "Keep-alive reuse: the same request again",
        "keep-alive reuse",
        "No setup spans: the request links to the setup of the connection it reused.",
        _reuse,
    ),
    Stop(
        "Waiting for a connection: two requests at once, limit=1",
        "queueing (limit=1)",
        "The second request waits in HTTP wait_for_connection until the first is done.",
        _queueing,
    ),
    Stop(
        f"A redirect chain: GET /redirect/{REDIRECT_HOPS}",
        "redirect chain",
        "One CLIENT span per hop, siblings; each later hop has its resend count.",
        _redirects,
    ),
    Stop(
        f"A streamed body: {STREAM_CHUNKS} chunks, {STREAM_INTERVAL_S * 1000:.0f} ms apart",
        "streamed body",
        "The span ends with the last byte; its chunk events are summed up beside it.",
        _streamed_body,
    ),
    Stop(
        "A failure: GET a port nothing listens on",
        "connection refused",
        "The connect is refused: the spans that failed are red, with their error.type.",
        _failure,
    ),
)


def _heading(number: int, stop: Stop) -> Text:
    return Text.assemble((f"{number}. {stop.title}", "bold"), "\n   ", (stop.hint, "dim"))


async def _take_tour(console: Console) -> None:
    async with demo_servers() as servers:
        console.print(
            Text.assemble(
                ("aiohttp-otel demo", "bold"),
                ": a tour of traced requests to servers on this machine\n  ",
                (servers.http(), "cyan"),
                " and ",
                (servers.https(), "cyan"),
                " (its CA made in memory)",
            )
        )
        console.print(segment_legend())
        console.print()
        tracer_provider = TracerProvider(resource=Resource.create({"service.name": "demo"}))
        tracer_provider.add_span_processor(SimpleSpanProcessor(WaterfallSpanExporter(console)))
        tour = Tour(servers, tracer_provider)
        try:
            for number, stop in enumerate(TOUR, 1):
                console.print(_heading(number, stop))
                # Ended here, the root draws its waterfall right under the heading.
                root = tour.tracer.start_span(stop.root_name, kind=SpanKind.INTERNAL)
                with trace.use_span(root, end_on_exit=True):
                    await stop.run(tour)
        finally:
            await tour.close()
            tracer_provider.shutdown()
    console.print(Text.assemble("Trace your own URL:     ", ("aiohttp-otel trace URL", "bold")))
    console.print(
        Text.assemble(
            "Draw your app's traces: ", ("aiohttp_otel.waterfall.WaterfallSpanExporter", "bold")
        )
    )


def run_demo(console: Console | None = None, svg_path: Path | None = None) -> int:
    """Run the tour; with ``svg_path``, also save what was printed as an SVG picture."""
    if console is None:
        console = Console(record=svg_path is not None)
    elif svg_path is not None:
        console.record = True
    asyncio.run(_take_tour(console))
    if svg_path is not None:
        console.save_svg(str(svg_path), title="aiohttp-otel demo")
    return 0
