"""The waterfall's layout: span trees, bar geometry, column widths and the words beside a bar.

Pure functions of finished spans and a width in terminal cells: no terminal, no colour. The
renderer in :mod:`aiohttp_otel.console.waterfall` only paints what these return, so every rule here is
testable on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from .._phases import PHASES, Phase

# Below this a bar column cannot show proportions; above it bars are no easier to compare.
_MIN_BAR = 16
_MAX_BAR = 100
_MIN_NAME = 12
_DETAIL_GAP = 2
_INDENT = 2

_PHASE_BY_SPAN_NAME = {phase.span_name: phase for phase in PHASES}
_PHASE_BY_KEY = {phase.key: phase for phase in PHASES}
_REUSED_LINK = "aiohttp.connection.reused"
_RESPONSE_CHUNK = "aiohttp.response.chunk_received"
_REQUEST_CHUNK = "aiohttp.request.chunk_sent"
_HEADERS_EVENT = "aiohttp.response.headers"


class Tone(enum.Enum):
    """What a piece of text means, for the renderer to colour; the layout never picks colours."""

    PLAIN = "plain"
    GOOD = "good"
    NOTICE = "notice"
    BAD = "bad"
    QUIET = "quiet"


class Detail(NamedTuple):
    """One fact shown beside a bar, such as ``200`` or ``TLS 1.3``."""

    text: str
    tone: Tone = Tone.PLAIN


@dataclass(frozen=True)
class Row:
    """One line of the waterfall: a span, or a phase recorded as a pair of events."""

    name: str
    depth: int
    start_ns: int
    end_ns: int
    role: str
    """``client``, ``server``, ``internal``, ``producer``, ``consumer``, or a phase key such
    as ``dns_lookup``: what the bar stands for, so the renderer can colour it."""
    failed: bool
    details: tuple[Detail, ...]
    from_events: bool = False
    """True for a phase drawn from its ``.start``/``.end`` events (``phases="events"``)."""

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def label(self) -> str:
        """The name, indented by depth."""
        return " " * (_INDENT * self.depth) + self.name


class Bar(NamedTuple):
    """Where a span's bar sits in a bar column: ``offset`` cells in, ``length`` cells long."""

    offset: int
    length: int


class Columns(NamedTuple):
    """Widths in cells; ``details`` is 0 when nothing fits beside the duration."""

    name: int
    bar: int
    duration: int
    details: int


# -- tree ------------------------------------------------------------------------------------


def _span_id(span: ReadableSpan) -> int:
    context = span.context
    return int(context.span_id) if context is not None else 0


def _start(span: ReadableSpan) -> int:
    return span.start_time or 0


def _end(span: ReadableSpan) -> int:
    # A span handed over unfinished is drawn as an instant, not stretched to "now".
    return max(span.end_time or _start(span), _start(span))


def trace_rows(spans: Iterable[ReadableSpan]) -> list[Row]:
    """The rows of one trace: depth-first, each span's children sorted by start time.

    A span whose parent is not among ``spans`` (a remote parent, or one not exported yet) is
    drawn at the top level. Phases recorded as events on a span become rows under it.
    """
    by_id: dict[int, ReadableSpan] = {}
    for span in spans:
        by_id.setdefault(_span_id(span), span)
    children: dict[int | None, list[ReadableSpan]] = {}
    for span_id, span in by_id.items():
        parent = span.parent
        parent_id = parent.span_id if parent is not None and parent.span_id in by_id else None
        if parent_id == span_id:
            parent_id = None
        children.setdefault(parent_id, []).append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: (_start(s), _end(s)))

    rows: list[Row] = []
    seen: set[int] = set()
    stack: list[tuple[ReadableSpan, int]] = [(s, 0) for s in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        span_id = _span_id(span)
        if span_id in seen:
            continue
        seen.add(span_id)
        row = span_row(span, depth)
        rows.append(row)
        rows.extend(event_phase_rows(span, depth + 1))
        stack.extend((child, depth + 1) for child in reversed(children.get(span_id, [])))
    # Spans caught in a parent cycle (never produced by a real tracer) still get drawn.
    rows.extend(span_row(s, 0) for i, s in by_id.items() if i not in seen)
    return rows


def _role(span: ReadableSpan) -> str:
    phase = _PHASE_BY_SPAN_NAME.get(span.name)
    if phase is not None and span.kind is SpanKind.INTERNAL:
        return phase.key
    return span.kind.name.lower()


def span_row(span: ReadableSpan, depth: int) -> Row:
    """The row for one span at ``depth``."""
    return Row(
        name=span.name,
        depth=depth,
        start_ns=_start(span),
        end_ns=_end(span),
        role=_role(span),
        failed=span.status.status_code is StatusCode.ERROR,
        details=tuple(span_details(span)),
    )


def event_phase_rows(span: ReadableSpan, depth: int) -> list[Row]:
    """Rows for phases recorded as ``<phase>.start``/``<phase>.end`` event pairs on ``span``."""
    open_starts: dict[str, list[int]] = {}
    found: list[tuple[Phase, int, int, Mapping[str, Any]]] = []
    for event in span.events:
        key, _, edge = event.name.rpartition(".")
        phase = _PHASE_BY_KEY.get(key)
        if phase is None:
            continue
        if edge == "start":
            open_starts.setdefault(key, []).append(event.timestamp)
        elif edge == "end" and open_starts.get(key):
            start = open_starts[key].pop(0)
            found.append((phase, start, max(event.timestamp, start), event.attributes or {}))
    has_setup = any(phase.key == "connection_setup" for phase, *_ in found)
    found.sort(key=lambda item: (item[1], not item[0].under_setup))
    return [
        Row(
            name=phase.span_name,
            depth=depth + (1 if phase.under_setup and has_setup else 0),
            start_ns=start,
            end_ns=end,
            role=phase.key,
            failed="error.type" in attributes,
            details=tuple(attribute_details(attributes)),
            from_events=True,
        )
        for phase, start, end, attributes in found
    ]


def time_window(rows: Sequence[Row]) -> tuple[int, int]:
    """The trace's span of time: from the earliest start to the latest end."""
    if not rows:
        return 0, 0
    return min(r.start_ns for r in rows), max(r.end_ns for r in rows)


# -- geometry --------------------------------------------------------------------------------


def bar_geometry(start_ns: int, end_ns: int, window: tuple[int, int], width: int) -> Bar:
    """Place a span on a bar column ``width`` cells wide that stands for ``window``.

    The offset is the span's start, proportional to the window and rounded down; the bar ends
    at the cell nearest to the span's end. A span that took any time is at least one cell, and
    no bar runs past the column. A span that took no time has length 0 (the renderer draws a
    hairline at its offset).
    """
    if width <= 0:
        return Bar(0, 0)
    window_start, window_end = window
    total = window_end - window_start
    if total <= 0:
        return Bar(0, 1 if end_ns > start_ns else 0)
    begin = min(max(start_ns - window_start, 0), total)
    finish = min(max(end_ns - window_start, begin), total)
    offset = min(begin * width // total, width - 1)
    end_cell = (2 * finish * width + total) // (2 * total)
    length = end_cell - offset
    if finish > begin:
        length = max(length, 1)
        offset = min(offset, width - length)
    return Bar(offset, max(length, 0))


def plan_columns(width: int, name_need: int, duration_need: int, details_need: int) -> Columns:
    """Share ``width`` cells between the name, the bar, the duration and the details.

    The name gets what it needs, up to two fifths of the width. The bar gets at least two fifths
    of what is left (and never less than a readable minimum when the width allows), the details
    the rest; a wide terminal gives the details all they need and the bar the remainder, up to
    a maximum length past which bars are no easier to compare.
    """
    name = min(max(name_need, _MIN_NAME), max(_MIN_NAME, width * 2 // 5))
    left = max(width - name - 1 - 1 - duration_need, 1)
    wanted = details_need + _DETAIL_GAP if details_need else 0
    bar = min(max(left - wanted, left * 2 // 5, min(_MIN_BAR, left)), _MAX_BAR)
    details = max(left - bar - _DETAIL_GAP, 0) if details_need else 0
    return Columns(name, bar, duration_need, min(details, details_need))


# -- words -----------------------------------------------------------------------------------


def format_duration(ns: int) -> str:
    """``42 µs``, ``3.7 ms``, ``108.2 ms``, ``2.35 s``, ``3 min 05 s``."""
    if ns < 100_000:
        return f"{ns / 1_000:.0f} µs"
    if ns < 999_950_000:
        return f"{ns / 1_000_000:.1f} ms"
    if ns < 60_000_000_000:
        return f"{ns / 1_000_000_000:.2f} s"
    minutes, seconds = divmod(round(ns / 1_000_000_000), 60)
    return f"{minutes} min {seconds:02d} s"


def format_bytes(size: int) -> str:
    """``512 B``, ``20.5 kB``, ``10.0 MB`` (decimal units, as network tools count)."""
    if size < 1000:
        return f"{size} B"
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if size < scale * 1000 or unit == "GB":
            value = size / scale
            break
    return f"{value:.1f} {unit}"


def _address(host: Any, port: Any) -> str:
    text = str(host)
    if ":" in text:
        text = f"[{text}]"
    return text if port is None else f"{text}:{port}"


def _status_detail(code: Any) -> Detail:
    try:
        number = int(code)
    except (TypeError, ValueError):
        return Detail(str(code))
    tone = Tone.BAD if number >= 400 else Tone.NOTICE if number >= 300 else Tone.GOOD
    return Detail(str(number), tone)


def attribute_details(attributes: Mapping[str, Any]) -> list[Detail]:
    """The key facts in a span's (or a phase event's) attributes, most telling first.

    The error, the status code and the resend count come before addresses and TLS details;
    the URL, the longest, comes last so a narrow terminal crops it first.
    """
    out: list[Detail] = []
    get = attributes.get
    status = get("http.response.status_code")
    # An HTTP error's error.type is its status code, shown once.
    if "error.type" in attributes and str(get("error.type")) != str(status):
        # The class name is enough to read; the full dotted value is in the exported span.
        out.append(Detail(str(get("error.type")).rpartition(".")[2], Tone.BAD))
    if status is not None:
        out.append(_status_detail(status))
    resend = get("http.request.resend_count")
    if resend:
        out.append(Detail(f"resend {resend}", Tone.NOTICE))
    if "dns.question.name" in attributes:
        answers = get("dns.answers")
        question = str(get("dns.question.name"))
        out.append(Detail(f"{question} → {', '.join(map(str, answers))}" if answers else question))
    if get("aiohttp.dns.joined"):
        out.append(Detail("joined a lookup in flight", Tone.NOTICE))
    if get("aiohttp.dns.cache_hit"):
        out.append(Detail("DNS cache hit", Tone.NOTICE))
    if "tls.protocol.version" in attributes:
        protocol = str(get("tls.protocol.name", "tls")).upper()
        out.append(Detail(f"{protocol} {get('tls.protocol.version')}"))
    if "tls.cipher" in attributes:
        out.append(Detail(str(get("tls.cipher")), Tone.QUIET))
    if get("tls.next_protocol"):
        out.append(Detail(f"ALPN {get('tls.next_protocol')}", Tone.QUIET))
    if get("tls.resumed"):
        out.append(Detail("session resumed", Tone.NOTICE))
    if "url.full" not in attributes:
        # A request span shows its URL instead; a TLS span already names the server.
        if "network.peer.address" in attributes:
            peer = _address(get("network.peer.address"), get("network.peer.port"))
            out.append(Detail(peer, Tone.QUIET))
        elif "server.address" in attributes and not out:
            server = _address(get("server.address"), get("server.port"))
            out.append(Detail(server, Tone.QUIET))
    return out


def span_details(span: ReadableSpan) -> list[Detail]:
    """Attribute facts, then the connection reuse link, the body summary and the URL."""
    attributes = span.attributes or {}
    out = attribute_details(attributes)
    description = span.status.description
    if (
        span.status.status_code is StatusCode.ERROR
        and description
        and "error.type" not in attributes
    ):
        out.insert(0, Detail(description, Tone.BAD))
    out.extend(body_details(span))
    if any((link.attributes or {}).get(_REUSED_LINK) for link in span.links):
        out.append(Detail("reused connection", Tone.NOTICE))
    if "url.full" in attributes:
        out.append(Detail(str(attributes["url.full"]), Tone.QUIET))
    return out


def body_details(span: ReadableSpan) -> list[Detail]:
    """The body's arrival in a few words (``5 chunks, 20.5 kB``, ``ttfb 2.1 ms``), not an
    event per row: a download can have dozens of chunk events."""
    received = sent = 0
    received_bytes = sent_bytes = 0
    headers_at: int | None = None
    for event in span.events:
        if event.name == _RESPONSE_CHUNK:
            received += 1
            received_bytes += _chunk_size(event.attributes)
        elif event.name == _REQUEST_CHUNK:
            sent += 1
            sent_bytes += _chunk_size(event.attributes)
        elif event.name == _HEADERS_EVENT and headers_at is None:
            headers_at = event.timestamp
    attributes = span.attributes or {}
    out: list[Detail] = []
    if sent:
        out.append(Detail("sent " + _chunks(sent, sent_bytes, attributes, "request")))
    if received:
        out.append(Detail(_chunks(received, received_bytes, attributes, "response")))
        if headers_at is not None:
            ttfb = format_duration(headers_at - _start(span))
            out.append(Detail(f"ttfb {ttfb}", Tone.QUIET))
    else:
        size = attributes.get("http.response.body.size")
        if isinstance(size, int):
            out.append(Detail(format_bytes(size)))
    return out


def _chunk_size(attributes: Mapping[str, Any] | None) -> int:
    size = (attributes or {}).get("aiohttp.chunk.size")
    return size if isinstance(size, int) else 0


def _chunks(count: int, counted: int, attributes: Mapping[str, Any], direction: str) -> str:
    total = attributes.get(f"http.{direction}.body.size")
    size = total if isinstance(total, int) else counted
    # Chunk events are capped per span; a total beyond what they add up to means more came.
    more = "+" if size > counted else ""
    return f"{count}{more} chunk{'s' if count != 1 or more else ''}, {format_bytes(size)}"
