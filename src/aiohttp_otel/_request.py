"""The per-request state machine: the only place where spans start and end.

aiohttp gives one ``trace_config_ctx`` per logical request (all redirect hops and retries
share it), so this object is that context. It walks through a few stages::

    DONE ──start──▶ STARTED ──headers_sent──▶ SENT ──end──▶ RECEIVING ──body over──▶ DONE
                       ▲                        │                │
                       │ (next attempt signal)  ├──redirect──▶ REDIRECTED      exception ──▶ DONE
                       └────────────────────────┴─────────────────┘

Each physical attempt on the wire is its own CLIENT span (a "hop"). A hop answered with a
redirect stays open until aiohttp shows it follows the redirect (the next attempt's first
signal): if aiohttp gives up instead (``TooManyRedirects``, a bad ``Location``), the error
belongs on that hop. A second attempt signal after ``headers_sent`` in one hop means aiohttp
silently resent the request after a stale pooled connection failed; that attempt gets its
own span.

Connection phases (queue wait, setup, DNS, socket connect, TLS) are recorded under the hop
through the recorder chosen by the ``phases`` option; see ``_phases``. With ``span_end=body``
the hop ends when its body is over (``_body`` watches the response), not at its headers.
"""

from __future__ import annotations

import contextlib
import traceback
import weakref
from collections.abc import Awaitable
from time import time_ns
from typing import TYPE_CHECKING, Any

from aiohttp import ClientResponseError
from aiohttp.http_exceptions import HttpProcessingError
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.propagate import inject
from opentelemetry.trace import (
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.util.types import AttributeValue
from yarl import URL

from . import _body
from . import _phases as ph
from . import _semconv as sc
from ._coexistence import evict_official
from ._connections import RECORD_ATTR, ConnectionRecord, record_of
from ._hooks import Hook, settle
from ._metrics import Tally, TallyKey, dns_error_type
from ._tls import tls_attributes

if TYPE_CHECKING:
    import aiohttp
    from opentelemetry.context import Context

    from ._instrumentation import Instrumentation

# DONE is also where a request that is not traced (suppressed, excluded) stays.
DONE, STARTED, SENT, REDIRECTED, RECEIVING = range(5)

#: ``error.type`` of an attempt that aiohttp resent because its pooled connection was stale.
STALE_CONNECTION = "stale_connection"

#: aiohttp's client speaks HTTP/1.x; connections are counted under this protocol version.
CONNECTION_PROTOCOL = "1.1"

_ERROR = Status(StatusCode.ERROR)


class RequestTrace:
    """Tracing state of one logical request; aiohttp's ``trace_config_ctx`` for our config.

    ``trace_request_ctx`` is the value the caller passed to ``session.request(...,
    trace_request_ctx=...)``; it is kept untouched for hooks and other readers.
    """

    __slots__ = (
        "trace_request_ctx",
        "_inst",
        "_carried",
        "_stage",
        "_parent",
        "_span",
        "_recording",
        "_hop_ctx",
        "_start_ns",
        "_answered_ns",
        "_resend_count",
        "_method",
        "_url",
        "_metric_attrs",
        "_late",
        "_active_key",
        "_counted",
        "_status",
        "_protocol",
        "_error_type",
        "_next",
        "_location",
        # connection phases of the current hop
        "_phases",
        "_setup_ctx",
        "_created",
        "_proxied",
        "_phase_error",
        "_queued_ns",
        "_dns_started_ns",
        "_dns_host",
        # body
        "_response",
        "_sent_chunks",
        "_sent_bytes",
        "_received_chunks",
        "_received_offset",
        "_last_activity_ns",
        "_unwatch",
    )

    # Set when a hop begins (``_begin_hop``), never for a request that is not traced.
    _late: dict[str, AttributeValue]
    _counted: bool
    _active_key: TallyKey
    _sent_chunks: int
    _sent_bytes: int

    def __init__(self, instrumentation: Instrumentation, trace_request_ctx: Any = None) -> None:
        self.trace_request_ctx = trace_request_ctx
        self._inst = instrumentation
        # Built for every request, traced or not: only what the untraced path reads is set
        # here; a hop sets the rest when it begins.
        self._carried: Context | None = None
        self._stage = DONE
        self._span: Span | None = None
        self._phases: dict[ph.Phase, ph.OpenPhase] | None = None
        self._resend_count = 0
        self._dns_started_ns = 0

    @property
    def traced(self) -> bool:
        """True while a hop of this request is being recorded."""
        return self._stage != DONE

    # -- request signals: each returns an awaitable (an async hook) or None -------------------

    def start(self, session: aiohttp.ClientSession, params: Any) -> Awaitable[Any] | None:
        inst = self._inst
        if not inst.enabled or not is_http_instrumentation_enabled():
            return None
        url: URL = params.url
        excluded = inst.excluded_urls
        if excluded is not None and excluded.search(str(url)):
            return None
        if len(session._trace_configs) > 1:
            evict_official(session)
        self._parent = parent = otel_context.get_current()
        if inst.dormant():
            # Nothing can record, but a trace that came in must go on past this service.
            if get_current_span(parent).get_span_context().is_valid:
                self._carried = parent
            return None
        self._begin_hop(params.method, url)
        hook = inst.request_hook
        return None if hook is None else self._hook(hook, params)

    def begin_attempt(self, _session: Any, _params: Any) -> None:
        """The first signal of a physical attempt (queue, connect or reuse)."""
        if SENT <= self._stage <= REDIRECTED:
            self._next_hop()

    def headers_sent(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        stage = self._stage
        if not stage:
            if self._carried is not None:
                inject(params.headers, context=self._carried)
            return None
        if stage != STARTED:
            self._next_hop()
        self._stage = SENT
        span = self._span
        assert span is not None
        inst = self._inst
        if self._resend_count and (params.url != self._url or params.method != self._method):
            # The hop span was started from the predicted redirect target; this is the truth.
            self._describe_hop(span, params.method, params.url)
        # Each hop carries its own traceparent: these are the headers this hop will serialise.
        inject(params.headers, context=self._context())
        if inst.request_headers is not None and self._recording:
            span.set_attributes(inst.request_headers.attributes(params.headers))
        hook = inst.request_hook
        if hook is None or not self._resend_count:
            return None
        return self._hook(hook, params)

    def chunk_sent(self, _session: Any, params: Any) -> None:
        if not self._stage:
            return
        size = len(params.chunk)
        if not size:
            return  # aiohttp 3.10 signals an empty chunk for body-less requests
        offset = self._sent_bytes
        self._sent_bytes = offset + size
        self._sent_chunks += 1
        self._chunk_event("aiohttp.request.chunk_sent", self._sent_chunks, size, offset, None)

    def redirect(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        if not SENT <= self._stage <= REDIRECTED:
            return None
        response = params.response
        self._record_response(response.status, response.version, response.headers)
        self._answered_ns = time_ns()
        self._stage = REDIRECTED
        self._location = response.headers.get("Location") or response.headers.get("URI") or ""
        self._next = _redirect_target(params.method, params.url, response)
        hook = self._inst.response_hook
        return None if hook is None else self._hook(hook, params)

    def end(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        stage = self._stage
        if not STARTED <= stage <= REDIRECTED:
            return None
        response = params.response
        now = time_ns()
        if stage != REDIRECTED:  # a 3xx without Location already recorded its response
            self._record_response(response.status, response.version, response.headers)
        if self._recording:
            assert self._span is not None
            self._span.add_event("aiohttp.response.headers", timestamp=now)
        inst = self._inst
        hook = inst.response_hook
        complete = _body.is_complete(response)
        if complete or not inst.end_at_body:
            self._stage = DONE
            # A body still arriving when the span ends at headers has no size to tell yet.
            self._response = response if complete else None
            pending = None if hook is None else self._hook(hook, params)
            if pending is None:
                self._end_hop(now)
                return None
            return self._end_hop_after(pending, now)
        self._stage = RECEIVING
        # Held weakly while the body arrives: a response the caller drops unreleased must be
        # collectable, or its span could never end.
        self._response = weakref.ref(response)
        self._received_chunks = 0
        self._received_offset = 0
        self._last_activity_ns = now
        self._unwatch = _body.watch(self, response)
        failed = response.content.exception()
        if failed is not None:  # cut short before the watch began
            self.body_failed(failed)
        return None if hook is None else self._hook(hook, params)

    def exception(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        if not STARTED <= self._stage <= REDIRECTED:
            return None
        exc = params.exception
        self._record_exception(exc)
        if self._dns_started_ns and not sc.is_cancellation(exc):
            # The lookup failed. (A cancelled request's lookup goes on, and its end is
            # still measured when it comes.)
            self._record_dns(
                {"dns.question.name": self._dns_host, sc.ERROR_TYPE: dns_error_type(exc)}
            )
        self._stage = DONE
        self._response = None
        now = time_ns()
        hook = self._inst.response_hook
        pending = None if hook is None else self._hook(hook, params)
        if pending is None:
            self._end_hop(now)
            return None
        return self._end_hop_after(pending, now)

    def abandon(self) -> None:
        """After a fault in our own code: end what is open and trace nothing more.

        Called from exception handlers, so it must not raise whatever state it finds.
        """
        live = self._stage
        self._stage = DONE
        if not live:
            return
        # The fault is reported already; what fails here is only swallowed.
        if live == RECEIVING:
            _quietly(self._unwatch)
        phases = self._phases
        self._phases = None
        if phases:
            for open_phase in phases.values():
                if open_phase.span is not None:
                    _quietly(open_phase.span.end)
        if self._span is not None:
            _quietly(self._span.end)
        _quietly(self._uncount)

    # -- connection signals ------------------------------------------------------------------

    def queued_start(self, session: Any, params: Any) -> None:
        self.begin_attempt(session, params)
        if self._stage:
            self._queued_ns = time_ns()
            self._phase_start(ph.WAIT_FOR_CONNECTION, self._server_attributes())

    def queued_end(self, _session: Any, _params: Any) -> None:
        if not self._stage:
            return
        waited = time_ns() - self._queued_ns
        self._inst.instruments.time_in_queue.record(waited / 1e9, self._metric_attrs)
        self._phase_end(ph.WAIT_FOR_CONNECTION)

    def create_start(self, session: Any, params: Any) -> None:
        self.begin_attempt(session, params)
        if not self._stage:
            return
        self._created = True
        attributes = self._server_attributes()
        attributes[sc.URL_SCHEME] = self._metric_attrs[sc.URL_SCHEME]
        self._phase_start(ph.CONNECTION_SETUP, attributes)

    def create_end(self, _session: Any, _params: Any) -> None:
        # Ended for real once the connection is handed over, with the peer address.
        now = time_ns()
        self._phase_stop(ph.TLS_HANDSHAKE, now)
        self._phase_stop(ph.CONNECTION_SETUP, now)

    def dns_start(self, _session: Any, params: Any) -> None:
        if not self._stage:
            return
        self._dns_started_ns = time_ns()
        self._dns_host = params.host
        self._phase_start(ph.DNS_LOOKUP, {"dns.question.name": params.host})

    def dns_end(self, _session: Any, _params: Any) -> None:
        # Measured even when the request is over: a cancelled request's lookup runs on.
        if self._dns_started_ns:
            self._record_dns({"dns.question.name": self._dns_host})
        # The answers are known when the connect starts; the lookup ended now.
        self._phase_stop(ph.DNS_LOOKUP, time_ns())

    def _record_dns(self, attributes: dict[str, AttributeValue]) -> None:
        elapsed = time_ns() - self._dns_started_ns
        self._dns_started_ns = 0
        self._inst.instruments.dns_lookup_duration.record(elapsed / 1e9, attributes)

    def dns_cache_hit(self, session: aiohttp.ClientSession, params: Any) -> None:
        if not self._stage or self._phases is None:
            return
        if _joined_lookup(session, params.host, self._url.port):
            # Another request's lookup is in flight: this one waits for it, and that wait
            # is its DNS time.
            self._phase_start(
                ph.DNS_LOOKUP, {"dns.question.name": params.host, "aiohttp.dns.joined": True}
            )
        else:
            setup = self._phases.get(ph.CONNECTION_SETUP)
            if setup is not None:
                setup.attributes["aiohttp.dns.cache_hit"] = True

    # -- socket and connection facts (from the connector probe) -----------------------------

    def attempt_connecting(self, request: Any) -> None:
        if self._stage:
            self._proxied = getattr(request, "proxy", None) is not None

    def socket_connect_start(self, addr_infos: Any) -> None:
        if not self._stage or self._phases is None:
            return
        addresses = list(dict.fromkeys((str(info[4][0]), info[4][1]) for info in addr_infos))
        dns = self._phases.get(ph.DNS_LOOKUP)
        if dns is not None:
            dns.attributes["dns.answers"] = list(dict.fromkeys(a for a, _ in addresses))
            self._phase_end(ph.DNS_LOOKUP)
        attributes: dict[str, AttributeValue] = {"network.transport": "tcp"}
        if len(addresses) == 1:
            # One address to try: a failed connect still says where it went.
            attributes[sc.NETWORK_PEER_ADDRESS], attributes[sc.NETWORK_PEER_PORT] = addresses[0]
        self._phase_start(ph.SOCKET_CONNECT, attributes)

    def socket_connect_done(self, sock: Any) -> None:
        if not self._stage or self._phases is None:
            return
        connect = self._phases.get(ph.SOCKET_CONNECT)
        if connect is not None:
            try:
                peer = sock.getpeername()
            except OSError:
                peer = None
            attributes = sc.peer_attributes(peer)
            if attributes is not None:
                connect.attributes.update(attributes)
                connect.attributes["network.type"] = "ipv6" if sock.family == 10 else "ipv4"
            self._phase_end(ph.SOCKET_CONNECT)
        if self._url.scheme in ("https", "wss") and not self._proxied:
            self._phase_start(ph.TLS_HANDSHAKE, {sc.SERVER_ADDRESS: self._url.host or ""})

    def socket_connect_failed(self, exc: BaseException) -> None:
        if not self._stage or self._phases is None:
            return
        if sc.is_cancellation(exc):
            # A connect timeout cancels the connect: whether that was an error is told by
            # what the request ends with, so the phase is closed with the request's outcome.
            return
        self._phase_end(ph.SOCKET_CONNECT, exc)

    def connection_acquired(self, connection: aiohttp.connector.Connection) -> None:
        stage = self._stage
        if not stage or stage == RECEIVING:
            return
        if stage != STARTED:
            # A pooled connection handed to the next attempt (a redirect, or a resend): no
            # signal before this one told that a new attempt began. (aiohttp's reuse signal
            # would, but one handler less per request is worth this check.)
            self._next_hop()
        created = self._created
        self._created = False
        span = self._span
        assert span is not None
        protocol = connection.protocol
        known = None if created else record_of(protocol)
        if known is not None:
            # A pooled connection we saw open: its peer was read once, when it opened.
            peer = known.peer
            known.acquired()
            if known.origin is not None and self._recording:
                span.add_link(known.origin, {"aiohttp.connection.reused": True})
        else:
            transport = connection.transport
            peer = (
                None
                if transport is None
                else sc.peer_attributes(transport.get_extra_info("peername"))
            )
            if created:
                self._remember_connection(protocol, self._finish_setup(transport, peer), peer)
        if peer is not None and self._recording:
            self._late.update(peer)

    def _remember_connection(self, protocol: Any, origin: SpanContext | None, peer: Any) -> None:
        """The new connection remembers who opened it and where it goes, for its reusers."""
        if protocol is None:
            return
        metric = self._metric_attrs
        attributes: dict[str, AttributeValue] = {
            sc.SERVER_ADDRESS: metric[sc.SERVER_ADDRESS],
            sc.URL_SCHEME: metric[sc.URL_SCHEME],
            sc.NETWORK_PROTOCOL_VERSION: CONNECTION_PROTOCOL,
        }
        if sc.SERVER_PORT in metric:
            attributes[sc.SERVER_PORT] = metric[sc.SERVER_PORT]
        record = ConnectionRecord(origin, peer, self._inst.instruments, attributes)
        setattr(protocol, RECORD_ATTR, record)

    def _finish_setup(self, transport: Any, peer: Any) -> SpanContext | None:
        """End the TLS and setup phases with what the new connection tells; return the span
        context later reusers link to (the setup span, or the request span without one)."""
        if not self._recording:
            return None
        phases = self._phases
        setup = None if phases is None else phases.get(ph.CONNECTION_SETUP)
        if phases is not None:
            tls = phases.get(ph.TLS_HANDSHAKE)
            if tls is not None and transport is not None:
                ssl_object = transport.get_extra_info("ssl_object")
                if ssl_object is not None:
                    tls.attributes.update(tls_attributes(ssl_object))
                self._phase_end(ph.TLS_HANDSHAKE)
            if setup is not None:
                if peer is not None:
                    setup.attributes.update(peer)
                self._phase_end(ph.CONNECTION_SETUP)
        if setup is not None and setup.span is not None:
            return setup.span.get_span_context()
        assert self._span is not None
        return self._span.get_span_context()

    # -- response body (from the body watch) ------------------------------------------------

    def body_chunk(self, size: int) -> None:
        if self._stage != RECEIVING:
            return
        now = time_ns()
        offset = self._received_offset
        self._received_offset = offset + size
        self._received_chunks += 1
        self._last_activity_ns = now
        self._chunk_event(
            "aiohttp.response.chunk_received", self._received_chunks, size, offset, now
        )

    def _chunk_event(
        self, name: str, count: int, size: int, offset: int, timestamp: int | None
    ) -> None:
        """One chunk event, unless this direction reached its cap (sizes are counted anyway)."""
        inst = self._inst
        if self._recording and inst.chunk_events and count <= inst.max_chunk_events:
            assert self._span is not None
            self._span.add_event(
                name, {"aiohttp.chunk.size": size, "aiohttp.chunk.offset": offset}, timestamp
            )

    def body_received(self) -> None:
        """Network EOF: every byte of the body has arrived."""
        if self._stage == RECEIVING:
            self._finish_body(time_ns())

    def body_released(self) -> None:
        """The caller released or closed the response before (or at) the body's end."""
        if self._stage == RECEIVING:
            self._finish_body(time_ns())

    def body_failed(self, exc: BaseException) -> None:
        if self._stage != RECEIVING:
            return
        if not sc.is_cancellation(exc):
            self._record_error(exc)
        self._finish_body(time_ns())

    def body_abandoned(self) -> None:
        """The response was garbage-collected unreleased, or its connection was closed under
        it (the session closed): end at its last activity, not at the collection or close."""
        if self._stage == RECEIVING:
            self._finish_body(self._last_activity_ns)

    def _finish_body(self, end_ns: int) -> None:
        self._stage = DONE
        self._unwatch()
        self._end_hop(end_ns)

    def _uncount(self) -> None:
        """Take this hop off ``http.client.active_requests``, once."""
        if self._counted:
            self._counted = False
            self._inst.instruments.active_requests.add(-1, self._active_key)

    def _hook(self, hook: Hook, params: Any) -> Awaitable[Any] | None:
        """Call a user hook on the current span, with every attribute known so far on it."""
        span = self._span
        late = self._late
        if late:
            assert span is not None
            span.set_attributes(late)
            self._late = {}
        return hook(span, params, self.trace_request_ctx)

    # -- hops ------------------------------------------------------------------------------

    def _begin_hop(self, method: str, url: URL) -> None:
        inst = self._inst
        span_name, attributes = self._hop_attributes(method, url)
        now = time_ns()
        span = inst.tracer.start_span(
            span_name, self._parent, SpanKind.CLIENT, attributes, start_time=now
        )
        self._span = span
        self._recording = recording = span.is_recording()
        self._hop_ctx: Context | None = None
        self._start_ns = now
        self._method = method
        self._url = url
        self._status: int | None = None
        self._protocol: str | None = None
        self._error_type: str | None = None
        self._phase_error: str | None = None
        self._counted = False
        # A span that is not recorded gets no phase or chunk work: nobody would see it.
        self._phases = {} if recording and inst.phase_recorder is not None else None
        self._created = False
        self._proxied = False
        self._response = None
        self._sent_chunks = self._sent_bytes = 0
        # Attributes learned along the way, written to the span in one go when it ends.
        self._late = {}
        self._stage = STARTED
        self._active_key = key = Tally.key(self._metric_attrs)
        inst.instruments.active_requests.add(1, key)
        self._counted = True

    def _hop_attributes(self, method: str, url: URL) -> tuple[str, dict[str, AttributeValue]]:
        """The hop's span name and its attributes at start (also its metric attributes)."""
        inst = self._inst
        span_name, method_attr, method_original = inst.methods.lookup(method)
        host = url.host or ""
        port = url.port
        metric: dict[str, AttributeValue] = {
            sc.HTTP_REQUEST_METHOD: method_attr,
            sc.SERVER_ADDRESS: host,
            sc.URL_SCHEME: url.scheme,
        }
        if port is not None:
            metric[sc.SERVER_PORT] = port
        self._metric_attrs = metric
        attributes = dict(metric)
        full = inst.url_full(url)
        attributes[sc.URL_FULL] = full
        if method_original is not None:
            attributes[sc.HTTP_REQUEST_METHOD_ORIGINAL] = method_original
        if self._resend_count:
            attributes[sc.HTTP_REQUEST_RESEND_COUNT] = self._resend_count
        if inst.dup:
            attributes[sc.OLD_HTTP_METHOD] = method
            attributes[sc.OLD_HTTP_URL] = full
            attributes[sc.OLD_NET_PEER_NAME] = host
            if port is not None:
                attributes[sc.OLD_NET_PEER_PORT] = port
        return span_name, attributes

    def _describe_hop(self, span: Span, method: str, url: URL) -> None:
        self._method = method
        self._url = url
        span_name, attributes = self._hop_attributes(method, url)
        span.update_name(span_name)
        span.set_attributes(attributes)

    def _context(self) -> Context:
        """The caller's context with this hop's span in it: parent of phases, injected."""
        hop_ctx = self._hop_ctx
        if hop_ctx is None:
            assert self._span is not None
            hop_ctx = self._hop_ctx = set_span_in_context(self._span, self._parent)
        return hop_ctx

    def _next_hop(self) -> None:
        """Close the previous attempt and open the span of the one that is starting now."""
        if self._stage == REDIRECTED:
            method, url = self._next or (self._method, self._url)
            self._end_hop(self._answered_ns)
        else:  # SENT: no answer came, aiohttp is resending on a new connection
            method, url = self._method, self._url
            self._error_type = self._phase_error = STALE_CONNECTION
            span = self._span
            assert span is not None
            if self._recording:
                span.set_attribute(sc.ERROR_TYPE, STALE_CONNECTION)
                span.set_status(_ERROR)
            self._end_hop(time_ns())
        # Until the next span has started, a fault must not end the previous one again.
        self._stage = DONE
        self._resend_count += 1
        self._begin_hop(method, url)

    async def _end_hop_after(self, pending: Awaitable[Any], end_ns: int) -> None:
        try:
            await settle(pending, "response_hook")
        finally:
            self._end_hop(end_ns)

    def _end_hop(self, end_ns: int) -> None:
        instruments = self._inst.instruments
        base = self._metric_attrs
        # First, so that the count goes back down whatever happens below.
        self._uncount()
        span = self._span
        assert span is not None
        if self._phases:
            self._close_phases(end_ns)
        response = self._response
        self._response = None
        if isinstance(response, weakref.ref):
            # A body that was being received: the response may be gone by now.
            alive = response()
            received = self._received_offset if alive is None else _body.received_size(alive)
        else:
            received = None if response is None else _body.received_size(response)
        sent = self._sent_bytes
        if self._recording:
            late = self._late
            if received is not None:
                late["http.response.body.size"] = received
            if sent:
                late["http.request.body.size"] = sent
            if late:
                span.set_attributes(late)
        span.end(end_time=end_ns)
        metric = dict(base)
        if self._status is not None:
            metric[sc.HTTP_RESPONSE_STATUS_CODE] = self._status
        if self._protocol is not None:
            metric[sc.NETWORK_PROTOCOL_VERSION] = self._protocol
        if self._error_type is not None:
            metric[sc.ERROR_TYPE] = self._error_type
        instruments.record_duration(end_ns - self._start_ns, metric)
        if received is not None:
            instruments.response_body_size.record(received, metric)
        if sent:
            instruments.request_body_size.record(sent, metric)

    # -- phases ----------------------------------------------------------------------------

    def _server_attributes(self) -> dict[str, AttributeValue]:
        metric = self._metric_attrs
        out: dict[str, AttributeValue] = {sc.SERVER_ADDRESS: metric[sc.SERVER_ADDRESS]}
        port = metric.get(sc.SERVER_PORT)
        if port is not None:
            out[sc.SERVER_PORT] = port
        return out

    def _phase_start(self, phase: ph.Phase, attributes: dict[str, AttributeValue]) -> None:
        phases = self._phases
        if phases is None or not self._stage:
            return
        if phase in phases:  # a second wait in a row: the first one is over
            self._phase_end(phase)
        parent = self._context()
        if phase.under_setup:
            setup = phases.get(ph.CONNECTION_SETUP)
            if setup is not None and setup.span is not None:
                parent = set_span_in_context(setup.span, parent)
        recorder = self._inst.phase_recorder
        assert recorder is not None
        phases[phase] = recorder.start(phase, parent, attributes, time_ns())

    def _phase_stop(self, phase: ph.Phase, end_ns: int) -> None:
        """The phase is over; it ends for real when its late attributes are in."""
        phases = self._phases
        if phases is not None:
            open_phase = phases.get(phase)
            if open_phase is not None and open_phase.end_ns is None:
                open_phase.end_ns = end_ns

    def _phase_end(self, phase: ph.Phase, error: BaseException | None = None) -> None:
        phases = self._phases
        if phases is None:
            return
        open_phase = phases.pop(phase, None)
        if open_phase is None:
            return  # an end without a start (a wait we did not see begin)
        end = open_phase.end_ns or time_ns()
        recorder = self._inst.phase_recorder
        assert recorder is not None
        assert self._span is not None
        error_type = None if error is None else sc.error_type(error)
        recorder.finish(open_phase, self._span, error_type, end)

    def _close_phases(self, now: int) -> None:
        """End every phase still open when the hop ends: those that were over keep their end
        time; those cut short take the hop's error (none for cancellation)."""
        phases = self._phases
        assert phases is not None
        assert self._span is not None
        recorder = self._inst.phase_recorder
        assert recorder is not None
        # Children before their parent.
        for phase in sorted(phases, key=lambda p: not p.under_setup):
            open_phase = phases.pop(phase)
            cut_short = open_phase.end_ns is None
            error_type = self._phase_error if cut_short else None
            recorder.finish(open_phase, self._span, error_type, open_phase.end_ns or now)

    # -- outcome ---------------------------------------------------------------------------

    def _record_response(self, status: int, version: Any, headers: Any) -> None:
        protocol = sc.protocol_version(version)
        error = sc.status_error_type(status)
        self._status = status
        self._protocol = protocol
        self._error_type = error
        span = self._span
        assert span is not None
        if not self._recording:
            return
        inst = self._inst
        attributes: dict[str, AttributeValue] = {sc.HTTP_RESPONSE_STATUS_CODE: status}
        if protocol is not None:
            attributes[sc.NETWORK_PROTOCOL_VERSION] = protocol
        if inst.dup:
            attributes[sc.OLD_HTTP_STATUS_CODE] = status
        if inst.response_headers is not None and headers is not None:
            attributes.update(inst.response_headers.attributes(headers))
        if error is not None:
            attributes[sc.ERROR_TYPE] = error
            span.set_status(_ERROR)
        self._late.update(attributes)

    def _record_exception(self, exc: BaseException) -> None:
        if sc.is_cancellation(exc):
            return  # intentional cancellation is not an error: status stays unset
        if (
            type(exc) is ClientResponseError
            and exc.status >= 400
            # aiohttp reports a response it cannot parse as a 400 of its own, raised from
            # the parser's error: no server said 400 then.
            and not isinstance(exc.__cause__, HttpProcessingError)
        ):
            # raise_for_status: a complete HTTP exchange; the status code is the outcome.
            self._record_response(exc.status, None, exc.headers)
            return
        self._record_error(exc)

    def _record_error(self, exc: BaseException) -> None:
        error = sc.error_type(exc)
        self._error_type = self._phase_error = error
        span = self._span
        assert span is not None
        if self._recording:
            # Not span.record_exception(): its message and traceback would carry the URLs
            # that aiohttp's exceptions quote, secrets and all.
            urls = [str(self._url)]
            if self._stage == REDIRECTED:  # aiohttp refused to follow: the target is quoted
                urls.append(self._location)
                if self._next is not None:
                    urls.append(str(self._next[1]))
            info = getattr(exc, "request_info", None)
            if info is not None:
                urls += (str(info.real_url), str(info.url))
            inst = self._inst
            message = inst.scrub(str(exc), urls)
            trace_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            span.set_attribute(sc.ERROR_TYPE, error)
            span.add_event(
                "exception",
                {
                    "exception.type": error,
                    "exception.message": message,
                    "exception.stacktrace": inst.scrub(trace_text, urls),
                },
            )
            span.set_status(Status(StatusCode.ERROR, message or None))


def _joined_lookup(session: Any, host: str, port: int | None) -> bool:
    """True when ``on_dns_cache_hit`` means "waiting for another request's lookup"."""
    connector = getattr(session, "connector", None)
    # Newer aiohttp keeps in-flight lookups in _throttle_dns_futures; early 3.10 releases
    # in _throttle_dns_events.
    pending = getattr(connector, "_throttle_dns_futures", None)
    if pending is None:
        pending = getattr(connector, "_throttle_dns_events", None)
    return bool(pending) and (host, port) in pending  # type: ignore[operator]


def _redirect_target(method: str, url: URL, response: Any) -> tuple[str, URL] | None:
    """Where aiohttp will go next, by the same rules it follows (client.py, redirect loop)."""
    location = response.headers.get("Location") or response.headers.get("URI")
    if location is None:
        return None
    try:
        target = URL(location)
        if not target.is_absolute():
            target = url.join(target)
    except ValueError:
        return None
    status = response.status
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method = "GET"
    return method, target


def _quietly(step: Any) -> None:
    with contextlib.suppress(Exception):  # only ever after the fault was reported once
        step()
