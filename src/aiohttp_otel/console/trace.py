"""``aiohttp-otel trace``: make requests with full instrumentation and show their spans.

Each request runs under a root INTERNAL span of its own, so its redirect hops and phase spans
form one tree, drawn when the request is over. The tracer and meter providers are local to the
command: the process's global providers are left alone.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiohttp
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from rich.console import Console
from rich.text import Text
from yarl import URL

from .otlp_json import spans_to_otlp_json
from .._trace_config import create_trace_config
from .._version import __version__
from .layout import format_bytes, format_duration
from .waterfall import WaterfallSpanExporter

_SERVICE_NAME = "aiohttp-otel"
_READ_SIZE = 64 * 1024
# Bounds the wait for an OTLP receiver that is slow or gone, at the end of the run.
_OTLP_TIMEOUT_S = 5


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
    timeout: float = 30.0


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


def otlp_signal_endpoint(endpoint: str, signal: str) -> str:
    """``http://host:4318`` (or that with a signal path already) -> ``.../v1/<signal>``."""
    base = endpoint.rstrip("/")
    for known in ("/v1/traces", "/v1/metrics"):
        if base.endswith(known):
            base = base[: -len(known)]
    return f"{base}/v1/{signal}"


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
        readers = []
        if options.otlp:
            # Imported here: the OTLP exporter is optional, and the parser checked it is present.
            traces = importlib.import_module(
                "opentelemetry.exporter.otlp.proto.http.trace_exporter"
            )
            metrics = importlib.import_module(
                "opentelemetry.exporter.otlp.proto.http.metric_exporter"
            )
            span_exporter = traces.OTLPSpanExporter(
                endpoint=otlp_signal_endpoint(options.otlp, "traces"), timeout=_OTLP_TIMEOUT_S
            )
            self.tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
            metric_exporter = metrics.OTLPMetricExporter(
                endpoint=otlp_signal_endpoint(options.otlp, "metrics"), timeout=_OTLP_TIMEOUT_S
            )
            # Exported once, at shutdown: the command is over in seconds.
            readers.append(
                PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
            )
        self.meter_provider = MeterProvider(metric_readers=readers, resource=resource)

    def tracer(self) -> Tracer:
        return self.tracer_provider.get_tracer("aiohttp_otel.console", __version__)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _display_url(url: str) -> str:
    parsed = URL(url)
    return str(parsed.with_password("REDACTED")) if parsed.password else url


def _summary(options: TraceOptions, outcome: Outcome, label: str, elapsed_ns: int) -> Text:
    text = Text(no_wrap=False)
    if label:
        text.append(f"{label} ", style="dim")
    text.append(f"{options.method} {_display_url(options.url)}", style="bold")
    if outcome.error is not None:
        text.append(" ✗ ", style="bold red")
        error = outcome.error
        # A timeout has no message: its class name says it all.
        message = f": {error}" if str(error) else ""
        text.append(f"{type(error).__name__}{message}", style="red")
    else:
        text.append(" → ")
        style = "green" if outcome.ok else "bold red"
        text.append(f"{outcome.status} {outcome.reason}".rstrip(), style=style)
        if outcome.redirects:
            plural = "s" if outcome.redirects != 1 else ""
            text.append(f" after {outcome.redirects} redirect{plural}")
        text.append(f" · {format_bytes(outcome.size)}", style="dim")
    text.append(f" · {format_duration(elapsed_ns)}", style="dim")
    return text


async def _request(session: aiohttp.ClientSession, options: TraceOptions) -> Outcome:
    try:
        async with session.request(
            options.method, options.url, headers=list(options.headers), data=options.data
        ) as response:
            size = 0
            async for chunk in response.content.iter_chunked(_READ_SIZE):
                size += len(chunk)
            return Outcome(
                status=response.status,
                reason=response.reason or "",
                size=size,
                redirects=len(response.history),
            )
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
        return Outcome(error=exc)


async def _trace_requests(
    options: TraceOptions,
    telemetry: _Telemetry,
    report: Callable[[Text], None],
) -> list[Outcome]:
    tracer = telemetry.tracer()
    trace_config = create_trace_config(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        phases=options.phases,
    )
    total = options.repeat * options.concurrency
    numbers: Iterator[int] = itertools.count(1)
    connector = aiohttp.TCPConnector(ssl=not options.insecure)
    timeout = aiohttp.ClientTimeout(total=options.timeout)

    async def one(session: aiohttp.ClientSession) -> Outcome:
        number = next(numbers)
        started_ns = time.time_ns()
        name = f"request {number}" if total > 1 else "request"
        root = tracer.start_span(name, kind=SpanKind.INTERNAL, start_time=started_ns)
        try:
            with trace.use_span(root, end_on_exit=False):
                outcome = await _request(session, options)
        except BaseException:
            root.end()
            raise
        ended_ns = time.time_ns()
        if not outcome.ok:
            root.set_status(Status(StatusCode.ERROR))
        # The summary goes out first, so the waterfall drawn when the root ends sits under it.
        label = f"[{number}/{total}]" if total > 1 else ""
        report(_summary(options, outcome, label, ended_ns - started_ns))
        root.end(end_time=ended_ns)
        return outcome

    async def sequence(session: aiohttp.ClientSession) -> list[Outcome]:
        return [await one(session) for _ in range(options.repeat)]

    async with aiohttp.ClientSession(
        connector=connector, trace_configs=[trace_config], timeout=timeout
    ) as session:
        runs = await asyncio.gather(*(sequence(session) for _ in range(options.concurrency)))
    return [outcome for run in runs for outcome in run]


def run_trace(options: TraceOptions, console: Console | None = None) -> int:
    """Run ``aiohttp-otel trace``; return the exit status (0: every request succeeded)."""
    console = console if console is not None else Console()
    # With --json, standard output carries only the JSON document.
    report_console = Console(stderr=True) if options.json else console
    telemetry = _Telemetry(options, console)
    try:
        outcomes = asyncio.run(_trace_requests(options, telemetry, report_console.print))
    finally:
        telemetry.shutdown()
    if telemetry.collected is not None:
        spans = sorted(telemetry.collected.get_finished_spans(), key=lambda s: s.start_time or 0)
        console.out(json.dumps(spans_to_otlp_json(spans), indent=2), highlight=False)
    failed = sum(not outcome.ok for outcome in outcomes)
    if len(outcomes) > 1:
        report_console.print(
            f"{len(outcomes)} requests: {len(outcomes) - failed} succeeded, {failed} failed",
            style="bold red" if failed else "bold",
        )
    return 1 if failed else 0
