"""Shared servers and span-tree helpers.

Every test talks to real aiohttp servers on loopback (HTTP, and HTTPS with a CA made here),
through the real OpenTelemetry SDK with in-memory exporters. A ledger processor counts the
spans that start and end, and every test fails if one is left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from packaging.version import Version

from aiohttp_otel import _diagnostics, create_trace_config

# -- versions --------------------------------------------------------------------------------


def installed(distribution: str) -> Version:
    return Version(importlib.metadata.version(distribution))


def requires(distribution: str, version: str) -> pytest.MarkDecorator:
    """Skip a test where ``distribution`` is older than ``version``: the floor env installs
    every dependency at its lower bound, and a test must not need more than that."""
    have = installed(distribution)
    return pytest.mark.skipif(
        have < Version(version), reason=f"needs {distribution} {version} or later (has {have})"
    )


# -- event loops -----------------------------------------------------------------------------

#: ``uvloop`` in the uvloop tox env: every test then runs on a uvloop loop.
LOOP = os.environ.get("AIOHTTP_OTEL_LOOP", "asyncio")
#: Tests kept on asyncio's loop even then: the examples fork subprocesses, and a child forked
#: by uvloop can hang in the SDK's MeterProvider at-fork handler (not this package's code).
ASYNCIO_ONLY = ("test_examples.py",)


class _UvloopPlugin:
    @pytest.hookimpl
    def pytest_asyncio_loop_factories(
        self, config: pytest.Config, item: pytest.Item
    ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
        import uvloop

        if item.path.name in ASYNCIO_ONLY:
            return {"asyncio": asyncio.new_event_loop}
        return {"uvloop": uvloop.new_event_loop}


#: What the closing line counts: passed and failed always, the others when there are any.
RESULT_KINDS = ("passed", "failed", "skipped", "error", "xfailed", "xpassed")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Under tox, one line that names the env beside its counts: `tox p` prints every env's
    output, and this is how a reader of CI's log tells which summary is whose."""
    env = os.environ.get("TOX_ENV_NAME")
    if not env:
        return
    counts = [(kind, len(terminalreporter.stats.get(kind, ()))) for kind in RESULT_KINDS]
    shown = [f"{n} {kind}" for kind, n in counts if n or kind in ("passed", "failed")]
    terminalreporter.write_line(f"{env}: {', '.join(shown)}")


def pytest_configure(config: pytest.Config) -> None:
    if LOOP == "uvloop":
        config.pluginmanager.register(_UvloopPlugin(), "aiohttp-otel-uvloop")
    elif LOOP != "asyncio":
        raise pytest.UsageError(f"AIOHTTP_OTEL_LOOP={LOOP!r}: expected 'asyncio' or 'uvloop'")


# -- telemetry -------------------------------------------------------------------------------


class SpanLedger(SpanProcessor):
    """Counts starts and ends per span, so a test can prove every span ended exactly once."""

    def __init__(self) -> None:
        self.started: dict[int, str] = {}
        self.ended: dict[int, int] = {}

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        self.started[span.context.span_id] = span.name

    def on_end(self, span: ReadableSpan) -> None:
        sid = span.context.span_id
        self.ended[sid] = self.ended.get(sid, 0) + 1

    def open_spans(self) -> list[str]:
        return [name for sid, name in self.started.items() if sid not in self.ended]

    def ended_twice(self) -> list[str]:
        return [self.started.get(sid, "?") for sid, n in self.ended.items() if n > 1]


@dataclass
class Telemetry:
    exporter: InMemorySpanExporter
    ledger: SpanLedger
    tracer_provider: TracerProvider
    metric_reader: InMemoryMetricReader
    meter_provider: MeterProvider

    def spans(self) -> list[ReadableSpan]:
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    def client_spans(self) -> list[ReadableSpan]:
        from opentelemetry.trace import SpanKind

        return [s for s in self.spans() if s.kind is SpanKind.CLIENT]

    def only_span(self) -> ReadableSpan:
        """The one CLIENT span of a one-request test (phase spans may sit beside it)."""
        spans = self.client_spans()
        assert len(spans) == 1, [s.name for s in self.spans()]
        return spans[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.parent and s.parent.span_id == parent.context.span_id]

    def tree(self) -> list[tuple[int, str]]:
        """The span tree as (depth, name) in start order: what a trace view shows."""
        spans = self.spans()
        by_id = {s.context.span_id: s for s in spans}

        def depth(span: ReadableSpan) -> int:
            n = 0
            while span.parent is not None and span.parent.span_id in by_id:
                span = by_id[span.parent.span_id]
                n += 1
            return n

        return [(depth(s), s.name) for s in spans]

    def metric_points(self, name: str) -> list[Any]:
        data = self.metric_reader.get_metrics_data()
        points: list[Any] = []
        if data is None:
            return points
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    ledger = SpanLedger()
    provider = TracerProvider()
    provider.add_span_processor(ledger)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    yield Telemetry(exporter, ledger, provider, reader, MeterProvider(metric_readers=[reader]))
    assert ledger.open_spans() == [], "spans started but never ended"
    assert ledger.ended_twice() == [], "spans ended more than once"


@pytest.fixture(autouse=True)
def _fresh_diagnostics() -> None:
    _diagnostics.reset_for_tests()


@pytest.fixture(autouse=True)
def _context_is_untouched() -> Iterator[None]:
    """Whatever a test does, the ambient OpenTelemetry context it ends with is the one it had."""
    before = otel_context.get_current()
    yield
    assert otel_context.get_current() == before


# -- TLS -------------------------------------------------------------------------------------


@dataclass
class Tls:
    ca: trustme.CA
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="session")
def tls() -> Tls:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Tls(ca, server, client)


# -- servers ---------------------------------------------------------------------------------


async def _ok(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


async def _status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.Response(status=code, text=f"status {code}", headers={"X-Answer": str(code)})


async def _redirect(request: web.Request) -> web.Response:
    hops = int(request.match_info["n"])
    target = "/ok" if hops <= 1 else f"/redirect/{hops - 1}"
    code = int(request.query.get("code", "302"))
    return web.Response(status=code, headers={"Location": target})


async def _redirect_to(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": request.query["to"]})


async def _loop(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/loop"})


async def _no_location(request: web.Request) -> web.Response:
    return web.Response(status=302, text="nowhere to go")


async def _headers(request: web.Request) -> web.Response:
    return web.json_response(dict(request.headers.items()))


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("delay", "1")))
    return web.Response(text="slow")


async def _cookie(request: web.Request) -> web.Response:
    response = web.Response(text="cookie", headers={"WWW-Authenticate": "Basic realm=x"})
    response.set_cookie("session", "s3cret")
    return response


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/ok", _ok)
    app.router.add_route("*", "/status/{code}", _status)
    app.router.add_route("*", "/redirect/{n}", _redirect)
    app.router.add_get("/redirect-to", _redirect_to)
    app.router.add_get("/loop", _loop)
    app.router.add_get("/no-location", _no_location)
    app.router.add_get("/headers", _headers)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/cookie", _cookie)
    return app


@dataclass
class Server:
    scheme: str
    host: str
    port: int
    requests: list[web.Request] = field(default_factory=list)

    def url(self, path: str = "/ok", host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"


@contextlib.asynccontextmanager
async def serve(
    app: web.Application, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[Server]:
    # In-flight slow handlers must not hold up teardown.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield Server(
            "https" if ssl_context else "http", "localhost" if host == "127.0.0.1" else host, port
        )
    finally:
        await runner.cleanup()


@pytest.fixture
async def http_server() -> AsyncIterator[Server]:
    async with serve(make_app()) as server:
        yield server


@pytest.fixture
async def https_server(tls: Tls) -> AsyncIterator[Server]:
    async with serve(make_app(), tls.server) as server:
        yield server


@pytest.fixture(params=["http", "https"])
async def server(request: pytest.FixtureRequest, tls: Tls) -> AsyncIterator[Server]:
    """Both schemes: tests using this run once over HTTP and once over HTTPS."""
    async with serve(make_app(), tls.server if request.param == "https" else None) as srv:
        yield srv


# -- ports that misbehave --------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound once to pick it, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def full_accept_queue() -> Iterator[int]:
    """A port whose accept queue is full: a new connect to it hangs in SYN (no answer, no RST).

    Loopback connects otherwise finish (or are refused) at once; this is the only way to hold
    a request inside ``socket connect`` without a mock.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    try:
        for _ in range(2):  # backlog 0 still queues one; one more to be sure
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# -- client sessions -------------------------------------------------------------------------

SessionFactory = Callable[..., aiohttp.ClientSession]


@pytest.fixture
async def make_session(telemetry: Telemetry, tls: Tls) -> AsyncIterator[SessionFactory]:
    """Build sessions traced by a fresh trace config; options go to ``create_trace_config``."""
    sessions: list[aiohttp.ClientSession] = []

    def factory(
        *,
        connector_kwargs: dict[str, Any] | None = None,
        session_kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> aiohttp.ClientSession:
        options.setdefault("tracer_provider", telemetry.tracer_provider)
        options.setdefault("meter_provider", telemetry.meter_provider)
        connector = aiohttp.TCPConnector(ssl=tls.client, **(connector_kwargs or {}))
        session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[create_trace_config(**options)],
            **(session_kwargs or {}),
        )
        sessions.append(session)
        return session

    yield factory
    for session in sessions:
        await session.close()


@pytest.fixture
async def bare_session(tls: Tls) -> AsyncIterator[aiohttp.ClientSession]:
    """An uninstrumented session, to compare what the user sees with and without us."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.client)) as session:
        yield session


async def fetch(
    session: aiohttp.ClientSession, url: str, method: str = "GET", **kwargs: Any
) -> tuple[int, str]:
    async with session.request(method, url, **kwargs) as response:
        return response.status, await response.text()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parse_traceparent(value: str) -> tuple[str, str]:
    """``(trace_id, span_id)`` as hex strings."""
    _, trace_id, span_id, _ = value.split("-")
    return trace_id, span_id


def span_ids(span: ReadableSpan) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def echoed_headers(body: str) -> dict[str, str]:
    return json.loads(body)  # type: ignore[no-any-return]


# -- reading a response body -----------------------------------------------------------------

Reader = Callable[[aiohttp.ClientResponse], Awaitable[Any]]


def read_paths(chunk_size: int) -> dict[str, Reader]:
    """Every way a caller can read a response body, by name; ``json`` returns the parsed value,
    the others the body's bytes. ``iter_chunked`` and ``read_n`` ask for ``chunk_size`` bytes."""

    async def read(response: aiohttp.ClientResponse) -> Any:
        return await response.read()

    async def text(response: aiohttp.ClientResponse) -> Any:
        return (await response.text()).encode()

    async def json_body(response: aiohttp.ClientResponse) -> Any:
        return await response.json()

    async def iter_chunked(response: aiohttp.ClientResponse) -> Any:
        return b"".join([chunk async for chunk in response.content.iter_chunked(chunk_size)])

    async def iter_any(response: aiohttp.ClientResponse) -> Any:
        return b"".join([chunk async for chunk in response.content.iter_any()])

    async def readline(response: aiohttp.ClientResponse) -> Any:
        lines = []
        while line := await response.content.readline():
            lines.append(line)
        return b"".join(lines)

    async def read_n(response: aiohttp.ClientResponse) -> Any:
        chunks = []
        while chunk := await response.content.read(chunk_size):
            chunks.append(chunk)
        return b"".join(chunks)

    return {
        "read": read,
        "text": text,
        "json": json_body,
        "iter_chunked": iter_chunked,
        "iter_any": iter_any,
        "readline": readline,
        "read_n": read_n,
    }


# -- the README's quick start, as a user pastes it -------------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"
QUICK_START_URL = "https://example.com/"


def readme_quick_start(url: str) -> str:
    """The README's quick-start program, requesting ``url`` instead of the public site."""
    section = README.read_text(encoding="utf-8").split("\n## Quick start\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert QUICK_START_URL in code, "the README's quick start no longer requests example.com"
    return code.replace(QUICK_START_URL, url)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the runner's own ``OTEL_*`` settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    # Loopback must never go through a proxy the machine may have configured.
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", **extra)
    return env


async def run_python(
    script: str, *, launcher: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``script`` in a new interpreter (optionally under ``launcher``, e.g. the agent)
    without blocking the loop that serves it; ``(returncode, stdout, stderr)``."""
    process = await asyncio.create_subprocess_exec(
        *launcher,
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else clean_env(),
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
