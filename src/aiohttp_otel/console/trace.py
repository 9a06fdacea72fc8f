"""``aiohttp-otel trace``: make requests with full instrumentation and show their spans.

Each request runs under a root INTERNAL span of its own, so its redirect hops and phase spans
form one tree, drawn when the request is over. The tracer and meter providers are local to the
command: the process's global providers are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import aiohttp
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.text import Text
from yarl import URL

from .._instrumentation import Instrumentation
from .._trace_config import OtelTraceConfig, create_trace_config
from .._version import __version__
from .layout import format_bytes, format_duration
from .otlp_export import OtlpExport
from .otlp_json import spans_to_otlp_json
from .stream import ChunkTimeline
from .waterfall import WaterfallSpanExporter

_SERVICE_NAME = "aiohttp-otel"
_READ_SIZE = 64 * 1024
_PROG = "aiohttp-otel"


@dataclass(frozen=True)
class TraceOptions:
    """What ``aiohttp-otel trace`` was asked to do, checked by the command line parser."""

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    data: bytes | None = None
    repeat: int = 1
    concurrency: int = 1
    json: bool = False
    otlp: str | None = None
    phases: str = "spans"
    insecure: bool = False
    cacert: str | None = None
    stream: bool = False
    timeout: float = 30.0

    def tls(self) -> ssl.SSLContext | bool:
        """What the connector verifies the server's certificate against."""
        if self.insecure:
            return False
        if self.cacert is not None:
            return ssl.create_default_context(cafile=self.cacert)
        return True


@dataclass(frozen=True)
class Outcome:
    """How one request went: a response (status, body size, redirects) or an exception."""

    status: int | None = None
    reason: str = ""
    size: int = 0
    redirects: int = 0
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and self.status < 400


class _Telemetry:
    """The command's own tracer and meter providers, and where their data goes."""

    def __init__(self, options: TraceOptions, console: Console) -> None:
        resource = Resource.create({"service.name": _SERVICE_NAME})
        self.tracer_provider = TracerProvider(resource=resource)
        self.collected: InMemorySpanExporter | None = None
        if options.json:
            self.collected = InMemorySpanExporter()
            self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.collected))
        else:
            waterfall = WaterfallSpanExporter(console)
            self.tracer_provider.add_span_processor(SimpleSpanProcessor(waterfall))
        readers: list[MetricReader] = []
        self.otlp = OtlpExport(options.otlp) if options.otlp else None
        if self.otlp is not None:
            self.tracer_provider.add_span_processor(self.otlp.span_processor())
            readers.append(self.otlp.metric_reader())
        self.meter_provider = MeterProvider(metric_readers=readers, resource=resource)

    def tracer(self) -> Tracer:
        return self.tracer_provider.get_tracer("aiohttp_otel.console", __version__)

    def quiet(self) -> contextlib.AbstractContextManager[None]:
        """While the run lasts, the OTLP exporters' log lines are kept off the terminal."""
        return self.otlp.quiet() if self.otlp is not None else contextlib.nullcontext()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _fit_url(url: str, room: int) -> str:
    """``url`` in at most ``room`` cells, its middle cut out: the host and the end of the
    path say most about which request it was."""
    if len(url) <= room or room < 20:
        return url
    head = (room - 1) * 3 // 5
    return f"{url[:head]}…{url[len(url) - (room - 1 - head) :]}"


def summary(
    options: TraceOptions,
    outcome: Outcome,
    label: str,
    elapsed_ns: int,
    redaction: Instrumentation,
    width: int,
) -> RenderableType:
    """One line that fits ``width``: the request, how it ended, its size and time; an
    exception's message follows on lines of its own. URLs are redacted as in the spans."""
    url = redaction.url_full(URL(options.url))
    head = f"{label} " if label else ""
    tail = Text()
    message = ""
    if outcome.error is not None:
        tail.append(" ✗ ", style="bold red")
        error = outcome.error
        tail.append(type(error).__name__, style="red")
        # A timeout has no message: its class name says it all.
        message = redaction.scrub(str(error), (options.url,))
    else:
        tail.append(" → ")
        style = "green" if outcome.ok else "bold red"
        tail.append(f"{outcome.status} {outcome.reason}".rstrip(), style=style)
        if outcome.redirects:
            plural = "s" if outcome.redirects != 1 else ""
            tail.append(f" after {outcome.redirects} redirect{plural}")
        tail.append(f" · {format_bytes(outcome.size)}", style="dim")
    tail.append(f" · {format_duration(elapsed_ns)}", style="dim")
    room = width - len(head) - len(options.method) - 1 - tail.cell_len
    line = Text(no_wrap=True, overflow="ellipsis")
    if head:
        line.append(head, style="dim")
    line.append(f"{options.method} {_fit_url(url, room)}", style="bold")
    line.append_text(tail)
    if not message:
        return line
    return Group(line, Padding(Text(message, style="red"), (0, 0, 0, 2), expand=False))


Report = Callable[[RenderableType], None]


async def _request(
    session: aiohttp.ClientSession, options: TraceOptions, stream: ChunkTimeline | None
) -> Outcome:
    try:
        async with session.request(
            options.method, options.url, headers=list(options.headers), data=options.data
        ) as response:
            size = 0
            if stream is None:
                async for chunk in response.content.iter_chunked(_READ_SIZE):
                    size += len(chunk)
            else:
                # iter_any hands over each chunk as it arrives, whatever its size.
                stream.headers(response.status, response.reason or "")
                async for chunk in response.content.iter_any():
                    stream.chunk(len(chunk))
                    size += len(chunk)
                stream.done()
            return Outcome(
                status=response.status,
                reason=response.reason or "",
                size=size,
                redirects=len(response.history),
            )
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
        return Outcome(error=exc)


async def _trace_requests(
    options: TraceOptions, telemetry: _Telemetry, report: Report, width: int
) -> list[Outcome]:
    tracer = telemetry.tracer()
    trace_config = create_trace_config(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        phases=options.phases,
    )
    # The summary lines redact URLs exactly as the spans do: the same compiled options.
    redaction = cast(OtelTraceConfig, trace_config).instrumentation
    total = options.repeat * options.concurrency
    numbers: Iterator[int] = itertools.count(1)
    connector = aiohttp.TCPConnector(ssl=options.tls())
    timeout = aiohttp.ClientTimeout(total=options.timeout)

    async def one(session: aiohttp.ClientSession) -> Outcome:
        number = next(numbers)
        label = f"[{number}/{total}]" if total > 1 else ""
        stream = ChunkTimeline(report, label) if options.stream else None
        started_ns = time.time_ns()
        name = f"request {number}" if total > 1 else "request"
        root = tracer.start_span(name, kind=SpanKind.INTERNAL, start_time=started_ns)
        try:
            with trace.use_span(root, end_on_exit=False):
                outcome = await _request(session, options, stream)
        except BaseException:
            root.end()
            raise
        ended_ns = time.time_ns()
        if not outcome.ok:
            root.set_status(Status(StatusCode.ERROR))
        # The summary goes out first, so the waterfall drawn when the root ends sits under it.
        report(summary(options, outcome, label, ended_ns - started_ns, redaction, width))
        root.end(end_time=ended_ns)
        return outcome

    async def sequence(session: aiohttp.ClientSession) -> list[Outcome]:
        return [await one(session) for _ in range(options.repeat)]

    async with aiohttp.ClientSession(
        connector=connector, trace_configs=[trace_config], timeout=timeout
    ) as session:
        runs = await asyncio.gather(*(sequence(session) for _ in range(options.concurrency)))
    return [outcome for run in runs for outcome in run]


async def _run(
    options: TraceOptions, telemetry: _Telemetry, report: Report, width: int
) -> list[Outcome] | None:
    if telemetry.otlp is not None and not await telemetry.otlp.reachable():
        return None
    return await _trace_requests(options, telemetry, report, width)


def run_trace(options: TraceOptions, console: Console | None = None) -> int:
    """Run ``aiohttp-otel trace``; return the exit status (0: every request succeeded and,
    with ``--otlp``, the export did too)."""
    console = console if console is not None else Console()
    # With --json, standard output carries only the JSON document.
    report_console = Console(stderr=True) if options.json else console
    telemetry = _Telemetry(options, console)
    with telemetry.quiet():
        try:
            outcomes = asyncio.run(
                _run(options, telemetry, report_console.print, report_console.width)
            )
        finally:
            telemetry.shutdown()
    otlp = telemetry.otlp
    if outcomes is None:
        assert otlp is not None
        report_console.print(
            f"{_PROG}: --otlp: {otlp.problem()}; nothing was traced", style="red", soft_wrap=True
        )
        return 1
    if telemetry.collected is not None:
        spans = sorted(telemetry.collected.get_finished_spans(), key=lambda s: s.start_time or 0)
        console.out(json.dumps(spans_to_otlp_json(spans), indent=2), highlight=False)
    failed = sum(not outcome.ok for outcome in outcomes)
    if len(outcomes) > 1:
        report_console.print(
            f"{len(outcomes)} requests: {len(outcomes) - failed} succeeded, {failed} failed",
            style="bold red" if failed else "bold",
        )
    if otlp is not None and otlp.failed():
        # One line, whatever its length: a script reads it whole.
        report_console.print(f"{_PROG}: --otlp: {otlp.problem()}", style="bold red", soft_wrap=True)
        return 1
    return 1 if failed else 0
