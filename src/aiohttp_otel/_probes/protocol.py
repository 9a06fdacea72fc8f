"""What the probes of aiohttp's internals call back, and how they find who to call.

The probes know nothing of spans or requests: they see aiohttp objects and report facts to
listeners. A listener is found on aiohttp's own objects (a ``Trace``'s context, a stream in
the body registry, an attribute on a connection's protocol), so the probes never import the
code that records. The import graph stays a line: probes -> this module <- the recorders.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._diagnostics import report_fault

#: Set on every wrapper, pointing at what it wraps: installed once, undone by nobody.
ORIGINAL_ATTR = "__aiohttp_otel_original__"

#: Where a connection's listener lives: an attribute of its ``ResponseHandler``.
RECORD_ATTR = "_aiohttp_otel_connection"


class RequestListener:
    """One logical request as the probes see it. Every method is a fact, told as it happens;
    the defaults ignore it. ``traced`` is False for a request nobody records."""

    __slots__ = ()

    @property
    def traced(self) -> bool:
        return False

    def attempt_connecting(self, req: Any) -> Any:
        """An attempt asks the connector for a connection: the first thing every attempt does.
        May return an awaitable (a user hook) for the probe to await."""

    def connect_failed(self, exc: BaseException) -> None:
        """The connector raised: the attempt failed here, now."""

    def connection_acquired(self, connection: Any) -> None:
        """The connector handed the attempt its connection, new or pooled."""

    def socket_connect_start(self, addr_infos: Any) -> None:
        """The TCP connect begins, to these resolved addresses."""

    def socket_connect_done(self, sock: Any) -> None:
        """The TCP connect succeeded."""

    def socket_connect_failed(self, exc: BaseException) -> None:
        """Every address failed (or the connect was cancelled)."""

    def tunnel_tls_start(self) -> None:
        """A proxy's CONNECT tunnel is up; the TLS handshake with the origin begins."""

    def tunnel_tls_done(self, transport: Any) -> None:
        """The TLS handshake through the tunnel is done."""

    def response_started(self, response: Any) -> None:
        """The attempt's response status line and headers were parsed."""

    def response_failed(self, exc: BaseException) -> None:
        """Sending the request or reading its response head failed."""

    def body_written(self) -> None:
        """The last byte of the request body was written."""


class BodyListener:
    """A response body being received: its chunks and its end, whichever way it comes."""

    __slots__ = ()

    def body_chunk(self, data: bytes) -> None: ...

    def body_received(self) -> None:
        """Network EOF: every byte arrived."""

    def body_released(self) -> None:
        """The caller released or closed the response."""

    def body_failed(self, exc: BaseException) -> None:
        """The stream failed (reset, truncated, timed out)."""

    def body_abandoned(self) -> None:
        """The response was collected unreleased, or its connection closed under it."""


class ConnectionListener:
    """A connection's pool life, as the lifecycle probe sees it."""

    __slots__ = ()

    def released(self, still_open: bool) -> None: ...

    def closed(self) -> None: ...


def listener_of(protocol: Any) -> ConnectionListener | None:
    listener = getattr(protocol, RECORD_ATTR, None)
    return listener if isinstance(listener, ConnectionListener) else None


def request_listeners(traces: Iterable[Any] | None) -> tuple[RequestListener, ...]:
    """The traced requests among aiohttp's ``Trace`` objects (almost always one or none)."""
    if not traces:
        return ()
    found: tuple[RequestListener, ...] = ()
    for trace in traces:
        listener = getattr(trace, "_trace_config_ctx", None)
        if isinstance(listener, RequestListener) and listener.traced:
            found += (listener,)
    return found


def fault(kind: str, listener: object, exc: Exception) -> None:
    """A listener's step raised. The fault is ours: it is logged once, and the listener stops
    recording (``abandon()``), so it never reaches aiohttp.

    The probes call a step inside ``try`` themselves and this only on the way out: the step
    that did not fail costs no extra call.
    """
    report_fault(kind, exc)
    abandon = getattr(listener, "abandon", None)
    if abandon is not None:
        try:
            abandon()
        except Exception as again:
            report_fault(kind, again)
