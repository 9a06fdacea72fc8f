"""The waterfall's layout: span trees, bar geometry, column widths and the words beside a bar.

Pure functions of finished spans and a width in terminal cells: no terminal, no colour. The
renderer in :mod:`aiohttp_otel.console.waterfall` only paints what these return, so every rule
here is testable on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from rich.cells import cell_len

from .._phases import PHASES, Phase

# Below this a bar column cannot show proportions; above it bars are no easier to compare.
_MIN_BAR = 16
_MAX_BAR = 100
_MIN_NAME = 12
# How short the bar may get to keep a row's essential facts in view, before names shorten.
_NARROW_BAR = 8
_DETAIL_GAP = 2
_INDENT = 2
_SEPARATOR_CELLS = 3  # " · " between two facts
# The fewest cells of a URL worth showing cut, rather than not at all.
_MIN_CUT = 16

_PHASE_BY_SPAN_NAME = {phase.span_name: phase for phase in PHASES}
_PHASE_BY_KEY = {phase.key: phase for phase in PHASES}
_REUSED_LINK = "aiohttp.connection.reused"
_RESPONSE_CHUNK = "aiohttp.response.chunk_received"
_REQUEST_CHUNK = "aiohttp.request.chunk_sent"
_HEADERS_EVENT = "aiohttp.response.headers"
_HEADERS_SENT_EVENT = "aiohttp.request.headers_sent"
_BODY_SENT_EVENT = "aiohttp.request.body_sent"
# What a narrow name column shows instead of a phase's span name: a browser panel's words.
SHORT_PHASE_NAMES = {
    "wait_for_connection": "queued",
    "connection_setup": "setup",
    "dns_lookup": "DNS",
    "socket_connect": "TCP",
    "proxy_connect": "tunnel",
    "tls_handshake": "TLS",
}


#: The phases inside a connection's setup, drawn as parts of its "connecting" segment.
_CONNECTING = frozenset({"dns_lookup", "socket_connect", "proxy_connect", "tls_handshake"})


class Tone(enum.Enum):
    """What a piece of text means, for the renderer to colour; the layout never picks colours."""

    PLAIN = "plain"
    GOOD = "good"
    NOTICE = "notice"
    BAD = "bad"
    QUIET = "quiet"


class Rank(enum.IntEnum):
    """How much a fact matters: when a row's facts do not fit, the lowest rank goes first."""

    MINOR = 0
    """Detail a reader rarely needs at a glance: the cipher, ALPN, a resumed session."""
    NORMAL = 1
    """Sizes, addresses, the TLS version."""
    NOTABLE = 2
    """What the pool did: a reused connection, a DNS cache hit, a joined lookup."""
    KEY = 3
    """What the row is about: the URL, the time to first byte, the DNS answer, a resend."""
    VITAL = 4
    """The outcome: the error and the status code."""


class Detail(NamedTuple):
    """One fact shown beside a bar, such as ``200`` or ``TLS 1.3``."""

    text: str
    tone: Tone = Tone.PLAIN
    rank: Rank = Rank.NORMAL


class Segment(NamedTuple):
    """A stretch of a CLIENT span's time, as a browser's network panel draws it.

    ``kind`` is ``wait_for_connection`` (queued), ``connection_setup``, ``dns_lookup``,
    ``socket_connect``, ``proxy_connect``, ``tls_handshake`` (connecting), ``sending``,
    ``waiting`` (for the server's first byte) or ``downloading``.
    """

    kind: str
    start_ns: int
    end_ns: int


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
    segments: tuple[Segment, ...] = ()
    """A CLIENT span's timeline (queued, connecting, sending, waiting, downloading)."""

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def label(self) -> str:
        """The name, indented by depth."""
        return " " * (_INDENT * self.depth) + self.name

    @property
    def short_label(self) -> str:
        """The label for a narrow name column: a phase by its short name (``DNS``)."""
        short = SHORT_PHASE_NAMES.get(self.role, self.name)
        return " " * (_INDENT * self.depth) + short


class Bar(NamedTuple):
    """Where a span's bar sits in a bar column: ``offset`` cells in, ``length`` cells long."""

    offset: int
    length: int


class Columns(NamedTuple):
    """Widths in cells; ``details`` is 0 when nothing fits beside the duration.

    ``short_names`` is true when the name column is narrower than the full names need: the
    rows then show their :attr:`Row.short_label`.
    """

    name: int
    bar: int
    duration: int
    details: int
    short_names: bool = False


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
    drawn at the top level. Phases recorded as events on a span become rows under it. Each
    CLIENT span carries its timeline segments, from its phase children or phase events and
    its timeline events.
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
        if span.kind is SpanKind.CLIENT:
            phases = _child_phases(span_id, children) + [
                PhaseTime(phase.key, start, end) for phase, start, end, _ in _event_phases(span)
            ]
            row = replace(row, segments=client_segments(row.start_ns, row.end_ns, phases, span))
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


def _event_phases(span: ReadableSpan) -> list[tuple[Phase, int, int, Mapping[str, Any]]]:
    """Phases recorded as ``<phase>.start``/``<phase>.end`` event pairs, in start order."""
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
    found.sort(key=lambda item: (item[1], not item[0].under_setup))
    return found


def event_phase_rows(span: ReadableSpan, depth: int) -> list[Row]:
    """Rows for phases recorded as ``<phase>.start``/``<phase>.end`` event pairs on ``span``."""
    found = _event_phases(span)
    has_setup = any(phase.key == "connection_setup" for phase, *_ in found)
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


# -- a CLIENT span's timeline ----------------------------------------------------------------


class PhaseTime(NamedTuple):
    """When one connection phase of a request ran: ``key`` is a phase key (``dns_lookup``)."""

    key: str
    start_ns: int
    end_ns: int


def _child_phases(
    span_id: int, children: Mapping[int | None, list[ReadableSpan]]
) -> list[PhaseTime]:
    """The phase spans under a CLIENT span, and those under its connection setup."""
    found: list[PhaseTime] = []
    pending = list(children.get(span_id, []))
    while pending:
        child = pending.pop(0)
        role = _role(child)
        if role not in _PHASE_BY_KEY:
            continue
        found.append(PhaseTime(role, _start(child), _end(child)))
        if role == "connection_setup":
            pending.extend(children.get(_span_id(child), []))
    return found


def _first_event(span: ReadableSpan, name: str) -> int | None:
    return next((event.timestamp for event in span.events if event.name == name), None)


def client_segments(
    start_ns: int, end_ns: int, phases: Sequence[PhaseTime], span: ReadableSpan | None = None
) -> tuple[Segment, ...]:
    """A CLIENT span's time cut into a browser panel's segments, each from where the last
    one ended: queued (until the last wait for a connection ends), connecting (the setup, with
    its DNS, TCP and TLS phases inside), sending (until ``aiohttp.request.body_sent``, or
    ``aiohttp.request.headers_sent`` without a body), waiting (until
    ``aiohttp.response.headers``) and downloading (until the span ends).

    Each segment is drawn from whatever is there: a span recorded before the timeline events
    existed has no sending segment, and a request that failed before its response has no
    download. Nothing is drawn past the span's end.
    """
    cursor = start_ns
    out: list[Segment] = []

    def reach(kind: str, until: int) -> None:
        nonlocal cursor
        until = min(until, end_ns)
        if until > cursor:
            out.append(Segment(kind, cursor, until))
            cursor = until

    queued = [p.end_ns for p in phases if p.key == "wait_for_connection"]
    if queued:
        reach("wait_for_connection", max(queued))
    setups = [p for p in phases if p.key == "connection_setup"]
    inner = sorted(
        (p for p in phases if p.key in _CONNECTING),
        key=lambda p: p.start_ns,
    )
    for setup in setups[:1]:
        # Until a connection attempt begins, the request is waiting for a connection too.
        reach("wait_for_connection", setup.start_ns)
        for phase in inner:
            reach("connection_setup", phase.start_ns)
            reach(phase.key, phase.end_ns)
        reach("connection_setup", setup.end_ns)
    sent = headers = None
    if span is not None:
        sent = _first_event(span, _BODY_SENT_EVENT) or _first_event(span, _HEADERS_SENT_EVENT)
        headers = _first_event(span, _HEADERS_EVENT)
    if sent is not None:
        reach("sending", sent)
    if headers is not None:
        reach("waiting", headers)
        reach("downloading", end_ns)
    elif sent is not None or not out:
        # Sent, and no answer yet: the request waited for the server until it ended.
        reach("waiting", end_ns)
    elif cursor < end_ns:
        # Failed while connecting: the rest belongs to the step it failed in.
        kind = out[-1].kind
        out[-1] = Segment(kind, out[-1].start_ns, end_ns)
    return tuple(out)


def segment_cells(
    segments: Sequence[Segment], bar: Bar, window: tuple[int, int], width: int
) -> list[tuple[str, int]]:
    """How many cells of ``bar`` each segment paints, in order: ``(kind, cells)`` pairs
    that add up to the bar's length. A segment too short for a cell of its own is left out;
    the bar's own start and end stay where :func:`bar_geometry` put them."""
    if not segments or bar.length <= 0:
        return []
    window_start, window_end = window
    total = window_end - window_start
    first, last = bar.offset, bar.offset + bar.length
    out: list[tuple[str, int]] = []
    cell = first
    for index, segment in enumerate(segments):
        if index == len(segments) - 1 or total <= 0:
            boundary = last
        else:
            finish = min(max(segment.end_ns - window_start, 0), total)
            boundary = min(max((2 * finish * width + total) // (2 * total), cell), last)
        if boundary > cell:
            out.append((segment.kind, boundary - cell))
            cell = boundary
        if cell >= last:
            break
    return out


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


def plan_columns(
    width: int,
    name_need: int,
    duration_need: int,
    details_need: int,
    *,
    essential_needs: Sequence[int] = (),
    short_name_need: int | None = None,
) -> Columns:
    """Share ``width`` cells between the name, the bar, the duration and the details.

    The name gets what it needs, up to two fifths of the width. A wide terminal gives the
    details all they need and the bar the rest, up to a maximum length past which bars are
    no easier to compare. When the details do not fit, the bar gives way first, down to a
    readable minimum. To keep each row's essential facts in view (``essential_needs``, in
    cells: its outcome, URL and time to first byte), the bar then narrows further and, if
    that is still not enough, the names shorten, down to ``short_name_need`` (the labels
    with the phases' short names). A row whose essentials cannot fit even so is left to be
    cut, rather than squeezing every other row for nothing.
    """
    name = min(max(name_need, _MIN_NAME), max(_MIN_NAME, width * 2 // 5))
    fixed = 1 + 1 + duration_need
    floor = min(max(short_name_need if short_name_need is not None else name, _MIN_NAME), name)
    most = width - floor - fixed - _NARROW_BAR - _DETAIL_GAP
    essential = max((need for need in essential_needs if need <= most), default=0)

    def share(name: int) -> tuple[int, int]:
        left = max(width - name - fixed, 1)
        if not details_need:
            return min(left, _MAX_BAR), 0
        bar = min(max(left - details_need - _DETAIL_GAP, min(_MIN_BAR, left)), _MAX_BAR)
        if left - bar - _DETAIL_GAP < essential:
            bar = max(left - essential - _DETAIL_GAP, min(_NARROW_BAR, left))
        return bar, min(max(left - bar - _DETAIL_GAP, 0), details_need)

    bar, details = share(name)
    if details < essential and floor < name:
        name = max(floor, name - (essential - details))
        bar, details = share(name)
    return Columns(name, bar, duration_need, details, name < name_need)


def fit_details(details: Sequence[Detail], width: int) -> list[Detail]:
    """The facts that fit in ``width`` cells, joined by `` · ``, in their order.

    While they do not fit, the fact of the lowest rank goes (the last of equals first), so
    the outcome, the URL and the time to first byte outlast the sizes, addresses and ciphers.
    Once only key facts are left, the last one (the URL) stays if a readable part of it fits:
    the renderer cuts it with an ellipsis, as it does whatever is still too long.
    """
    kept = list(details)
    while len(kept) > 1 and details_cells(kept) > width:
        lowest = min(detail.rank for detail in kept)
        if lowest >= Rank.KEY and width - details_cells(kept[:-1]) - _SEPARATOR_CELLS >= _MIN_CUT:
            break
        drop = max(i for i, detail in enumerate(kept) if detail.rank == lowest)
        del kept[drop]
    return kept


def details_cells(details: Sequence[Detail]) -> int:
    """The cells ``details`` take, joined by `` · ``."""
    if not details:
        return 0
    return sum(cell_len(detail.text) for detail in details) + _SEPARATOR_CELLS * (len(details) - 1)


def essential_cells(details: Sequence[Detail]) -> list[int]:
    """What a row needs to show its facts of rank :attr:`Rank.NOTABLE` and above, and, if
    that is too much, of rank :attr:`Rank.KEY` and above: the ``essential_needs`` of
    :func:`plan_columns`, which keeps the most it can."""
    return [
        details_cells([detail for detail in details if detail.rank >= rank])
        for rank in (Rank.NOTABLE, Rank.KEY)
    ]


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
        return Detail(str(code), rank=Rank.VITAL)
    tone = Tone.BAD if number >= 400 else Tone.NOTICE if number >= 300 else Tone.GOOD
    return Detail(str(number), tone, Rank.VITAL)


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
        out.append(Detail(str(get("error.type")).rpartition(".")[2], Tone.BAD, Rank.VITAL))
    if status is not None:
        out.append(_status_detail(status))
    resend = get("http.request.resend_count")
    if resend:
        out.append(Detail(f"resend {resend}", Tone.NOTICE, Rank.KEY))
    if "dns.question.name" in attributes:
        answers = get("dns.answers")
        question = str(get("dns.question.name"))
        text = f"{question} → {', '.join(map(str, answers))}" if answers else question
        out.append(Detail(text, rank=Rank.KEY))
    if get("aiohttp.dns.joined"):
        out.append(Detail("joined a lookup in flight", Tone.NOTICE, Rank.NOTABLE))
    if get("aiohttp.dns.cache_hit"):
        out.append(Detail("DNS cache hit", Tone.NOTICE, Rank.NOTABLE))
    if "tls.protocol.version" in attributes:
        protocol = str(get("tls.protocol.name", "tls")).upper()
        out.append(Detail(f"{protocol} {get('tls.protocol.version')}"))
    if "tls.cipher" in attributes:
        out.append(Detail(str(get("tls.cipher")), Tone.QUIET, Rank.MINOR))
    if get("tls.next_protocol"):
        out.append(Detail(f"ALPN {get('tls.next_protocol')}", Tone.QUIET, Rank.MINOR))
    if get("tls.resumed"):
        out.append(Detail("session resumed", Tone.NOTICE, Rank.MINOR))
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
        out.insert(0, Detail(description, Tone.BAD, Rank.VITAL))
    out.extend(body_details(span))
    if any((link.attributes or {}).get(_REUSED_LINK) for link in span.links):
        out.append(Detail("reused connection", Tone.NOTICE, Rank.NOTABLE))
    if "url.full" in attributes:
        out.append(Detail(str(attributes["url.full"]), Tone.QUIET, Rank.KEY))
    return out


def body_details(span: ReadableSpan) -> list[Detail]:
    """The body's arrival in a few words (``5 chunks, 20.5 kB``, ``ttfb 2.1 ms``), not an
    event per row: a download can have dozens of chunk events. The time to first byte is
    the ``aiohttp.response.headers`` event's, from the span's start."""
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
        # A body that came in several chunks is what a streaming reader is looking for.
        rank = Rank.NOTABLE if received > 1 else Rank.NORMAL
        out.append(Detail(_chunks(received, received_bytes, attributes, "response"), rank=rank))
    else:
        size = attributes.get("http.response.body.size")
        if isinstance(size, int):
            out.append(Detail(format_bytes(size)))
    if headers_at is not None:
        ttfb = format_duration(max(headers_at - _start(span), 0))
        out.append(Detail(f"ttfb {ttfb}", Tone.QUIET, Rank.KEY))
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
