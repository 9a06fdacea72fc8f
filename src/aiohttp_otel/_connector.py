"""What aiohttp does not signal about connections: which one a request got, and the socket
connect inside a new one.

* ``BaseConnector.connect`` is the one place every attempt passes with both the request's
  traces and the connection in hand: the peer address, the TLS facts and the connection's
  origin (for links from later reusers) are read there.
* ``aiohappyeyeballs.start_connection`` (which aiohttp looks up at call time) is the TCP
  connect: its start, its end, and the addresses DNS gave.

Both wrappers are installed once per process. The connect wrapper tells the socket wrapper
which requests are connecting through a context variable that it sets and resets itself,
within the same task, so the caller's context is left exactly as it was.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any

import aiohappyeyeballs
from aiohttp.connector import BaseConnector, Connection

from ._diagnostics import report_fault
from ._request import RequestTrace

_ORIGINAL_ATTR = "__aiohttp_otel_original__"

#: The traced requests whose connection attempt is running in this task, in a holder that is
#: emptied when the attempt is over: the event loop keeps a copy of the context for as long as
#: the new connection lives (its reader callback), and it must not keep the requests alive.
_connecting: contextvars.ContextVar[list[tuple[RequestTrace, ...]]] = contextvars.ContextVar(
    "aiohttp_otel_connecting"
)


def install_connection_probe() -> None:
    """Wrap ``BaseConnector.connect`` and ``start_connection`` once; later calls are no-ops."""
    original = BaseConnector.connect
    if hasattr(original, _ORIGINAL_ATTR):
        return

    @functools.wraps(original)
    async def connect(self: BaseConnector, req: Any, *args: Any, **kwargs: Any) -> Connection:
        traces = kwargs.get("traces", args[0] if args else None)
        requests = _ours(traces) if traces else ()
        if not requests:
            return await original(self, req, *args, **kwargs)
        for request in requests:
            _guarded(request, request.attempt_connecting, req)
        holder = [requests]
        token = _connecting.set(holder)
        try:
            connection = await original(self, req, *args, **kwargs)
        finally:
            holder.clear()
            _connecting.reset(token)
        for request in requests:
            _guarded(request, request.connection_acquired, connection)
        return connection

    setattr(connect, _ORIGINAL_ATTR, original)
    BaseConnector.connect = connect  # type: ignore[method-assign]

    start_connection = aiohappyeyeballs.start_connection

    @functools.wraps(start_connection)
    async def traced_start_connection(addr_infos: Any, *args: Any, **kwargs: Any) -> Any:
        holder = _connecting.get(None)
        requests = holder[0] if holder else ()
        if not requests:
            return await start_connection(addr_infos, *args, **kwargs)
        for request in requests:
            _guarded(request, request.socket_connect_start, addr_infos)
        try:
            sock = await start_connection(addr_infos, *args, **kwargs)
        except BaseException as exc:
            for request in requests:
                _guarded(request, request.socket_connect_failed, exc)
            raise
        for request in requests:
            _guarded(request, request.socket_connect_done, sock)
        return sock

    setattr(traced_start_connection, _ORIGINAL_ATTR, start_connection)
    aiohappyeyeballs.start_connection = traced_start_connection


def _ours(traces: Any) -> tuple[RequestTrace, ...]:
    """Our requests among the traces that are being traced (not untraced or dormant ones)."""
    ours: tuple[RequestTrace, ...] = ()
    for trace in traces:  # almost always one
        request = getattr(trace, "_trace_config_ctx", None)
        if type(request) is RequestTrace and request.traced:
            ours += (request,)
    return ours


def _guarded(request: RequestTrace, step: Any, arg: Any) -> None:
    try:
        step(arg)
    except Exception as exc:
        report_fault("connection probe", exc)
        request.abandon()
