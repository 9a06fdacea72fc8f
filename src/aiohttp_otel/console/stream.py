"""``aiohttp-otel trace --stream``: each body chunk printed the moment it arrives.

For server-sent events, an LLM's tokens or any slow download: the offset and size of each
chunk, the gap since the one before, and the time since the response headers. The waterfall
that follows shows the same body as one row.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import RenderableType
from rich.text import Text

from .layout import format_bytes, format_duration

#: The columns of a chunk line, as printed above the first one.
HEADING = f"{'chunk':>7} {'offset':>10} {'size':>9} {'gap':>9} {'since headers':>14}"
_NONE = "-"


class ChunkTimeline:
    """Prints one response body's chunks as they come, through ``report``."""

    def __init__(self, report: Callable[[RenderableType], None], label: str = "") -> None:
        self._report = report
        self._prefix = f"{label} " if label else ""
        self._headers_ns = 0
        self._last_ns = 0
        self.count = 0
        self.offset = 0
        self.max_gap_ns = 0

    def headers(self, status: int, reason: str) -> None:
        """The response headers are in: the clock for every chunk starts now."""
        self._headers_ns = self._last_ns = time.perf_counter_ns()
        line = Text(self._prefix, style="dim")
        line.append(f"← {status} {reason}".rstrip(), style="bold")
        line.append(", the body as it arrives:")
        self._report(line)
        self._report(Text(self._prefix + HEADING, style="dim"))

    def chunk(self, size: int) -> None:
        """A chunk of ``size`` bytes has arrived."""
        now = time.perf_counter_ns()
        self.count += 1
        gap = now - self._last_ns
        if self.count > 1:
            self.max_gap_ns = max(self.max_gap_ns, gap)
        shown_gap = format_duration(gap) if self.count > 1 else _NONE
        since = format_duration(now - self._headers_ns)
        self._report(
            Text(
                f"{self._prefix}{self.count:>7} {self.offset:>10} {format_bytes(size):>9} "
                f"{shown_gap:>9} {since:>14}"
            )
        )
        self.offset += size
        self._last_ns = now

    def done(self) -> None:
        """The body is over: one line sums it up."""
        plural = "s" if self.count != 1 else ""
        text = f"{self._prefix}{self.count} chunk{plural}, {format_bytes(self.offset)}"
        if self.count:
            text += f", in {format_duration(self._last_ns - self._headers_ns)} after the headers"
        if self.count > 1:
            text += f"; the longest gap {format_duration(self.max_gap_ns)}"
        self._report(Text(text, style="dim"))
