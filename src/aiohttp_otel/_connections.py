"""The life of each connection a traced request opened: who opened it, and its pool state.

A connection is ``active`` while a request uses it and ``idle`` while it waits in the pool; it
is counted from its creation to its close. aiohttp signals none of this, so three points are
watched, each installed once per process:

* creation and acquisition: the connector probe (``_connector``) hands the connection to the
  request, which creates or updates its record;
* release: ``BaseConnector._release`` puts the connection back in the pool or closes it;
* close: ``ResponseHandler.connection_lost``, however the close came about (released with
  ``should_close``, keep-alive expiry, the server hanging up, the session closing).

The record lives on the protocol object itself, so it goes away with the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from time import time_ns
from typing import Any

from aiohttp.client_proto import ResponseHandler
from aiohttp.connector import BaseConnector
from opentelemetry.trace import SpanContext
from opentelemetry.util.types import AttributeValue

from ._diagnostics import report_fault
from ._metrics import Instruments, Tally

RECORD_ATTR = "_aiohttp_otel_connection"
_ORIGINAL_ATTR = "__aiohttp_otel_original__"

ACTIVE, IDLE, CLOSED = "active", "idle", "closed"


class ConnectionRecord:
    """One connection: the span that opened it (for links), its peer, its metric attributes
    and its state."""

    __slots__ = (
        "origin",
        "peer",
        "_instruments",
        "_attributes",
        "_active",
        "_idle",
        "state",
        "_opened",
    )

    # _active and _idle are the tally keys of the two states.

    def __init__(
        self,
        origin: SpanContext | None,
        peer: Mapping[str, AttributeValue] | None,
        instruments: Instruments,
        attributes: dict[str, AttributeValue],
    ) -> None:
        self.origin = origin
        # network.peer.* for every request that reuses it, read from the socket once.
        self.peer = peer
        self._instruments = instruments
        self._attributes = attributes
        key = Tally.key
        self._active = key({**attributes, "http.connection.state": ACTIVE})
        self._idle = key({**attributes, "http.connection.state": IDLE})
        self._opened = time_ns()
        self.state = ACTIVE
        instruments.open_connections.add(1, self._active)

    def acquired(self) -> None:
        if self.state == IDLE:
            counter = self._instruments.open_connections
            counter.add(-1, self._idle)
            counter.add(1, self._active)
            self.state = ACTIVE

    def released(self, still_open: bool) -> None:
        if self.state == ACTIVE and still_open:
            counter = self._instruments.open_connections
            counter.add(-1, self._active)
            counter.add(1, self._idle)
            self.state = IDLE

    def closed(self) -> None:
        if self.state == CLOSED:
            return
        instruments = self._instruments
        instruments.open_connections.add(-1, self._active if self.state == ACTIVE else self._idle)
        instruments.connection_duration.record((time_ns() - self._opened) / 1e9, self._attributes)
        self.state = CLOSED


def record_of(protocol: Any) -> ConnectionRecord | None:
    record = getattr(protocol, RECORD_ATTR, None)
    return record if type(record) is ConnectionRecord else None


def install_lifecycle_probe() -> None:
    """Wrap ``BaseConnector._release`` and ``ResponseHandler.connection_lost`` once."""
    release = BaseConnector._release
    if hasattr(release, _ORIGINAL_ATTR):
        return
    connection_lost = ResponseHandler.connection_lost

    def traced_release(self: BaseConnector, key: Any, protocol: Any, *args: Any, **kw: Any) -> Any:
        result = release(self, key, protocol, *args, **kw)
        record = record_of(protocol)
        if record is not None:
            try:
                record.released(protocol.is_connected())
            except Exception as exc:
                report_fault("connection metrics", exc)
        return result

    def traced_connection_lost(self: ResponseHandler, exc: BaseException | None) -> None:
        connection_lost(self, exc)
        record = record_of(self)
        if record is not None:
            try:
                record.closed()
            except Exception as fault:
                report_fault("connection metrics", fault)

    setattr(traced_release, _ORIGINAL_ATTR, release)
    setattr(traced_connection_lost, _ORIGINAL_ATTR, connection_lost)
    BaseConnector._release = traced_release  # type: ignore[method-assign]
    ResponseHandler.connection_lost = traced_connection_lost  # type: ignore[method-assign]
