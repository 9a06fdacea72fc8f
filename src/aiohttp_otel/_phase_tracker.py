"""One attempt's connection phases: which are open, where each nests, when each really ended.

The phase table (``_phases``) says what the phases are and where they nest; the recorder says
how a phase is written (child span or event pair). This tracker owns the state in between:
the open phases of one attempt, the awkward orderings (a phase over before its attributes are
known, an end without a start), and closing whatever is left when the attempt ends.

It exists only for an attempt whose CLIENT span is recording and whose ``phases`` option is on:
nobody sees the phases of a span that is not recorded.
"""

from __future__ import annotations

import contextlib
from time import time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span, SpanContext, set_span_in_context
from opentelemetry.util.types import AttributeValue

from . import _phases as ph
from . import _semconv as sc
from ._tls import tls_attributes

if TYPE_CHECKING:
    from opentelemetry.context import Context

Attributes = dict[str, AttributeValue]


class PhaseTracker:
    """The open phases of one attempt, recorded under its CLIENT span."""

    __slots__ = ("_recorder", "_client", "_context", "_open", "_server", "_tls", "error_type")

    def __init__(
        self,
        recorder: ph.SpanPhases | ph.EventPhases,
        client: Span,
        context: Context,
        server: Attributes,
        tls: bool,
    ) -> None:
        self._recorder = recorder
        self._client = client
        self._context = context
        self._open: dict[ph.Phase, ph.OpenPhase] = {}
        #: server.address/port, the attributes most phases start with.
        self._server = server
        #: True for an https or wss origin: a TLS handshake follows the connect.
        self._tls = tls
        #: What a phase cut short by the attempt's end failed with (None: cancelled or fine).
        self.error_type: str | None = None

    # -- the primitives -----------------------------------------------------------------------

    def start(self, phase: ph.Phase, attributes: Attributes) -> None:
        open_phases = self._open
        if phase in open_phases:  # a second wait in a row: the first one is over
            self.end(phase)
        parent = self._context
        if phase.under_setup:
            setup = open_phases.get(ph.CONNECTION_SETUP)
            if setup is not None and setup.span is not None:
                parent = set_span_in_context(setup.span, parent)
        open_phases[phase] = self._recorder.start(
            phase, parent, self._client, attributes, time_ns()
        )

    def stop(self, phase: ph.Phase, end_ns: int) -> None:
        """The phase is over; it ends for real when its late attributes are in."""
        open_phase = self._open.get(phase)
        if open_phase is not None and open_phase.end_ns is None:
            open_phase.end_ns = end_ns

    def end(self, phase: ph.Phase, error: BaseException | None = None) -> None:
        open_phase = self._open.pop(phase, None)
        if open_phase is None:
            return  # an end without a start (a wait we did not see begin)
        end = open_phase.end_ns or time_ns()
        error_type = None if error is None else sc.error_type(error)
        self._recorder.finish(open_phase, self._client, error_type, end)

    def close_all(self, now: int) -> None:
        """End every phase still open when the attempt ends: those that were over keep their
        end time; those cut short take the attempt's error (none for cancellation)."""
        open_phases = self._open
        if not open_phases:
            return
        recorder = self._recorder
        # Children before their parent.
        for phase in sorted(open_phases, key=lambda p: not p.under_setup):
            open_phase = open_phases.pop(phase)
            cut_short = open_phase.end_ns is None
            error_type = self.error_type if cut_short else None
            recorder.finish(open_phase, self._client, error_type, open_phase.end_ns or now)

    def abandon(self) -> None:
        """After a fault: end every open phase span, ignoring order and attributes."""
        open_phases, self._open = self._open, {}
        for open_phase in open_phases.values():
            if open_phase.span is not None:
                with contextlib.suppress(Exception):  # the fault is reported already
                    open_phase.span.end()

    # -- what the signals and probes tell, translated ----------------------------------------

    def queued(self) -> None:
        self.start(ph.WAIT_FOR_CONNECTION, dict(self._server))

    def dequeued(self) -> None:
        self.end(ph.WAIT_FOR_CONNECTION)

    def setup_started(self, scheme: str) -> None:
        attributes = dict(self._server)
        attributes[sc.URL_SCHEME] = scheme
        self.start(ph.CONNECTION_SETUP, attributes)

    def setup_over(self, now: int) -> None:
        # Ended for real once the connection is handed over, with the peer address.
        self.stop(ph.TLS_HANDSHAKE, now)
        self.stop(ph.CONNECTION_SETUP, now)

    def dns_started(self, host: str, joined: bool = False) -> None:
        attributes: Attributes = {"dns.question.name": host}
        if joined:
            attributes["aiohttp.dns.joined"] = True
        self.start(ph.DNS_LOOKUP, attributes)

    def dns_over(self, now: int) -> None:
        # The answers are known when the connect starts; the lookup ended now.
        self.stop(ph.DNS_LOOKUP, now)

    def dns_cache_hit(self) -> None:
        setup = self._open.get(ph.CONNECTION_SETUP)
        if setup is not None:
            setup.attributes["aiohttp.dns.cache_hit"] = True

    def socket_connecting(self, addresses: list[tuple[str, Any]]) -> None:
        dns = self._open.get(ph.DNS_LOOKUP)
        if dns is not None:
            dns.attributes["dns.answers"] = list(dict.fromkeys(a for a, _ in addresses))
            self.end(ph.DNS_LOOKUP)
        attributes: Attributes = {"network.transport": "tcp"}
        if len(addresses) == 1:
            # One address to try: a failed connect still says where it went.
            attributes[sc.NETWORK_PEER_ADDRESS], attributes[sc.NETWORK_PEER_PORT] = addresses[0]
        self.start(ph.SOCKET_CONNECT, attributes)

    def socket_connected(self, sock: Any, proxied: bool) -> None:
        connect = self._open.get(ph.SOCKET_CONNECT)
        if connect is not None:
            try:
                peer = sock.getpeername()
            except OSError:
                peer = None
            attributes = sc.peer_attributes(peer)
            if attributes is not None:
                connect.attributes.update(attributes)
                # An IPv6 peer name is a 4-tuple. (Read from it: ``sock.family`` converts to
                # an enum on every read.)
                connect.attributes["network.type"] = "ipv6" if len(peer) == 4 else "ipv4"
            self.end(ph.SOCKET_CONNECT)
        if not self._tls:
            return
        if proxied:
            # HTTPS through a proxy: first the CONNECT exchange, then TLS through the tunnel.
            self.start(ph.PROXY_CONNECT, dict(self._server))
        else:
            self.start(ph.TLS_HANDSHAKE, {sc.SERVER_ADDRESS: self._server[sc.SERVER_ADDRESS]})

    def socket_failed(self, exc: BaseException) -> None:
        if sc.is_cancellation(exc):
            # A connect timeout cancels the connect: whether that was an error is told by
            # what the attempt ends with, so the phase is closed with the attempt's outcome.
            return
        self.end(ph.SOCKET_CONNECT, exc)

    def tunnel_tls_started(self) -> None:
        self.end(ph.PROXY_CONNECT)
        self.start(ph.TLS_HANDSHAKE, {sc.SERVER_ADDRESS: self._server[sc.SERVER_ADDRESS]})

    def tunnel_tls_done(self, transport: Any) -> None:
        self._end_tls(transport)

    def connection_opened(self, transport: Any, peer: Any) -> SpanContext | None:
        """End the TLS and setup phases with what the new connection tells; return the setup
        span's context, which later reusers of the connection link to."""
        self._end_tls(transport)
        setup = self._open.get(ph.CONNECTION_SETUP)
        if setup is None:
            return None
        if peer is not None:
            setup.attributes.update(peer)
        span = setup.span
        self.end(ph.CONNECTION_SETUP)
        return None if span is None else span.get_span_context()

    def _end_tls(self, transport: Any) -> None:
        tls = self._open.get(ph.TLS_HANDSHAKE)
        if tls is None or transport is None:
            return
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            tls.attributes.update(tls_attributes(ssl_object))
        self.end(ph.TLS_HANDSHAKE)
