"""A span exporter that draws each finished trace as a waterfall in the terminal.

The public home of :class:`WaterfallSpanExporter`; the drawing lives in the console tool
(:mod:`aiohttp_otel.console.waterfall`). Needs the ``cli`` extra
(``pip install "aiohttp-otel[cli]"``): without it, importing this module raises an
``ImportError`` that says so.
"""

from __future__ import annotations

from .console.waterfall import TraceWaterfall, WaterfallSpanExporter

__all__ = ["TraceWaterfall", "WaterfallSpanExporter"]
