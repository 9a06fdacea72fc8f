"""The console waterfall: its layout rules, and the exporter drawing real traces.

The layout (tree order, bar geometry, column widths, the words beside a bar) is checked as
pure functions. The exporter is checked on spans from the real SDK: spans given explicit times,
and spans of real requests to loopback servers, drawn on rich consoles that write to memory.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import re
from collections.abc import Awaitable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from rich.cells import cell_len
from rich.console import Console

from aiohttp_otel.console.layout import (
    Bar,
    Detail,
    Rank,
    Segment,
    bar_geometry,
    fit_details,
    format_bytes,
    format_duration,
    plan_columns,
    segment_cells,
    time_window,
    trace_rows,
)
from aiohttp_otel.waterfall import TraceWaterfall, WaterfallSpanExporter

from .conftest import Server, SessionFactory, closed_port, fetch, serve

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DURATION = r"\d+(\.\d)? (ms|µs)|\d+\.\d\d s"
# A bar is drawn with full blocks, light shades (a CLIENT span's waits) or a hairline.
BAR_GLYPH = re.compile("[█▒░▏]")


def bar_cells(row: str) -> int:
    return len(BAR_GLYPH.findall(row))


def bar_start(row: str) -> int:
    found = BAR_GLYPH.search(row)
    assert found, row
    return found.start()


def memory_console(width: int = 100, *, terminal: bool = False) -> Console:
    """A console that writes to memory: plain like a pipe, or coloured like a terminal."""
    return Console(
        file=io.StringIO(),
        width=width,
        force_terminal=terminal,
        color_system="standard" if terminal else None,
    )


def output(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def rows_of(text: str) -> list[str]:
    return [line for line in ANSI.sub("", text).splitlines() if line.strip()]


class Drawn:
    """A tracer provider whose spans are drawn on a memory console and also kept."""

    def __init__(self, console: Console, **exporter_options: int) -> None:
        self.console = console
        self.exporter = WaterfallSpanExporter(console, **exporter_options)
        self.kept = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.kept))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    @property
    def text(self) -> str:
        return output(self.console)


@pytest.fixture
def drawn() -> Iterator[Drawn]:
    recorder = Drawn(memory_console())
    yield recorder
    recorder.provider.shutdown()


def timed_tree(tracer: trace.Tracer) -> None:
    """root 0-100 ms > client 10-90 ms > (setup 10-40 ms > dns 10-20 ms), wait 0-0."""
    root = tracer.start_span("root", start_time=T0)
    root_context = trace.set_span_in_context(root)
    client = tracer.start_span("GET", root_context, SpanKind.CLIENT, start_time=T0 + 10 * MS)
    client_context = trace.set_span_in_context(client)
    setup = tracer.start_span("HTTP connection_setup", client_context, start_time=T0 + 10 * MS)
    dns = tracer.start_span("DNS lookup", trace.set_span_in_context(setup), start_time=T0 + 10 * MS)
    dns.set_attributes({"dns.question.name": "localhost", "dns.answers": ["127.0.0.1"]})
    dns.end(end_time=T0 + 20 * MS)
    setup.end(end_time=T0 + 40 * MS)
    client.set_attribute("http.response.status_code", 200)
    client.end(end_time=T0 + 90 * MS)
    root.end(end_time=T0 + 100 * MS)


# -- bar geometry ----------------------------------------------------------------------------

WINDOW = (T0, T0 + 100 * MS)


def test_a_span_over_the_whole_window_fills_the_column() -> None:
    assert bar_geometry(T0, T0 + 100 * MS, WINDOW, 40) == Bar(0, 40)


def test_offset_and_length_are_proportional_to_time() -> None:
    assert bar_geometry(T0 + 25 * MS, T0 + 75 * MS, WINDOW, 40) == Bar(10, 20)
    assert bar_geometry(T0 + 50 * MS, T0 + 100 * MS, WINDOW, 40) == Bar(20, 20)
    assert bar_geometry(T0, T0 + 10 * MS, WINDOW, 40) == Bar(0, 4)


def test_a_short_span_gets_at_least_one_cell() -> None:
    assert bar_geometry(T0 + 50 * MS, T0 + 50 * MS + 1, WINDOW, 40) == Bar(20, 1)


def test_a_short_span_at_the_very_end_stays_inside_the_column() -> None:
    assert bar_geometry(T0 + 100 * MS - 1, T0 + 100 * MS, WINDOW, 40) == Bar(39, 1)


def test_a_span_that_took_no_time_has_no_length() -> None:
    assert bar_geometry(T0 + 30 * MS, T0 + 30 * MS, WINDOW, 40) == Bar(12, 0)


def test_a_span_outside_the_window_is_clamped_to_it() -> None:
    assert bar_geometry(T0 - 50 * MS, T0 + 200 * MS, WINDOW, 40) == Bar(0, 40)


def test_a_window_of_no_time_draws_a_one_cell_bar_only_for_a_span_with_time() -> None:
    assert bar_geometry(T0, T0 + 1, (T0, T0), 40) == Bar(0, 1)
    assert bar_geometry(T0, T0, (T0, T0), 40) == Bar(0, 0)


@given(
    start=st.integers(0, 10**9),
    duration=st.integers(0, 10**9),
    window=st.integers(1, 2 * 10**9),
    width=st.integers(1, 300),
)
def test_every_bar_fits_its_column_and_starts_where_its_span_starts(
    start: int, duration: int, window: int, width: int
) -> None:
    bar = bar_geometry(T0 + start, T0 + start + duration, (T0, T0 + window), width)
    assert 0 <= bar.offset < width
    assert bar.offset + bar.length <= width
    visible = min(start + duration, window) - min(start, window)
    if visible > 0:
        assert bar.length >= 1
    if start < window:
        # The offset is the span's start in cells, rounded down (or pulled back to fit a bar).
        assert bar.offset <= start * width / window < bar.offset + 1 + bar.length


def test_a_longer_span_never_gets_a_shorter_bar() -> None:
    lengths = [bar_geometry(T0, T0 + d * MS, WINDOW, 50).length for d in range(0, 101, 5)]
    assert lengths == sorted(lengths)
    assert lengths[-1] == 50


# -- columns and words -----------------------------------------------------------------------


def test_columns_fit_the_width_and_a_wider_terminal_gets_longer_bars() -> None:
    narrow = plan_columns(80, name_need=26, duration_need=8, details_need=60)
    wide = plan_columns(160, name_need=26, duration_need=8, details_need=60)
    for width, columns in ((80, narrow), (160, wide)):
        assert columns.name == 26
        assert columns.name + 1 + columns.bar + 1 + columns.duration + 2 + columns.details <= width
    assert wide.bar > narrow.bar
    assert wide.details == 60  # everything fits when there is room
    assert narrow.details < 60


def test_a_long_name_takes_at_most_two_fifths_of_the_width() -> None:
    assert plan_columns(100, name_need=90, duration_need=8, details_need=0).name == 40


def test_no_details_leave_the_bar_all_the_room() -> None:
    columns = plan_columns(80, name_need=20, duration_need=8, details_need=0)
    assert columns.details == 0
    assert columns.bar == 80 - 20 - 1 - 1 - 8


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (42_000, "42 µs"),
        (3_700_000, "3.7 ms"),
        (108_240_000, "108.2 ms"),
        (2_351_000_000, "2.35 s"),
        (185_000_000_000, "3 min 05 s"),
    ],
)
def test_durations_are_formatted_for_reading(ns: int, text: str) -> None:
    assert format_duration(ns) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(512, "512 B"), (20_480, "20.5 kB"), (10_000_000, "10.0 MB"), (3 * 10**9, "3.0 GB")],
)
def test_sizes_are_formatted_in_decimal_units(size: int, text: str) -> None:
    assert format_bytes(size) == text


def test_facts_that_do_not_fit_go_lowest_rank_first_and_keep_their_order() -> None:
    facts = [
        Detail("200", rank=Rank.VITAL),
        Detail("2 B"),
        Detail("ttfb 1.0 ms", rank=Rank.KEY),
        Detail("reused connection", rank=Rank.NOTABLE),
        Detail("TLS_AES_256_GCM_SHA384", rank=Rank.MINOR),
        Detail("http://localhost:8080/ok", rank=Rank.KEY),
    ]
    texts = [fact.text for fact in fit_details(facts, 200)]
    assert texts == [fact.text for fact in facts]
    every = sum(len(fact.text) for fact in facts) + 3 * 5
    assert fit_details(facts, every) == facts
    # One cell short: the cipher goes first, then the size, then the reuse.
    assert [f.text for f in fit_details(facts, every - 1)] == [
        "200",
        "2 B",
        "ttfb 1.0 ms",
        "reused connection",
        "http://localhost:8080/ok",
    ]
    assert [f.text for f in fit_details(facts, 50)] == [
        "200",
        "ttfb 1.0 ms",
        "http://localhost:8080/ok",
    ]
    # Only key facts left: the URL stays, to be cut, while a readable part of it fits.
    assert [f.text for f in fit_details(facts, 40)] == [
        "200",
        "ttfb 1.0 ms",
        "http://localhost:8080/ok",
    ]
    assert [f.text for f in fit_details(facts, 30)] == ["200", "ttfb 1.0 ms"]
    # What cannot fit at all is left to the renderer's ellipsis, the outcome first.
    assert [f.text for f in fit_details(facts, 3)] == ["200"]


def test_to_keep_the_essential_facts_the_bar_narrows_then_the_names_shorten() -> None:
    plain = plan_columns(80, name_need=26, duration_need=6, details_need=60)
    assert plain.bar == 16
    assert plain.details < 46
    kept = plan_columns(
        80,
        name_need=26,
        duration_need=6,
        details_need=60,
        essential_needs=[46, 20],
        short_name_need=9,
    )
    assert kept.details >= 46
    assert kept.name < 26
    assert kept.short_names
    assert kept.bar >= 8
    assert kept.name + 1 + kept.bar + 1 + kept.duration + 2 + kept.details <= 80
    # Room enough: nothing shortens.
    wide = plan_columns(
        160,
        name_need=26,
        duration_need=6,
        details_need=60,
        essential_needs=[46],
        short_name_need=9,
    )
    assert (wide.name, wide.details, wide.short_names) == (26, 60, False)


def test_a_row_whose_essentials_cannot_fit_does_not_squeeze_the_others() -> None:
    alone = plan_columns(80, name_need=26, duration_need=6, details_need=200)
    hopeless = plan_columns(
        80,
        name_need=26,
        duration_need=6,
        details_need=200,
        essential_needs=[150],
        short_name_need=9,
    )
    assert hopeless == alone


def test_at_80_columns_a_streamed_request_keeps_its_url_and_ttfb(drawn: Drawn) -> None:
    """Its chunk summary and reuse cannot all fit: they go, the URL and ttfb stay."""
    url = "http://localhost:8080/stream"
    root = drawn.tracer.start_span("request", start_time=T0)
    client = drawn.tracer.start_span(
        "POST", trace.set_span_in_context(root), SpanKind.CLIENT, start_time=T0 + MS
    )
    client.set_attributes({"url.full": url, "http.response.status_code": 200})
    client.add_event("aiohttp.response.headers", timestamp=T0 + 20 * MS)
    for n in range(6):
        client.add_event(
            "aiohttp.response.chunk_received",
            {"aiohttp.chunk.size": 100, "aiohttp.chunk.offset": 100 * n},
            timestamp=T0 + (30 + 10 * n) * MS,
        )
    client.end(end_time=T0 + 90 * MS)
    root.end(end_time=T0 + 95 * MS)
    console = memory_console(80)
    console.print(TraceWaterfall.of_spans(drawn.kept.get_finished_spans()))
    rows = rows_of(output(console))
    assert all(cell_len(row) <= 80 for row in rows)
    post = next(row for row in rows if row.lstrip().startswith("POST"))
    assert post.endswith(f"200 · ttfb 19.0 ms · {url}"), post


# -- a CLIENT span's timeline ----------------------------------------------------------------


def timeline_trace(
    tracer: trace.Tracer,
    *,
    phases: str = "spans",
    events: dict[str, int] | None = None,
    failed_in_connect: bool = False,
) -> None:
    """A CLIENT span 0-100 ms: queued 0-10, setup 10-50 (DNS 12-20, TCP 20-25, TLS 25-45),
    then the timeline events given (ms), and its end at 100 ms (50 ms if it failed)."""
    end = 50 if failed_in_connect else 100
    client = tracer.start_span("POST", kind=SpanKind.CLIENT, start_time=T0)
    context = trace.set_span_in_context(client)
    phase_times = [
        ("wait_for_connection", "HTTP wait_for_connection", 0, 10, context),
        ("connection_setup", "HTTP connection_setup", 10, 50, context),
    ]
    if phases == "spans":
        for _, name, start, stop, parent in phase_times:
            span = tracer.start_span(name, parent, start_time=T0 + start * MS)
            if name == "HTTP connection_setup":
                setup_context = trace.set_span_in_context(span)
                for inner, a, b in (
                    ("DNS lookup", 12, 20),
                    ("socket connect", 20, 25),
                    ("TLS client handshake", 25, 45),
                ):
                    tracer.start_span(inner, setup_context, start_time=T0 + a * MS).end(
                        end_time=T0 + b * MS
                    )
            span.end(end_time=T0 + stop * MS)
    else:
        for key, a, b in (
            ("wait_for_connection", 0, 10),
            ("connection_setup", 10, 50),
            ("dns_lookup", 12, 20),
            ("socket_connect", 20, 25),
            ("tls_handshake", 25, 45),
        ):
            client.add_event(f"{key}.start", timestamp=T0 + a * MS)
            client.add_event(f"{key}.end", timestamp=T0 + b * MS)
    for name, at in (events or {}).items():
        client.add_event(name, timestamp=T0 + at * MS)
    client.end(end_time=T0 + end * MS)


def client_row_segments(drawn: Drawn) -> list[tuple[str, int, int]]:
    rows = [row for row in trace_rows(drawn.kept.get_finished_spans()) if row.role == "client"]
    assert len(rows) == 1
    return [
        (seg.kind, (seg.start_ns - T0) // MS, (seg.end_ns - T0) // MS) for seg in rows[0].segments
    ]


CONNECTING = [
    ("wait_for_connection", 0, 10),
    ("connection_setup", 10, 12),
    ("dns_lookup", 12, 20),
    ("socket_connect", 20, 25),
    ("tls_handshake", 25, 45),
    ("connection_setup", 45, 50),
]
TIMELINE = {
    "aiohttp.request.headers_sent": 52,
    "aiohttp.request.body_sent": 60,
    "aiohttp.response.headers": 80,
}


@pytest.mark.parametrize("phases", ["spans", "events"])
def test_a_client_span_is_cut_into_a_browser_panels_segments(drawn: Drawn, phases: str) -> None:
    timeline_trace(drawn.tracer, phases=phases, events=TIMELINE)
    assert client_row_segments(drawn) == [
        *CONNECTING,
        ("sending", 50, 60),
        ("waiting", 60, 80),
        ("downloading", 80, 100),
    ]


def test_without_a_body_sending_ends_when_the_headers_are_sent(drawn: Drawn) -> None:
    events = {"aiohttp.request.headers_sent": 52, "aiohttp.response.headers": 80}
    timeline_trace(drawn.tracer, events=events)
    assert client_row_segments(drawn)[-3:] == [
        ("sending", 50, 52),
        ("waiting", 52, 80),
        ("downloading", 80, 100),
    ]


def test_a_span_from_before_the_timeline_events_still_draws(drawn: Drawn) -> None:
    timeline_trace(drawn.tracer, events={"aiohttp.response.headers": 80})
    assert client_row_segments(drawn) == [
        *CONNECTING,
        ("waiting", 50, 80),
        ("downloading", 80, 100),
    ]


def test_a_request_that_failed_connecting_has_no_wait_nor_download(drawn: Drawn) -> None:
    timeline_trace(drawn.tracer, failed_in_connect=True)
    assert client_row_segments(drawn) == CONNECTING


def test_a_request_sent_and_never_answered_waits_until_it_ends(drawn: Drawn) -> None:
    timeline_trace(drawn.tracer, events={"aiohttp.request.headers_sent": 55})
    assert client_row_segments(drawn)[-2:] == [("sending", 50, 55), ("waiting", 55, 100)]


def test_segments_paint_exactly_the_bar_in_proportion() -> None:
    segments = [
        Segment("wait_for_connection", T0, T0 + 10 * MS),
        Segment("connection_setup", T0 + 10 * MS, T0 + 50 * MS),
        Segment("sending", T0 + 50 * MS, T0 + 50 * MS + 1),
        Segment("waiting", T0 + 50 * MS + 1, T0 + 80 * MS),
        Segment("downloading", T0 + 80 * MS, T0 + 100 * MS),
    ]
    bar = bar_geometry(T0, T0 + 100 * MS, WINDOW, 50)
    cells = segment_cells(segments, bar, WINDOW, 50)
    # Too short for a cell of its own, the send is left out; the rest is to scale.
    assert cells == [
        ("wait_for_connection", 5),
        ("connection_setup", 20),
        ("waiting", 15),
        ("downloading", 10),
    ]
    assert segment_cells(segments, Bar(3, 0), WINDOW, 50) == []


@given(
    cuts=st.lists(st.integers(0, 100 * MS), min_size=1, max_size=8),
    width=st.integers(1, 120),
)
def test_segment_cells_always_add_up_to_the_bar(cuts: list[int], width: int) -> None:
    bounds = [T0, *sorted(T0 + cut for cut in cuts), T0 + 100 * MS]
    segments = [Segment("sending", a, b) for a, b in itertools.pairwise(bounds) if b > a]
    bar = bar_geometry(T0, T0 + 100 * MS, WINDOW, width)
    cells = segment_cells(segments, bar, WINDOW, width)
    assert sum(length for _, length in cells) == (bar.length if segments else 0)
    assert all(length > 0 for _, length in cells)


def test_the_client_bar_shows_its_waits_in_shades(drawn: Drawn) -> None:
    timeline_trace(drawn.tracer, events=TIMELINE)
    client = next(row for row in rows_of(drawn.text) if row.startswith("POST "))
    bar = "".join(BAR_GLYPH.findall(client))
    # Queued (medium shade), connecting and sending (full), waiting (light), downloading.
    assert re.fullmatch("▒+█+░+█+", bar), bar
    queued, _, waiting, _ = (len(m) for m in re.findall("▒+|░+|█+", bar))
    assert abs(queued - 0.1 * len(bar)) <= 1
    assert abs(waiting - 0.2 * len(bar)) <= 1


# -- the tree --------------------------------------------------------------------------------


def test_rows_are_depth_first_with_children_in_start_order(drawn: Drawn) -> None:
    root = drawn.tracer.start_span("root", start_time=T0)
    context = trace.set_span_in_context(root)
    # Started late first, and ended before early: the rows must follow start times.
    late = drawn.tracer.start_span("late", context, start_time=T0 + 50 * MS)
    early = drawn.tracer.start_span("early", context, start_time=T0 + 10 * MS)
    grandchild = drawn.tracer.start_span(
        "grandchild", trace.set_span_in_context(late), start_time=T0 + 60 * MS
    )
    for span in (grandchild, late, early):
        span.end(end_time=T0 + 70 * MS)
    root.end(end_time=T0 + 80 * MS)
    rows = trace_rows(drawn.kept.get_finished_spans())
    assert [(r.depth, r.name) for r in rows] == [
        (0, "root"),
        (1, "early"),
        (1, "late"),
        (2, "grandchild"),
    ]
    assert time_window(rows) == (T0, T0 + 80 * MS)


def test_a_span_whose_parent_is_missing_is_drawn_at_the_top(drawn: Drawn) -> None:
    timed_tree(drawn.tracer)
    spans = [s for s in drawn.kept.get_finished_spans() if s.name != "GET"]
    assert [(r.depth, r.name) for r in trace_rows(spans)] == [
        (0, "root"),
        (0, "HTTP connection_setup"),
        (1, "DNS lookup"),
    ]


# -- the exporter ----------------------------------------------------------------------------


def test_a_trace_is_drawn_when_its_root_ends_not_before(drawn: Drawn) -> None:
    root = drawn.tracer.start_span("root", start_time=T0)
    child = drawn.tracer.start_span(
        "child", trace.set_span_in_context(root), start_time=T0 + 10 * MS
    )
    child.end(end_time=T0 + 30 * MS)
    assert drawn.text == ""
    root.end(end_time=T0 + 40 * MS)
    assert [line.split()[0] for line in rows_of(drawn.text)] == ["root", "child"]
    assert rows_of(drawn.text)[1].startswith("  child ")


def test_the_rows_show_bars_to_scale_durations_and_details(drawn: Drawn) -> None:
    timed_tree(drawn.tracer)
    rows = rows_of(drawn.text)
    assert [BAR_GLYPH.split(row)[0].strip() for row in rows] == [
        "root",
        "GET",
        "HTTP connection_setup",
        "DNS lookup",
    ]
    assert re.search(r"[█▒░▏] +100\.0 ms$", rows[0])
    assert re.search(r"[█▒░▏] +80\.0 ms +200$", rows[1])
    assert re.search(r"[█▒░▏] +10\.0 ms +localhost → 127\.0\.0\.1$", rows[3])
    bars = [(bar_start(row), bar_cells(row)) for row in rows]
    root_start, root_length = bars[0]
    # The bar column starts right after the name column, the widest indented name.
    assert root_start == len("    HTTP connection_setup") + 1
    # The client starts 10% into the root and lasts 80% of it; setup 30%, DNS 10%.
    for (start, length), (offset, share) in zip(
        bars[1:], ((0.1, 0.8), (0.1, 0.3), (0.1, 0.1)), strict=True
    ):
        assert abs(start - root_start - offset * root_length) <= 1
        assert abs(length - share * root_length) <= 1


def test_a_span_with_a_remote_parent_is_a_root(drawn: Drawn) -> None:
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1))
    span = drawn.tracer.start_span(
        "from upstream", trace.set_span_in_context(NonRecordingSpan(remote))
    )
    span.end()
    assert rows_of(drawn.text)[0].startswith("from upstream ")


def test_force_flush_draws_the_traces_whose_root_has_not_ended(drawn: Drawn) -> None:
    root = drawn.tracer.start_span("root")
    drawn.tracer.start_span("child", trace.set_span_in_context(root)).end()
    assert drawn.text == ""
    assert drawn.exporter.force_flush()
    assert rows_of(drawn.text)[0].startswith("child ")
    root.end()


def test_past_the_pending_limit_the_oldest_trace_is_drawn() -> None:
    recorder = Drawn(memory_console(), max_pending_traces=1)
    first = recorder.tracer.start_span("first root")
    recorder.tracer.start_span("first child", trace.set_span_in_context(first)).end()
    assert recorder.text == ""
    second = recorder.tracer.start_span("second root")
    recorder.tracer.start_span("second child", trace.set_span_in_context(second)).end()
    assert [line.split()[0:2] for line in rows_of(recorder.text)] == [["first", "child"]]
    first.end()
    second.end()


def test_after_shutdown_export_fails_and_nothing_is_drawn(drawn: Drawn) -> None:
    drawn.exporter.shutdown()
    span = drawn.tracer.start_span("late")
    span.end()
    assert drawn.text == ""
    assert drawn.exporter.export([span]) is SpanExportResult.FAILURE  # type: ignore[list-item]


def test_the_default_console_writes_to_standard_error() -> None:
    assert WaterfallSpanExporter().console.stderr


def _bar_lengths(spans: list[ReadableSpan], width: int) -> list[int]:
    console = memory_console(width)
    console.print(TraceWaterfall.of_spans(spans))
    rows = rows_of(output(console))
    assert all(cell_len(row) <= width for row in rows)
    return [bar_cells(row) for row in rows]


def test_the_bars_follow_the_width(drawn: Drawn) -> None:
    timed_tree(drawn.tracer)
    spans = list(drawn.kept.get_finished_spans())
    narrow, wide = _bar_lengths(spans, 60), _bar_lengths(spans, 140)
    assert wide[0] > narrow[0]
    assert wide[1] > narrow[1]


def test_piped_output_is_plain_and_a_terminal_gets_colour() -> None:
    plain, coloured = Drawn(memory_console()), Drawn(memory_console(terminal=True))
    for recorder in (plain, coloured):
        timed_tree(recorder.tracer)
    assert "\x1b[" not in plain.text
    assert "\x1b[" in coloured.text
    assert rows_of(plain.text) == rows_of(coloured.text)


# -- real requests ---------------------------------------------------------------------------


@pytest.fixture
def traced(make_session: SessionFactory) -> Iterator[tuple[Drawn, SessionFactory]]:
    """Sessions whose spans are drawn on a 140-column colour console."""
    recorder = Drawn(memory_console(140, terminal=True))

    def factory(**options: Any) -> aiohttp.ClientSession:
        return make_session(tracer_provider=recorder.provider, **options)

    yield recorder, factory
    recorder.provider.shutdown()


async def _under_root(recorder: Drawn, request: Awaitable[object]) -> None:
    with recorder.tracer.start_as_current_span("root"):
        await request


def _section(rows: list[str], name: str) -> str:
    matches = [row for row in rows if BAR_GLYPH.split(row)[0].strip() == name]
    assert len(matches) == 1, (name, rows)
    return matches[0]


async def test_a_new_https_connection_shows_every_phase(
    traced: tuple[Drawn, SessionFactory], https_server: Server
) -> None:
    recorder, factory = traced
    session = factory()
    await _under_root(recorder, fetch(session, https_server.url()))
    rows = rows_of(recorder.text)
    assert [BAR_GLYPH.split(row)[0].strip() for row in rows] == [
        "root",
        "GET",
        "HTTP connection_setup",
        "DNS lookup",
        "socket connect",
        "TLS client handshake",
    ]
    for row in rows:
        assert re.search(rf"[█▒░▏] +({DURATION})", row), row
    assert re.search(
        rf"200 · 2 B · ttfb ({DURATION}) · https://localhost:\d+/ok", _section(rows, "GET")
    )
    assert "localhost → 127.0.0.1" in _section(rows, "DNS lookup")
    assert re.search(r"TLS 1\.[23] · TLS_", _section(rows, "TLS client handshake"))
    assert f"127.0.0.1:{https_server.port}" in _section(rows, "socket connect")


async def test_a_reused_connection_is_named_and_has_no_setup_rows(
    traced: tuple[Drawn, SessionFactory], http_server: Server
) -> None:
    recorder, factory = traced
    session = factory()
    await fetch(session, http_server.url())
    before = len(recorder.text)
    await _under_root(recorder, fetch(session, http_server.url()))
    rows = rows_of(recorder.text[before:])
    assert [BAR_GLYPH.split(row)[0].strip() for row in rows] == ["root", "GET"]
    assert "reused connection" in rows[1]


async def test_a_streamed_body_is_summed_up_in_one_row(
    traced: tuple[Drawn, SessionFactory],
) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 5 * 1000
        await response.prepare(request)
        for _ in range(5):
            await response.write(b"x" * 1000)
            await asyncio.sleep(0.01)
        return response

    app = web.Application()
    app.router.add_get("/stream", stream)
    recorder, factory = traced
    async with serve(app) as server:
        session = factory()
        async with session.get(server.url("/stream")) as response:
            async for _ in response.content.iter_chunked(1000):
                pass
    rows = rows_of(recorder.text)
    client = _section(rows, "GET")
    # Usually one chunk event per write; a loaded machine may read two writes at once.
    chunks = re.search(r"200 · (\d) chunks?, 5\.0 kB · ttfb ", client)
    assert chunks, client
    assert 1 <= int(chunks.group(1)) <= 5
    assert not any("chunk_received" in row for row in rows)


async def test_failed_spans_are_red_and_name_their_error(
    traced: tuple[Drawn, SessionFactory],
) -> None:
    recorder, factory = traced
    session = factory()
    with pytest.raises(aiohttp.ClientConnectorError):
        await _under_root(recorder, fetch(session, f"http://localhost:{closed_port()}/"))
    text = recorder.text
    failed = [line for line in text.splitlines() if "ConnectionRefusedError" in line]
    assert len(failed) == 1
    # The row's name is drawn in red (SGR 31), unlike the DNS lookup that succeeded.
    assert re.search(r"\x1b\[[0-9;]*31m +socket connect", failed[0]), repr(failed[0])
    dns = next(line for line in text.splitlines() if "DNS lookup" in line)
    assert not re.search(r"\x1b\[[0-9;]*31m +DNS lookup", dns)
    assert "ClientConnectorError" in _section(rows_of(text), "GET")


async def test_phases_recorded_as_events_are_drawn_as_rows(
    traced: tuple[Drawn, SessionFactory], http_server: Server
) -> None:
    recorder, factory = traced
    session = factory(phases="events")
    await _under_root(recorder, fetch(session, http_server.url()))
    assert [s.name for s in recorder.kept.get_finished_spans()] == ["GET", "root"]
    rows = rows_of(recorder.text)
    assert [BAR_GLYPH.split(row)[0].rstrip() for row in rows] == [
        "root",
        "  GET",
        "    HTTP connection_setup",
        "      DNS lookup",
        "      socket connect",
    ]
    assert "localhost → 127.0.0.1" in _section(rows, "DNS lookup")


SEGMENT_ORDER = [
    "wait_for_connection",
    "connection_setup",
    "dns_lookup",
    "socket_connect",
    "tls_handshake",
    "sending",
    "waiting",
    "downloading",
]


@pytest.mark.parametrize("phases", ["spans", "events"])
async def test_a_real_post_is_drawn_as_its_timeline(
    traced: tuple[Drawn, SessionFactory], https_server: Server, phases: str
) -> None:
    recorder, factory = traced
    session = factory(phases=phases)
    await fetch(session, https_server.url(), "POST", data=b"x" * 5000)
    rows = [row for row in trace_rows(recorder.kept.get_finished_spans()) if row.role == "client"]
    assert len(rows) == 1
    row = rows[0]
    kinds = [segment.kind for segment in row.segments]
    # Every segment in a browser panel's order (connecting's phases may alternate with the
    # setup's own time), one after the other from the span's start to its end.
    outer = [
        kind for kind in kinds if kind not in ("dns_lookup", "socket_connect", "tls_handshake")
    ]
    assert outer == sorted(outer, key=SEGMENT_ORDER.index)
    assert {"connection_setup", "tls_handshake", "waiting"} <= set(kinds)
    assert row.segments[0].start_ns == row.start_ns
    assert row.segments[-1].end_ns == row.end_ns
    for before, after in itertools.pairwise(row.segments):
        assert before.end_ns == after.start_ns
    client = next(s for s in recorder.kept.get_finished_spans() if s.kind is SpanKind.CLIENT)
    marks = {event.name: event.timestamp for event in client.events}
    if "aiohttp.request.body_sent" in marks:  # the request timeline events (issue 12)
        sending = next(s for s in row.segments if s.kind == "sending")
        assert sending.end_ns == marks["aiohttp.request.body_sent"]
    headers = marks["aiohttp.response.headers"]
    assert any(s.kind == "waiting" and s.end_ns == headers for s in row.segments)
