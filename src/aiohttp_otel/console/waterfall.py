"""A span exporter that draws each finished trace as a waterfall in the terminal.

Needs the ``cli`` extra (``pip install "aiohttp-otel[cli]"``): it renders with rich and
receives spans from the OpenTelemetry SDK.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

try:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from rich.cells import cell_len
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.text import Text
except ImportError as missing:
    # A bare ModuleNotFoundError would not say which extra brings rich and the SDK.
    raise ImportError(
        f"aiohttp_otel.waterfall needs the cli extra ({missing.name or missing} is missing); "
        'install it with: pip install "aiohttp-otel[cli]"',
        name=missing.name,
    ) from missing

from .layout import (
    Row,
    Tone,
    bar_geometry,
    essential_cells,
    fit_details,
    format_duration,
    plan_columns,
    segment_cells,
    time_window,
    trace_rows,
)

__all__ = ["WaterfallSpanExporter"]

_BAR = "█"
# The client idles in these: shades tell them from work (and apart) even without colour.
_QUEUED = "▒"
_WAIT = "░"
# A span that took no time still marks where it happened.
_HAIRLINE = "▏"
_SEPARATOR = " · "
#: The glyph of each segment of a CLIENT span's bar.
SEGMENT_GLYPHS = {"wait_for_connection": _QUEUED, "waiting": _WAIT}

_ROLE_STYLES = {
    "client": "bright_blue",
    "server": "blue",
    "producer": "blue",
    "consumer": "blue",
    "internal": "grey62",
    "wait_for_connection": "yellow",
    "connection_setup": "magenta",
    "dns_lookup": "cyan",
    "socket_connect": "green",
    "proxy_connect": "bright_yellow",
    "tls_handshake": "bright_magenta",
    # A CLIENT span's own segments, after a browser's network panel.
    "sending": "bright_green",
    "waiting": "grey50",
    "downloading": "bright_blue",
}
_TONE_STYLES = {
    Tone.PLAIN: "",
    Tone.GOOD: "green",
    Tone.NOTICE: "yellow",
    Tone.BAD: "bold red",
    Tone.QUIET: "dim",
}
_FAILED = "red"


class TraceWaterfall:
    """A rich renderable that draws one trace's rows to the width it is given."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = list(rows)

    @classmethod
    def of_spans(cls, spans: Iterable[ReadableSpan]) -> TraceWaterfall:
        return cls(trace_rows(spans))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        rows = self.rows
        if not rows:
            return
        durations = [format_duration(row.duration_ns) for row in rows]
        columns = plan_columns(
            options.max_width,
            max(cell_len(row.label) for row in rows),
            max(len(text) for text in durations),
            max(_details_cells(row) for row in rows),
            essential_needs=[need for row in rows for need in essential_cells(row.details)],
            short_name_need=max(cell_len(row.short_label) for row in rows),
        )
        window = time_window(rows)
        for row, duration in zip(rows, durations, strict=True):
            line = Text(no_wrap=True, overflow="ellipsis", end="\n")
            label = row.short_label if columns.short_names else row.label
            name = Text(label, style=_name_style(row))
            name.truncate(columns.name, overflow="ellipsis", pad=True)
            line.append_text(name)
            line.append(" ")
            line.append_text(_bar_text(row, window, columns.bar))
            line.append(" ")
            line.append(duration.rjust(columns.duration), style=_FAILED if row.failed else "")
            detail = _details_text(row, columns.details)
            if columns.details and detail:
                detail.truncate(columns.details, overflow="ellipsis")
                line.append("  ")
                line.append_text(detail)
            yield line


def _details_cells(row: Row) -> int:
    return _details_text(row, None).cell_len


_LEGEND = (
    ("wait_for_connection", "queued"),
    ("connection_setup", "connecting"),
    ("sending", "sending"),
    ("waiting", "waiting"),
    ("downloading", "downloading"),
)


def segment_legend() -> Text:
    """One line naming the segments of a request's bar, each in its glyph and colour
    (``waiting`` is for the server's first byte)."""
    text = Text("a request's bar:", style="dim")
    for kind, words in _LEGEND:
        text.append("  ")
        text.append(SEGMENT_GLYPHS.get(kind, _BAR), style=_ROLE_STYLES[kind])
        text.append(f" {words}")
    return text


def _name_style(row: Row) -> str:
    if row.failed:
        return "bold red"
    style = "bold" if row.depth == 0 else ""
    return f"{style} italic" if row.from_events else style


def _bar_text(row: Row, window: tuple[int, int], width: int) -> Text:
    bar = bar_geometry(row.start_ns, row.end_ns, window, width)
    style = _FAILED if row.failed else _ROLE_STYLES.get(row.role, "")
    text = Text(" " * bar.offset)
    cells = segment_cells(row.segments, bar, window, width)
    if cells:
        for kind, length in cells:
            glyph = SEGMENT_GLYPHS.get(kind, _BAR)
            text.append(glyph * length, style=_ROLE_STYLES.get(kind, style))
    elif bar.length:
        text.append(_BAR * bar.length, style=style)
    else:
        text.append(_HAIRLINE, style=style)
    text.append(" " * (width - text.cell_len))
    return text


def _details_text(row: Row, width: int | None) -> Text:
    details = row.details if width is None else fit_details(row.details, width)
    text = Text()
    for index, detail in enumerate(details):
        if index:
            text.append(_SEPARATOR, style="dim")
        text.append(detail.text, style=_TONE_STYLES[detail.tone])
    return text


def _is_local_root(span: ReadableSpan) -> bool:
    parent = span.parent
    return parent is None or parent.is_remote


class WaterfallSpanExporter(SpanExporter):
    """Draw each finished trace as a waterfall in the terminal: a bar per span, to scale.

    Meant for development: add it to a tracer provider, and every trace is printed when its
    local root span ends (a span with no parent, or whose parent came from another process).
    Each span is one row, indented under its parent, children in start order: its name, a bar
    placed and sized to the trace's time window, its duration, and its key facts (the status
    code, ``error.type``, the resend count, the peer address, the TLS version, a DNS cache hit,
    ``reused connection`` for a request that reused a pooled connection, and the body's chunks
    summed up, such as ``5 chunks, 20.5 kB``). Spans with status ERROR are red. Phases recorded
    as events (``phases="events"``) are drawn as rows too, in italics. A request's own bar is
    cut into a browser network panel's segments: queued (``▒``), connecting, sending, waiting
    for the server (``░``) and downloading. When the width is short, the bar narrows and the
    phases take short names (``DNS``, ``TLS``) before the URL and the time to first byte go.

    Colour and width follow the console: rich sizes the output to the terminal, honours
    ``NO_COLOR`` and ``COLUMNS``, and writes plain text when the output is piped.

    Example:

    ```python
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from aiohttp_otel import AioHttpClientInstrumentor
    from aiohttp_otel.waterfall import WaterfallSpanExporter

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(WaterfallSpanExporter()))
    trace.set_tracer_provider(provider)
    AioHttpClientInstrumentor().instrument()
    ```

    which prints, for a request on a new HTTPS connection (90 columns wide):

    ```text
    GET                    ▒█████████████████░ 5.1 ms  200 · ttfb 5.0 ms · https://localhost:8443/
      HTTP connection_setup ████████████████   3.9 ms  127.0.0.1:8443
        DNS lookup          █████              1.3 ms  localhost → 127.0.0.1
        socket connect           ██            0.5 ms  127.0.0.1:8443
        TLS client handshake       ███████     1.9 ms  TLS 1.3 · TLS_AES_256_GCM_SHA384
    ```

    Use it with ``SimpleSpanProcessor``, which exports each span as it ends, so a trace is
    drawn as soon as it is over. Spans whose root has not ended stay buffered (at most
    ``max_pending_traces`` traces; past that the oldest is drawn as it is);
    ``force_flush()`` and ``shutdown()`` draw whatever is pending.

    :param console: where to draw; by default a rich console on standard error, so the
        waterfalls do not mix with what the program prints to standard output.
    :param max_pending_traces: how many unfinished traces to hold before drawing the oldest.
    """

    def __init__(self, console: Console | None = None, *, max_pending_traces: int = 256) -> None:
        self._console = console if console is not None else Console(stderr=True)
        self._max_pending = max(1, max_pending_traces)
        self._pending: dict[int, list[ReadableSpan]] = {}
        # SDK processors may export from a worker thread; one trace is drawn at a time.
        self._lock = threading.Lock()
        self._shut_down = False

    @property
    def console(self) -> Console:
        """The console the waterfalls are drawn on."""
        return self._console

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shut_down:
            return SpanExportResult.FAILURE
        with self._lock:
            finished: list[int] = []
            for span in spans:
                trace_id = span.context.trace_id if span.context is not None else 0
                self._pending.setdefault(trace_id, []).append(span)
                if _is_local_root(span) and trace_id not in finished:
                    finished.append(trace_id)
            ready = [self._pending.pop(trace_id) for trace_id in finished]
            while len(self._pending) > self._max_pending:
                ready.append(self._pending.pop(next(iter(self._pending))))
            for trace_spans in ready:
                self._draw(trace_spans)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
            for trace_spans in pending:
                self._draw(trace_spans)
        return True

    def shutdown(self) -> None:
        self.force_flush()
        self._shut_down = True

    def _draw(self, spans: Sequence[ReadableSpan]) -> None:
        self._console.print(TraceWaterfall.of_spans(spans))
        self._console.print()
