"""One attempt on the wire: its CLIENT span, its response, its status, its timeline, its end.

An attempt begins when aiohttp asks the connector for a connection and is over when its
response body is (``span_end=body``), when its headers are (``span_end=headers``), when it
fails, or when the next attempt of the same request begins (a redirect hop, a resend, a
middleware's retry). Its timeline, after W3C Resource Timing::

    span start ─▶ aiohttp.request.headers_sent ─▶ aiohttp.request.body_sent ─▶
    aiohttp.response.headers ─▶ chunks ─▶ span end

An attempt whose span is not recording does only what the metrics need: no phases, no
events, no attributes after the start.
"""

from __future__ import annotations

import contextlib
import weakref
from time import time_ns
from typing import TYPE_CHECKING, Any

from aiohttp import ClientResponseError
from aiohttp.http_exceptions import HttpProcessingError
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.util.types import AttributeValue
from yarl import URL

from . import _semconv as sc
from ._connection_record import ConnectionRecord, record_of
from ._metrics import Count, dns_error_type
from ._phase_tracker import PhaseTracker
from ._probes import body as _body
from ._probes.protocol import RECORD_ATTR, BodyListener

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from ._instrumentation import Instrumentation

#: ``error.type`` of an attempt whose reused pooled connection failed, and that aiohttp resent.
STALE_CONNECTION = "stale_connection"

#: aiohttp's client speaks HTTP/1.x; connections are counted under this protocol version.
CONNECTION_PROTOCOL = "1.1"

HEADERS_SENT = "aiohttp.request.headers_sent"
BODY_SENT = "aiohttp.request.body_sent"
RESPONSE_HEADERS = "aiohttp.response.headers"
CHUNK_SENT = "aiohttp.request.chunk_sent"
CHUNK_RECEIVED = "aiohttp.response.chunk_received"

_ERROR = Status(StatusCode.ERROR)

# What an attempt is waiting for.
OPEN, ANSWERED, RECEIVING, DONE = range(4)

Attributes = dict[str, AttributeValue]


class Attempt(BodyListener):
    """One CLIENT span and everything recorded on it."""

    __slots__ = (
        "_inst",
        "span",
        "recording",
        "context",
        "method",
        "url",
        "resend_count",
        "state",
        "final",
        "hooked",
        "request_headers",
        "response",
        "start_ns",
        "answered_ns",
        "failed_ns",
        "failure",
        "last_activity_ns",
        "status",
        "protocol",
        "error_type",
        "phases",
        "tracks_phases",
        "created",
        "reused",
        "proxied",
        "queued_ns",
        "dns_started_ns",
        "dns_host",
        "sent_bytes",
        "sent_chunks",
        "received_chunks",
        "received_offset",
        "first_chunk_ns",
        "_headers_sent_ns",
        "_body_sent_ns",
        "max_gap_ns",
        "_metric_attrs",
        "_late",
        "_active",
        "_counted",
        "_unwatch",
        "_request_capture",
        "_response_capture",
        "_response_headers",
    )

    def __init__(
        self, inst: Instrumentation, parent: Context, method: str, url: URL, resend_count: int
    ) -> None:
        self._inst = inst
        self.resend_count = resend_count
        span_name, attributes = self._describe(method, url)
        now = time_ns()
        span = inst.tracer.start_span(
            span_name, parent, SpanKind.CLIENT, attributes, start_time=now
        )
        self.span: Span = span
        self.recording = recording = span.is_recording()
        #: The caller's context with this attempt's span in it: injected, parent of phases.
        self.context = set_span_in_context(span, parent)
        self.start_ns = self.last_activity_ns = now
        self.state = OPEN
        #: True once aiohttp handed this attempt's response to the caller (on_request_end).
        self.final = False
        #: True once the response hook saw this attempt (on a redirect signal).
        self.hooked = False
        #: The headers the attempt sent, for a hook's params. (Not the ClientRequest: it holds
        #: the response, which must stay collectable while its body is watched.)
        self.request_headers: Any = None
        self.response: Any = None
        self.answered_ns = self.failed_ns = 0
        self.failure: BaseException | None = None
        self.status: int | None = None
        self.protocol: str | None = None
        self.error_type: str | None = None
        self.created = self.reused = self.proxied = False
        self.queued_ns = self.dns_started_ns = 0
        self.dns_host = ""
        self.sent_bytes = self.sent_chunks = 0
        self.received_chunks = self.received_offset = 0
        self.first_chunk_ns = self.max_gap_ns = 0
        # Timeline marks not yet written: events written together with the next one cost
        # less than each on its own.
        self._headers_sent_ns = self._body_sent_ns = 0
        # Attributes learned along the way, written to the span in one go when it ends.
        self._late: Attributes = {}
        self._unwatch: Any = None
        # Body content, opt-in: only a recording span keeps any.
        self._request_capture = (
            inst.request_body.capture() if recording and inst.request_body is not None else None
        )
        self._response_capture: Any = None
        self._response_headers: Any = None
        #: Whether this attempt records its connection phases; the tracker itself is made by
        #: the first phase, and a request on a pooled connection never needs one.
        self.tracks_phases = recording and inst.phase_recorder is not None
        self.phases: PhaseTracker | None = None
        #: This attempt's count in ``http.client.active_requests``.
        self._active: Count = inst.instruments.active_requests.count(self._metric_attrs)
        self._active.value += 1
        self._counted = True

    # -- what the attempt is ---------------------------------------------------------------

    def _describe(self, method: str, url: URL) -> tuple[str, Attributes]:
        """The span name and start attributes (a sampler reads them); sets the metric ones."""
        inst = self._inst
        self.method = method
        self.url = url
        span_name, method_attr, method_original = inst.methods.lookup(method)
        host = url.host or ""
        port = url.port
        # url.scheme is opt-in on the HTTP client metrics (and the official package leaves it
        # out): every attribute of a measurement costs the SDK a copy, a check and a sort.
        metric: Attributes = {sc.HTTP_REQUEST_METHOD: method_attr, sc.SERVER_ADDRESS: host}
        if port is not None:
            metric[sc.SERVER_PORT] = port
        self._metric_attrs = metric
        attributes = dict(metric)
        attributes[sc.URL_SCHEME] = url.scheme
        full = inst.url_full(url)
        attributes[sc.URL_FULL] = full
        if method_original is not None:
            attributes[sc.HTTP_REQUEST_METHOD_ORIGINAL] = method_original
        if self.resend_count:
            attributes[sc.HTTP_REQUEST_RESEND_COUNT] = self.resend_count
        if inst.dup:
            attributes[sc.OLD_HTTP_METHOD] = method
            attributes[sc.OLD_HTTP_URL] = full
            attributes[sc.OLD_HTTP_HOST] = host
            attributes[sc.OLD_NET_PEER_NAME] = host
            if port is not None:
                attributes[sc.OLD_NET_PEER_PORT] = port
        return span_name, attributes

    def redescribe(self, method: str, url: URL) -> None:
        """The attempt goes elsewhere than its span was started for (a middleware changed the
        request before sending it)."""
        span_name, attributes = self._describe(method, url)
        if self.recording:
            self.span.update_name(span_name)
            self.span.set_attributes(attributes)
        if self._counted:  # count it under the attributes it is recorded with
            self._active.value -= 1
            self._active = self._inst.instruments.active_requests.count(self._metric_attrs)
            self._active.value += 1

    def _server(self) -> Attributes:
        metric = self._metric_attrs
        out: Attributes = {sc.SERVER_ADDRESS: metric[sc.SERVER_ADDRESS]}
        port = metric.get(sc.SERVER_PORT)
        if port is not None:
            out[sc.SERVER_PORT] = port
        return out

    def flush(self) -> None:
        """Write the attributes gathered so far: a hook is about to see the span."""
        late = self._late
        if late:
            self.span.set_attributes(late)
            self._late = {}

    # -- connection phases -----------------------------------------------------------------

    def _tracker(self) -> PhaseTracker | None:
        """The phase tracker, made when the first phase starts (if phases are recorded)."""
        phases = self.phases
        if phases is None and self.tracks_phases:
            recorder = self._inst.phase_recorder
            assert recorder is not None
            phases = self.phases = PhaseTracker(
                recorder, self.span, self.context, self._server(), self.url.scheme in _TLS
            )
        return phases

    def queued_start(self) -> None:
        self.queued_ns = time_ns()
        phases = self._tracker()
        if phases is not None:
            phases.queued()

    def queued_end(self) -> None:
        if self.queued_ns:
            waited = time_ns() - self.queued_ns
            self.queued_ns = 0
            self._inst.instruments.time_in_queue.record(waited / 1e9, self._metric_attrs)
        if self.phases is not None:
            self.phases.dequeued()

    def create_start(self) -> None:
        self.created = True
        phases = self._tracker()
        if phases is not None:
            phases.setup_started(self.url.scheme)

    def create_end(self) -> None:
        if self.phases is not None:
            self.phases.setup_over(time_ns())

    def dns_start(self, host: str) -> None:
        self.dns_started_ns = time_ns()
        self.dns_host = host
        phases = self._tracker()
        if phases is not None:
            phases.dns_started(host)

    def dns_end(self) -> None:
        # Measured even when the attempt is over: a cancelled request's lookup runs on.
        now = time_ns()
        if self.dns_started_ns:
            self._record_dns(now, {"dns.question.name": self.dns_host})
        if self.phases is not None:
            self.phases.dns_over(now)

    def dns_cache_hit(self, host: str, joined: bool) -> None:
        phases = self._tracker()
        if phases is None:
            return
        if joined:
            # Another request's lookup is in flight: this one waits for it, and that wait is
            # its DNS time.
            phases.dns_started(host, joined=True)
        else:
            phases.dns_cache_hit()

    def _record_dns(self, now: int, attributes: Attributes) -> None:
        elapsed = now - self.dns_started_ns
        self.dns_started_ns = 0
        self._inst.instruments.dns_lookup_duration.record(elapsed / 1e9, attributes)

    def socket_connect_start(self, addr_infos: Any) -> None:
        if self.phases is not None:
            addresses = list(dict.fromkeys((str(info[4][0]), info[4][1]) for info in addr_infos))
            self.phases.socket_connecting(addresses)

    def socket_connect_done(self, sock: Any) -> None:
        if self.phases is not None:
            self.phases.socket_connected(sock, self.proxied)

    def socket_connect_failed(self, exc: BaseException) -> None:
        if self.phases is not None:
            self.phases.socket_failed(exc)

    def tunnel_tls_start(self) -> None:
        if self.phases is not None:
            self.phases.tunnel_tls_started()

    def tunnel_tls_done(self, transport: Any) -> None:
        if self.phases is not None:
            self.phases.tunnel_tls_done(transport)

    def connection_acquired(self, connection: Any) -> None:
        created = self.created
        self.reused = not created
        protocol = connection.protocol
        known = None if created else record_of(protocol)
        if known is not None:
            # A pooled connection we saw open: its peer was read once, when it opened.
            peer = known.peer
            known.acquired()
            if known.origin is not None and self.recording:
                self.span.add_link(known.origin, {"aiohttp.connection.reused": True})
        else:
            transport = connection.transport
            peer = (
                None
                if transport is None
                else sc.peer_attributes(transport.get_extra_info("peername"))
            )
            if created:
                origin: SpanContext | None = None
                if self.recording:
                    phases = self.phases
                    opened = None if phases is None else phases.connection_opened(transport, peer)
                    origin = opened or self.span.get_span_context()
                self._remember_connection(protocol, origin, peer)
        if peer is not None and self.recording:
            self._late.update(peer)

    def _remember_connection(self, protocol: Any, origin: SpanContext | None, peer: Any) -> None:
        """The new connection remembers who opened it and where it goes, for its reusers."""
        if protocol is None:
            return
        metric = self._metric_attrs
        attributes: Attributes = {
            sc.SERVER_ADDRESS: metric[sc.SERVER_ADDRESS],
            sc.NETWORK_PROTOCOL_VERSION: CONNECTION_PROTOCOL,
        }
        if sc.SERVER_PORT in metric:
            attributes[sc.SERVER_PORT] = metric[sc.SERVER_PORT]
        record = ConnectionRecord(origin, peer, self._inst.instruments, attributes)
        setattr(protocol, RECORD_ATTR, record)

    # -- the request going out -------------------------------------------------------------

    def headers_sent(self) -> None:
        if self.recording:
            self._headers_sent_ns = time_ns()

    def chunk_sent(self, chunk: bytes) -> None:
        size = len(chunk)
        if self._request_capture is not None:
            self._request_capture.feed(chunk)
        offset = self.sent_bytes
        self.sent_bytes = offset + size
        self.sent_chunks = count = self.sent_chunks + 1
        if self.recording:
            self.write_timeline()  # the events stay stored in time order
            self._chunk_event(CHUNK_SENT, count, size, offset, None)

    def body_written(self) -> None:
        if not (self.sent_bytes and self.recording):
            return
        if self.state == OPEN:
            self._body_sent_ns = time_ns()
        else:  # the server answered before the body was all sent: told as it happened
            self.span.add_event(BODY_SENT, timestamp=time_ns())

    def write_timeline(self) -> None:
        """Write the timeline marks kept so far, in their order."""
        sent = self._headers_sent_ns
        if sent:
            self._headers_sent_ns = 0
            self.span.add_event(HEADERS_SENT, timestamp=sent)
        body = self._body_sent_ns
        if body:
            self._body_sent_ns = 0
            self.span.add_event(BODY_SENT, timestamp=body)

    # -- the response ----------------------------------------------------------------------

    def response_started(self, response: Any) -> None:
        """The response head is in: record it, and follow its body if the span ends there."""
        if self.state != OPEN:
            return
        now = time_ns()
        self.answered_ns = self.last_activity_ns = now
        self.record_response(response.status, response.version, response.headers)
        if self.recording:
            self.write_timeline()
            self.span.add_event(RESPONSE_HEADERS, timestamp=now)
            content = self._inst.response_body
            if content is not None:
                self._response_capture = content.capture()
                self._response_headers = response.headers
        complete = _body.is_complete(response)
        if complete or not self._inst.end_at_body:
            self.state = ANSWERED
            # A body still arriving when the span ends at headers has no size to tell yet.
            self.response = response if complete else None
            if self._response_capture is not None:  # what arrived with the head is all
                for data in _body.buffered(response):
                    self._response_capture.feed(data)
            return
        self.state = RECEIVING
        # Held weakly while the body arrives: a response the caller drops unreleased must be
        # collectable, or its span could never end.
        self.response = weakref.ref(response)
        recording = self.recording
        self._unwatch = _body.watch(self, response, chunks=recording)
        if recording:
            for data in _body.buffered(response):  # what arrived with the head
                self.body_chunk(data)
        failed = response.content.exception()
        if failed is not None:  # cut short before the watch began
            self.body_failed(failed)

    def response_failed(self, exc: BaseException) -> None:
        """Sending or reading the head failed: timed now, described when the attempt ends."""
        if self.state == OPEN and not self.failed_ns:
            self.failed_ns = time_ns()
            self.failure = exc

    connect_failed = response_failed

    def record_response(self, status: int, version: Any, headers: Any) -> None:
        protocol = sc.protocol_version(version)
        error = sc.status_error_type(status)
        self.status = status
        self.protocol = protocol
        self.error_type = error
        if not self.recording:
            return
        inst = self._inst
        late = self._late
        late[sc.HTTP_RESPONSE_STATUS_CODE] = status
        if protocol is not None:
            late[sc.NETWORK_PROTOCOL_VERSION] = protocol
        if inst.dup:
            late[sc.OLD_HTTP_STATUS_CODE] = status
        if inst.response_headers is not None and headers is not None:
            late.update(inst.response_headers.attributes(headers))
        if error is not None:
            late[sc.ERROR_TYPE] = error
            self.span.set_status(_ERROR)

    # -- the response body (from the body probe) -------------------------------------------

    def body_chunk(self, data: bytes) -> None:
        if self.state != RECEIVING:
            return
        if self._response_capture is not None:
            self._response_capture.feed(data)
        now = time_ns()
        size = len(data)
        offset = self.received_offset
        self.received_offset = offset + size
        self.received_chunks = count = self.received_chunks + 1
        if self.recording:
            if count == 1:
                self.first_chunk_ns = now
            else:
                gap = now - self.last_activity_ns
                if gap > self.max_gap_ns:
                    self.max_gap_ns = gap
            self._chunk_event(CHUNK_RECEIVED, count, size, offset, now)
        self.last_activity_ns = now

    def body_received(self) -> None:
        """Network EOF: every byte of the body has arrived."""
        self._body_over(time_ns())

    def body_released(self) -> None:
        """The caller released or closed the response before (or at) the body's end."""
        self._body_over(time_ns())

    def body_failed(self, exc: BaseException) -> None:
        if self.state != RECEIVING:
            return
        if not sc.is_cancellation(exc):
            self.record_error(exc, time_ns())
        self._body_over(time_ns())

    def body_abandoned(self) -> None:
        """The response was garbage-collected unreleased, or its connection was closed under
        it (the session closed): over at its last activity, not at the collection or close."""
        self._body_over(self.last_activity_ns)

    def _body_over(self, end_ns: int) -> None:
        if self.state != RECEIVING:
            return
        self.state = ANSWERED
        self.last_activity_ns = end_ns
        self._stop_watching()
        if self.final:
            self.finish(end_ns)

    def _stop_watching(self) -> None:
        unwatch = self._unwatch
        if unwatch is not None:
            self._unwatch = None
            unwatch()

    def _chunk_event(self, name: str, count: int, size: int, offset: int, ts: int | None) -> None:
        """One chunk event, unless this direction reached its cap (sizes are counted anyway)."""
        inst = self._inst
        if inst.chunk_events and count <= inst.max_chunk_events:
            self.span.add_event(
                name, {"aiohttp.chunk.size": size, "aiohttp.chunk.offset": offset}, ts
            )

    # -- outcome ---------------------------------------------------------------------------

    def record_exception(
        self, exc: BaseException, failed_ns: int, urls: tuple[str, ...] = ()
    ) -> None:
        """How the attempt failed: a status for ``raise_for_status``, an error otherwise,
        nothing for cancellation."""
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
            self.record_response(exc.status, None, exc.headers)
            return
        if self.dns_started_ns:
            # The lookup failed. (A cancelled request's lookup goes on, and its end is
            # still measured when it comes.)
            self._record_dns(
                failed_ns, {"dns.question.name": self.dns_host, sc.ERROR_TYPE: dns_error_type(exc)}
            )
        self.record_error(exc, failed_ns, urls=urls)

    def record_error(
        self,
        exc: BaseException,
        failed_ns: int,
        error: str | None = None,
        urls: tuple[str, ...] = (),
    ) -> None:
        """An error: ``error.type`` (the exception's name unless given), and an exception
        event timed at the failure."""
        if error is None:
            error = sc.error_type(exc)
        self.error_type = error
        if self.phases is not None:
            self.phases.error_type = error
        if not self.recording:
            return
        # Not span.record_exception(): its message and traceback would carry the URLs that
        # aiohttp's exceptions quote, secrets and all.
        known = [str(self.url), *urls]
        info = getattr(exc, "request_info", None)
        if info is not None:
            known += (str(info.real_url), str(info.url))
        inst = self._inst
        # The stack is formatted and scrubbed once per failure site; the message every time.
        exception_type, message, stacktrace = inst.describe_exception(exc, known)
        span = self.span
        span.set_attribute(sc.ERROR_TYPE, error)
        self.write_timeline()
        logs = inst.exception_logs
        if logs.spans:
            span.add_event(
                "exception",
                {
                    "exception.type": exception_type,
                    "exception.message": message,
                    "exception.stacktrace": stacktrace,
                },
                timestamp=failed_ns,
            )
        if logs.logs:
            logs.emit(span.get_span_context(), exception_type, message, stacktrace, failed_ns)
        span.set_status(Status(StatusCode.ERROR, message or None))

    def settle_failure(self) -> None:
        """An attempt that failed and that aiohttp (or a middleware) followed with another: a
        reused pooled connection that went stale, or a real failure."""
        exc = self.failure
        if exc is None or sc.is_cancellation(exc):
            return
        if self.reused:
            self.record_error(exc, self.failed_ns, STALE_CONNECTION)
        else:
            self.record_exception(exc, self.failed_ns)

    def end_time(self) -> int:
        """When an attempt that is followed by another one was over: its failure, or the last
        thing that happened on it."""
        return self.failed_ns or self.last_activity_ns

    def finish(self, end_ns: int) -> None:
        """End the span and record the metrics, once."""
        if self.state == DONE:
            return
        if self.state == RECEIVING:
            self._stop_watching()
        self.state = DONE
        # First, so that the count goes back down whatever happens below.
        self.uncount()
        span = self.span
        if self.phases is not None:
            self.phases.close_all(end_ns)
        response = self.response
        self.response = None
        if isinstance(response, weakref.ref):
            # A body that was being received: the response may be gone by now.
            alive = response()
            if alive is not None:
                received = _body.received_size(alive)
            else:  # only a recording attempt counted the chunks as they came
                received = self.received_offset if self.recording else None
        else:
            received = None if response is None else _body.received_size(response)
        sent = self.sent_bytes
        if self.recording:
            self.write_timeline()
            late = self._late
            if received is not None:
                late["http.response.body.size"] = received
            if sent:
                late["http.request.body.size"] = sent
            self._add_body_content(late)
            if self.received_chunks:
                late["aiohttp.response.chunk_count"] = self.received_chunks
                late["aiohttp.response.time_to_first_chunk"] = (
                    self.first_chunk_ns - self.answered_ns
                ) / 1e9
                if self.received_chunks > 1:
                    late["aiohttp.response.chunk_gap.max"] = self.max_gap_ns / 1e9
            if late:
                span.set_attributes(late)
        span.end(end_time=end_ns)
        metric = dict(self._metric_attrs)
        if self.status is not None:
            metric[sc.HTTP_RESPONSE_STATUS_CODE] = self.status
        if self.protocol is not None:
            metric[sc.NETWORK_PROTOCOL_VERSION] = self.protocol
        if self.error_type is not None:
            metric[sc.ERROR_TYPE] = self.error_type
        instruments = self._inst.instruments
        instruments.record_duration(end_ns - self.start_ns, metric, self.url.scheme)
        if received is not None and instruments.response_body_size is not None:
            instruments.response_body_size.record(received, metric)
        if sent and instruments.request_body_size is not None:
            instruments.request_body_size.record(sent, metric)

    def _add_body_content(self, late: Attributes) -> None:
        """``http.request.body.content`` / ``http.response.body.content``, when captured."""
        inst = self._inst
        for content, capture, headers in (
            (inst.request_body, self._request_capture, self.request_headers),
            (inst.response_body, self._response_capture, self._response_headers),
        ):
            if content is not None and capture is not None:
                value = content.value(capture, headers)
                if value is not None:
                    late[content.attribute] = value

    def uncount(self) -> None:
        """Take this attempt off ``http.client.active_requests``, once."""
        if self._counted:
            self._counted = False
            self._active.value -= 1

    def abandon(self) -> None:
        """After a fault in our own code: end what is open, quietly, and record nothing more."""
        if self.state == DONE:
            return
        state, self.state = self.state, DONE
        # The fault is reported already; what fails here too is only swallowed, step by step,
        # so that one failing step cannot keep the others (the span's end) from running.
        steps = [self.uncount, self.span.end]
        if state == RECEIVING:
            steps.append(self._stop_watching)
        if self.phases is not None:
            steps.insert(0, self.phases.abandon)
        for step in steps:
            with contextlib.suppress(Exception):
                step()


_TLS = frozenset({"https", "wss"})
