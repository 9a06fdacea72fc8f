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

from ._metrics import Count, Instruments
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

    # _active and _idle are the counts of the two states, looked up once.

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
        self._active = self._count(ACTIVE)
        # Looked up at the first release: a state never entered is not reported.
        self._idle: Count | None = None
        self._opened = time_ns()
        self.state = ACTIVE
        self._active.value += 1

    def _count(self, state: str) -> Count:
        """This connection's count in ``http.client.open_connections`` while in ``state``."""
        return self._instruments.open_connections.count(
            {**self._attributes, "http.connection.state": state}
        )

    def acquired(self) -> None:
        if self.state == IDLE:
            assert self._idle is not None
            self._idle.value -= 1
            self._active.value += 1
            self.state = ACTIVE

    def released(self, still_open: bool) -> None:
        if self.state == ACTIVE and still_open:
            idle = self._idle
            if idle is None:
                idle = self._idle = self._count(IDLE)
            self._active.value -= 1
            idle.value += 1
            self.state = IDLE

    def closed(self) -> None:
        if self.state == CLOSED:
            return
        instruments = self._instruments
        count = self._idle if self.state == IDLE else self._active
        assert count is not None
        count.value -= 1
        instruments.connection_duration.record((time_ns() - self._opened) / 1e9, self._attributes)
        self.state = CLOSED


def record_of(protocol: Any) -> ConnectionRecord | None:
    record = getattr(protocol, RECORD_ATTR, None)
    return record if type(record) is ConnectionRecord else None
