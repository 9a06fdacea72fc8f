"""Seeing which connection a request got: a thin wrapper around ``BaseConnector.connect``.

No aiohttp signal says which connection was handed out, so the peer address (and, for phase
tracing, the socket and TLS facts) would be lost for responses whose connection was already
released or closed by the time ``on_request_end`` fires. ``connect()`` is the one place every
attempt passes with both the request's traces and the connection in hand. The wrapper is
installed once per process, costs one loop over the request's traces, and does nothing for
requests that are not traced by us.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp.connector import BaseConnector, Connection

from ._diagnostics import report_fault
from ._request import RequestTrace

_ORIGINAL_ATTR = "__aiohttp_otel_original__"


def install_connection_probe() -> None:
    """Wrap ``BaseConnector.connect`` once; later calls are no-ops."""
    original = BaseConnector.connect
    if hasattr(original, _ORIGINAL_ATTR):
        return

    @functools.wraps(original)
    async def connect(self: BaseConnector, req: Any, *args: Any, **kwargs: Any) -> Connection:
        connection = await original(self, req, *args, **kwargs)
        traces = kwargs.get("traces", args[0] if args else None)
        if traces:
            _report(traces, connection)
        return connection

    setattr(connect, _ORIGINAL_ATTR, original)
    BaseConnector.connect = connect  # type: ignore[method-assign]


def _report(traces: Any, connection: Connection) -> None:
    for trace in traces:
        request = getattr(trace, "_trace_config_ctx", None)
        if type(request) is RequestTrace:
            try:
                request.connection_acquired(connection)
            except Exception as exc:
                report_fault("connection probe", exc)
                request.abandon()
