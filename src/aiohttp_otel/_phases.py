"""The phase table: which connection phases exist, what they are called, where they nest.

Like Go's otelhttptrace ``hookMap``, nesting is data here, not logic spread over handlers.
How a phase is recorded (a child span, a pair of events, or not at all) is the recorder's
business; the request state machine only says "start", "stop" and "finish".
"""

from __future__ import annotations

from typing import NamedTuple

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue


class Phase(NamedTuple):
    key: str
    """Event name prefix in ``phases=events`` (``<key>.start`` / ``<key>.end``)."""
    span_name: str
    under_setup: bool
    """True: a child of ``HTTP connection_setup``; False: a child of the CLIENT span."""


WAIT_FOR_CONNECTION = Phase("wait_for_connection", "HTTP wait_for_connection", False)
CONNECTION_SETUP = Phase("connection_setup", "HTTP connection_setup", False)
DNS_LOOKUP = Phase("dns_lookup", "DNS lookup", True)
SOCKET_CONNECT = Phase("socket_connect", "socket connect", True)
TLS_HANDSHAKE = Phase("tls_handshake", "TLS client handshake", True)
#: HTTPS through an HTTP proxy: the CONNECT request to the proxy and its answer, between the
#: socket connect (to the proxy) and the TLS handshake (with the origin, through the tunnel).
PROXY_CONNECT = Phase("proxy_connect", "HTTP CONNECT tunnel", True)

PHASES = (
    WAIT_FOR_CONNECTION,
    CONNECTION_SETUP,
    DNS_LOOKUP,
    SOCKET_CONNECT,
    PROXY_CONNECT,
    TLS_HANDSHAKE,
)

_ERROR = Status(StatusCode.ERROR)
Attributes = dict[str, AttributeValue]


class OpenPhase:
    """A phase that started and has not been finished yet.

    ``end_ns`` is set when the phase is over but waits for attributes learned later (DNS
    answers, TLS details, the peer address): it then ends with that true time.
    """

    __slots__ = ("phase", "span", "start_ns", "end_ns", "attributes")

    def __init__(self, phase: Phase, span: Span | None, start_ns: int, attributes: Attributes):
        self.phase = phase
        self.span = span
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.attributes = attributes


class SpanPhases:
    """``phases=spans``: each phase is an INTERNAL child span."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def start(
        self, phase: Phase, parent: Context, client: Span, attributes: Attributes, now: int
    ) -> OpenPhase:
        span = self._tracer.start_span(
            phase.span_name, parent, SpanKind.INTERNAL, attributes, start_time=now
        )
        return OpenPhase(phase, span, now, {})

    def finish(self, open_phase: OpenPhase, client: Span, error_type: str | None, end: int) -> None:
        span = open_phase.span
        assert span is not None
        if open_phase.attributes:
            span.set_attributes(open_phase.attributes)
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(_ERROR)
        span.end(end_time=end)


class EventPhases:
    """``phases=events``: one span per request; each phase is a ``.start``/``.end`` event pair
    on the CLIENT span, the phase's attributes on the ``.end`` event.

    The ``.start`` event is added when the phase starts, so the span's events are stored in
    time order (a parent's ``.start`` before its children's events)."""

    __slots__ = ()

    def start(
        self, phase: Phase, parent: Context, client: Span, attributes: Attributes, now: int
    ) -> OpenPhase:
        client.add_event(_START_EVENTS[phase.key], timestamp=now)
        return OpenPhase(phase, None, now, dict(attributes))

    def finish(self, open_phase: OpenPhase, client: Span, error_type: str | None, end: int) -> None:
        attributes = open_phase.attributes
        if error_type is not None:
            attributes["error.type"] = error_type
        client.add_event(_END_EVENTS[open_phase.phase.key], attributes, timestamp=end)


_START_EVENTS = {phase.key: f"{phase.key}.start" for phase in PHASES}
_END_EVENTS = {phase.key: f"{phase.key}.end" for phase in PHASES}
