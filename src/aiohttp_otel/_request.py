"""The per-request state machine: the only place where spans start and end.

aiohttp gives one ``trace_config_ctx`` per logical request (all redirect hops and retries
share it), so this object is that context. It walks through a few stages::

    DONE ──start──▶ STARTED ──headers_sent──▶ SENT ──end/exception──▶ DONE
                        ▲                        │
                        │ (next attempt signal)  ├──redirect──▶ REDIRECTED
                        └────────────────────────┴─────────────────┘

Each physical attempt on the wire is its own CLIENT span (a "hop"). A hop that was answered
with a redirect stays open until aiohttp shows it follows the redirect (the next attempt's
first signal): if aiohttp gives up instead (``TooManyRedirects``, a bad ``Location``), the error
belongs on that hop. A second ``headers_sent`` in one hop means aiohttp silently resent the
request on a fresh connection after a stale pooled one failed; that attempt gets its own span.
"""

from __future__ import annotations

from collections.abc import Awaitable
from time import time_ns
from typing import TYPE_CHECKING, Any

from aiohttp import ClientResponseError
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.propagate import inject
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.util.types import AttributeValue
from yarl import URL

from . import _semconv as sc
from ._coexistence import evict_official
from ._diagnostics import TRACED, report_fault

if TYPE_CHECKING:
    import aiohttp

    from ._instrumentation import Instrumentation

# DONE is also where a request that is not traced (suppressed, excluded) stays.
DONE, STARTED, SENT, REDIRECTED = range(4)

#: ``error.type`` of an attempt that aiohttp resent because its pooled connection was stale.
STALE_CONNECTION = "stale_connection"

_ERROR = Status(StatusCode.ERROR)


class RequestTrace:
    """Tracing state of one logical request; aiohttp's ``trace_config_ctx`` for our config.

    ``trace_request_ctx`` is the value the caller passed to ``session.request(...,
    trace_request_ctx=...)``; it is kept untouched for hooks and other readers.
    """

    __slots__ = (
        "trace_request_ctx",
        "_inst",
        "_stage",
        "_parent",
        "_span",
        "_start_ns",
        "_answered_ns",
        "_resend_count",
        "_method",
        "_url",
        "_metric_attrs",
        "_status",
        "_protocol",
        "_error_type",
        "_next",
    )

    def __init__(self, instrumentation: Instrumentation, trace_request_ctx: Any = None) -> None:
        self.trace_request_ctx = trace_request_ctx
        self._inst = instrumentation
        self._stage = DONE
        self._span: Span | None = None
        self._resend_count = 0

    # -- signal steps: each returns an awaitable (an async hook) or None ---------------------

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
        self._parent = otel_context.get_current()
        self._begin_hop(params.method, url)
        hook = inst.request_hook
        return None if hook is None else hook(self._span, params, self.trace_request_ctx)

    def begin_attempt(self, _session: Any, _params: Any) -> None:
        """The first signal of a physical attempt (queue, connect or reuse)."""
        if self._stage >= SENT:
            self._next_hop()

    def headers_sent(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        stage = self._stage
        if not stage:
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
        inject(params.headers, context=set_span_in_context(span, self._parent))
        if inst.request_headers is not None and span.is_recording():
            span.set_attributes(inst.request_headers.attributes(params.headers))
        hook = inst.request_hook
        if hook is None or not self._resend_count:
            return None
        return hook(span, params, self.trace_request_ctx)

    def connection_acquired(self, connection: aiohttp.connector.Connection) -> None:
        if not self._stage:
            return
        span = self._span
        assert span is not None
        transport = connection.transport
        if transport is None or not span.is_recording():
            return
        peer = sc.peer_attributes(transport.get_extra_info("peername"))
        if peer is not None:
            span.set_attributes(peer)

    def redirect(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        if not self._stage:
            return None
        response = params.response
        self._record_response(response.status, response.version, response.headers)
        self._answered_ns = time_ns()
        self._stage = REDIRECTED
        self._next = _redirect_target(params.method, params.url, response)
        hook = self._inst.response_hook
        return None if hook is None else hook(self._span, params, self.trace_request_ctx)

    def end(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        stage = self._stage
        if not stage:
            return None
        if stage != REDIRECTED:  # a 3xx without Location already recorded its response
            response = params.response
            self._record_response(response.status, response.version, response.headers)
        return self._finish(params, time_ns())

    def exception(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        if not self._stage:
            return None
        self._record_exception(params.exception)
        return self._finish(params, time_ns())

    def abandon(self) -> None:
        """After a fault in our own code: end what is open and trace nothing more."""
        live = self._stage
        self._stage = DONE
        if live and self._span is not None:
            self._span.end()

    # -- hops ------------------------------------------------------------------------------

    def _begin_hop(self, method: str, url: URL) -> None:
        inst = self._inst
        span_name, _, _ = inst.methods.lookup(method)
        attributes = self._hop_attributes(method, url)
        now = time_ns()
        self._span = inst.tracer.start_span(
            span_name, self._parent, SpanKind.CLIENT, attributes, start_time=now
        )
        self._start_ns = now
        self._method = method
        self._url = url
        self._status: int | None = None
        self._protocol: str | None = None
        self._error_type: str | None = None
        self._stage = STARTED

    def _hop_attributes(self, method: str, url: URL) -> dict[str, AttributeValue]:
        inst = self._inst
        _, method_attr, method_original = inst.methods.lookup(method)
        host = url.host or ""
        port = url.port
        scheme = url.scheme
        metric: dict[str, AttributeValue] = {
            sc.HTTP_REQUEST_METHOD: method_attr,
            sc.SERVER_ADDRESS: host,
            sc.URL_SCHEME: scheme,
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
        return attributes

    def _describe_hop(self, span: Span, method: str, url: URL) -> None:
        self._method = method
        self._url = url
        span.update_name(self._inst.methods.lookup(method)[0])
        span.set_attributes(self._hop_attributes(method, url))

    def _next_hop(self) -> None:
        """Close the previous attempt and open the span of the one that is starting now."""
        if self._stage == REDIRECTED:
            method, url = self._next or (self._method, self._url)
            self._end_hop(self._answered_ns)
        else:  # SENT: no answer came, aiohttp is resending on a new connection
            method, url = self._method, self._url
            self._error_type = STALE_CONNECTION
            span = self._span
            assert span is not None
            if span.is_recording():
                span.set_attribute(sc.ERROR_TYPE, STALE_CONNECTION)
                span.set_status(_ERROR)
            self._end_hop(time_ns())
        # Until the next span has started, a fault must not end the previous one again.
        self._stage = DONE
        self._resend_count += 1
        self._begin_hop(method, url)

    def _finish(self, params: Any, end_ns: int) -> Awaitable[Any] | None:
        self._stage = DONE
        hook = self._inst.response_hook
        pending = None if hook is None else hook(self._span, params, self.trace_request_ctx)
        if pending is None:
            self._end_hop(end_ns)
            return None
        return self._end_hop_after(pending, end_ns)

    async def _end_hop_after(self, pending: Awaitable[Any], end_ns: int) -> None:
        try:
            await pending
        except Exception as exc:
            report_fault("response_hook", exc, TRACED)
        finally:
            self._end_hop(end_ns)

    def _end_hop(self, end_ns: int) -> None:
        span = self._span
        assert span is not None
        span.end(end_time=end_ns)
        metric = self._metric_attrs
        if self._status is not None:
            metric[sc.HTTP_RESPONSE_STATUS_CODE] = self._status
        if self._protocol is not None:
            metric[sc.NETWORK_PROTOCOL_VERSION] = self._protocol
        if self._error_type is not None:
            metric[sc.ERROR_TYPE] = self._error_type
        self._inst.record_duration(end_ns - self._start_ns, metric)

    # -- outcome ---------------------------------------------------------------------------

    def _record_response(self, status: int, version: Any, headers: Any) -> None:
        protocol = sc.protocol_version(version)
        error = sc.status_error_type(status)
        self._status = status
        self._protocol = protocol
        self._error_type = error
        span = self._span
        assert span is not None
        if not span.is_recording():
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
        span.set_attributes(attributes)

    def _record_exception(self, exc: BaseException) -> None:
        if sc.is_cancellation(exc):
            return  # intentional cancellation is not an error: status stays unset
        if type(exc) is ClientResponseError and exc.status >= 400:
            # raise_for_status: a complete HTTP exchange; the status code is the outcome.
            self._record_response(exc.status, None, exc.headers)
            return
        error = sc.error_type(exc)
        self._error_type = error
        span = self._span
        assert span is not None
        if span.is_recording():
            span.set_attribute(sc.ERROR_TYPE, error)
            span.record_exception(exc)
            message = str(exc)
            span.set_status(Status(StatusCode.ERROR, message or None))


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
