"""The record of each connection a traced request opened: who opened it, and its pool state.

A connection is ``active`` while a request uses it and ``idle`` while it waits in the pool; it
is counted from its creation to its close. The attempt that opened it creates the record when
the connector hands the connection over; the lifecycle probe (``_probes.lifecycle``) tells it of
its release to the pool and its close.

The record lives on the protocol object itself, so it goes away with the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry.trace import SpanContext
from opentelemetry.util.types import AttributeValue

from ._metrics import Instruments, Tally
from ._probes.protocol import RECORD_ATTR, ConnectionListener

ACTIVE, IDLE, CLOSED = "active", "idle", "closed"


class ConnectionRecord(ConnectionListener):
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
