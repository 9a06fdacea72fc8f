"""The logical request: the attempts it is made of, the context it carries, the user's hooks.

aiohttp gives one ``trace_config_ctx`` per logical request: every redirect hop, the hidden
resend after a failed connection, and every call a client middleware makes share it. This
object is that context. It does not infer attempts from the order of signals: the connect
probe tells it where each attempt begins (``attempt_connecting``), and the exchange probe where
each gets its response or fails. Each attempt is its own CLIENT span (``_attempt``), a sibling
under the caller's context, with ``http.request.resend_count`` 1, 2, ... on the later ones.

An attempt is over when the next one begins (then it ends at its failure or its last activity,
and the response hook sees it as a finished exchange), when aiohttp reports the request's end
(then its body decides, see ``_attempt``) or its failure.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Awaitable
from time import time_ns
from typing import TYPE_CHECKING, Any

from aiohttp.tracing import TraceRequestEndParams, TraceRequestExceptionParams
from opentelemetry import context as otel_context
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY, _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.propagate import inject
from opentelemetry.trace import get_current_span
from yarl import URL

from ._attempt import RECEIVING, Attempt
from ._coexistence import evict_official
from ._hooks import Hook, settle
from ._probes.connect import joined_lookup
from ._probes.protocol import RequestListener

if TYPE_CHECKING:
    import aiohttp
    from opentelemetry.context import Context

    from ._instrumentation import Instrumentation


#: The plain key ``suppress_instrumentation()`` also sets, for instrumentations that predate
#: the context key.
SUPPRESS_INSTRUMENTATION_PLAIN = "suppress_instrumentation"


class RequestTrace(RequestListener):
    """Tracing state of one logical request; aiohttp's ``trace_config_ctx`` for our config.

    ``trace_request_ctx`` is the value the caller passed to ``session.request(...,
    trace_request_ctx=...)``; it is kept untouched for hooks and other readers.
    """

    __slots__ = (
        "trace_request_ctx",
        "_inst",
        "_carried",
        "_parent",
        "_attempt",
        "_resend_count",
        "_connected",
        "_redirect_urls",
        "_lookup",
    )

    def __init__(self, instrumentation: Instrumentation, trace_request_ctx: Any = None) -> None:
        self.trace_request_ctx = trace_request_ctx
        self._inst = instrumentation
        # Built for every request, traced or not: only what the untraced path reads is set
        # here; start() sets the rest.
        self._carried: Context | None = None
        #: The attempt being recorded; None for a request that is not traced, or is over.
        self._attempt: Attempt | None = None
        #: The attempt whose DNS lookup is running: it may outlive the request (cancelled).
        self._lookup: Attempt | None = None

    @property
    def traced(self) -> bool:
        """True while an attempt of this request is being recorded."""
        return self._attempt is not None

    # -- request signals: each returns an awaitable (an async hook) or None -------------------

    def start(self, session: aiohttp.ClientSession, params: Any) -> Awaitable[Any] | None:
        inst = self._inst
        if not inst.enabled:
            return None
        # The suppression keys, read from the context once (the helper would read it thrice).
        parent = otel_context.get_current()
        if (
            parent.get(_SUPPRESS_INSTRUMENTATION_KEY)
            or parent.get(_SUPPRESS_HTTP_INSTRUMENTATION_KEY)
            or parent.get(SUPPRESS_INSTRUMENTATION_PLAIN)
        ):
            return None
        url: URL = params.url
        excluded = inst.excluded_urls
        if excluded is not None and excluded.search(str(url)):
            return None
        if len(session._trace_configs) > 1:
            evict_official(session)
        self._parent = parent
        if inst.dormant():
            # Nothing can record, but a trace that came in must go on past this service.
            if get_current_span(parent).get_span_context().is_valid:
                self._carried = parent
            return None
        self._resend_count = 0
        # The first attempt's span starts with the request, so it covers any queueing.
        self._attempt = Attempt(inst, parent, params.method, url, 0)
        self._connected = False
        self._redirect_urls: tuple[str, ...] = ()
        hook = inst.request_hook
        return None if hook is None else self._hook(hook, params)

    def headers_sent(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        attempt = self._attempt
        if attempt is None:
            if self._carried is not None:
                inject(params.headers, context=self._carried)
            return None
        # Each attempt carries its own traceparent: these are the headers it will serialise.
        inject(params.headers, context=attempt.context)
        attempt.headers_sent()
        inst = self._inst
        if inst.request_headers is not None and attempt.recording:
            attempt.span.set_attributes(inst.request_headers.attributes(params.headers))
        hook = inst.request_hook
        if hook is None or not attempt.resend_count:
            return None
        return self._hook(hook, params)

    def chunk_sent(self, _session: Any, params: Any) -> None:
        attempt = self._attempt
        if attempt is None:
            return
        chunk = params.chunk
        if chunk:  # aiohttp 3.10 signals an empty chunk for body-less requests
            attempt.chunk_sent(chunk)

    def redirect(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        attempt = self._attempt
        if attempt is None:
            return None
        if attempt.status is None:  # a response the exchange probe did not see
            response = params.response
            attempt.record_response(response.status, response.version, response.headers)
        # The hop stays open until aiohttp follows the redirect (the next attempt begins): if
        # it gives up instead (too many redirects, a bad Location), the error is this hop's,
        # and its message quotes the target.
        self._redirect_urls = _redirect_urls(params.url, params.response)
        hook = self._inst.response_hook
        if hook is None:
            return None
        attempt.hooked = True
        # A hook written for the official package knows end and exception params only.
        end = TraceRequestEndParams(params.method, params.url, params.headers, params.response)
        return self._hook(hook, end)

    def end(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        attempt = self._attempt
        if attempt is None:
            return None
        self._attempt = None
        if attempt.status is None:  # answered without the exchange probe (no attempt seen)
            response = params.response
            attempt.record_response(response.status, response.version, response.headers)
            attempt.last_activity_ns = time_ns()
        attempt.final = True
        hook = self._inst.response_hook
        pending = None if hook is None else self._hook_on(attempt, hook, params)
        if attempt.state == RECEIVING:  # the body decides when the span ends
            return pending
        # Over already: at its headers, or at the end of a body that came with them.
        end_ns = attempt.last_activity_ns
        if pending is None:
            attempt.finish(end_ns)
            return None
        return _finish_after(pending, attempt, end_ns)

    def exception(self, _session: Any, params: Any) -> Awaitable[Any] | None:
        attempt = self._attempt
        if attempt is None:
            return None
        # The time first: the description below costs more than the failure took.
        now = time_ns()
        self._attempt = None
        end_ns = attempt.failed_ns or now
        attempt.record_exception(params.exception, end_ns, self._redirect_urls)
        hook = self._inst.response_hook
        pending = None if hook is None else self._hook_on(attempt, hook, params)
        if pending is None:
            attempt.finish(end_ns)
            return None
        return _finish_after(pending, attempt, end_ns)

    def abandon(self) -> None:
        """After a fault in our own code: end what is open and trace nothing more.

        Called from exception handlers, so it must not raise whatever state it finds.
        """
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            with contextlib.suppress(Exception):  # the fault is reported already
                attempt.abandon()

    # -- connection signals ------------------------------------------------------------------

    def queued_start(self, _session: Any, _params: Any) -> None:
        if self._attempt is not None:
            self._attempt.queued_start()

    def queued_end(self, _session: Any, _params: Any) -> None:
        if self._attempt is not None:
            self._attempt.queued_end()

    def create_start(self, _session: Any, _params: Any) -> None:
        if self._attempt is not None:
            self._attempt.create_start()

    def create_end(self, _session: Any, _params: Any) -> None:
        if self._attempt is not None:
            self._attempt.create_end()

    def dns_start(self, _session: Any, params: Any) -> None:
        attempt = self._lookup = self._attempt
        if attempt is not None:
            attempt.dns_start(params.host)

    def dns_end(self, _session: Any, _params: Any) -> None:
        # A cancelled request's lookup runs on; the attempt it belonged to still measures it.
        attempt, self._lookup = self._lookup, None
        if attempt is not None:
            attempt.dns_end()

    def dns_cache_hit(self, session: aiohttp.ClientSession, params: Any) -> None:
        attempt = self._attempt
        if attempt is not None and attempt.tracks_phases:
            attempt.dns_cache_hit(
                params.host, joined_lookup(session, params.host, attempt.url.port)
            )

    # -- what the probes tell ------------------------------------------------------------------

    def attempt_connecting(self, req: Any) -> Awaitable[Any] | None:
        """An attempt begins: the first one keeps the span the request started; any later one
        ends the attempt before it and opens its own span."""
        attempt = self._attempt
        if attempt is None:
            return None
        if not self._connected:
            self._connected = True
            attempt.request_headers = req.headers
            attempt.proxied = getattr(req, "proxy", None) is not None
            if req.method != attempt.method or not _same_target(req.url, attempt.url):
                attempt.redescribe(req.method, req.url)
            return None
        pending = self._followed(attempt)
        self._resend_count += 1
        # aiohttp moved the URL's credentials into a header: keep the URL the span had.
        url = attempt.url if _same_target(req.url, attempt.url) else req.url
        nxt = Attempt(self._inst, self._parent, req.method, url, self._resend_count)
        nxt.request_headers = req.headers
        nxt.proxied = getattr(req, "proxy", None) is not None
        self._attempt = nxt
        return pending

    def _followed(self, attempt: Attempt) -> Awaitable[Any] | None:
        """End an attempt that another one follows; call the response hook on it as on any
        finished exchange."""
        self._redirect_urls = ()
        attempt.settle_failure()
        end_ns = attempt.end_time()
        hook = self._inst.response_hook
        if hook is None or attempt.hooked or (attempt.status is None and attempt.failure is None):
            attempt.finish(end_ns)
            return None
        method, url, headers = attempt.method, attempt.url, attempt.request_headers
        response = attempt.response
        if isinstance(response, weakref.ref):
            response = response()
        params: Any
        if attempt.failure is not None and attempt.status is None:
            params = TraceRequestExceptionParams(method, url, headers, attempt.failure)
        else:
            params = TraceRequestEndParams(method, url, headers, response)
        pending = self._hook_on(attempt, hook, params)
        if pending is None:
            attempt.finish(end_ns)
            return None
        return _finish_after(pending, attempt, end_ns)

    def connect_failed(self, exc: BaseException) -> None:
        if self._attempt is not None:
            self._attempt.connect_failed(exc)

    def connection_acquired(self, connection: Any) -> None:
        if self._attempt is not None:
            self._attempt.connection_acquired(connection)

    def socket_connect_start(self, addr_infos: Any) -> None:
        if self._attempt is not None:
            self._attempt.socket_connect_start(addr_infos)

    def socket_connect_done(self, sock: Any) -> None:
        if self._attempt is not None:
            self._attempt.socket_connect_done(sock)

    def socket_connect_failed(self, exc: BaseException) -> None:
        if self._attempt is not None:
            self._attempt.socket_connect_failed(exc)

    def tunnel_tls_start(self) -> None:
        if self._attempt is not None:
            self._attempt.tunnel_tls_start()

    def tunnel_tls_done(self, transport: Any) -> None:
        if self._attempt is not None:
            self._attempt.tunnel_tls_done(transport)

    def response_started(self, response: Any) -> None:
        if self._attempt is not None:
            self._attempt.response_started(response)

    def response_failed(self, exc: BaseException) -> None:
        if self._attempt is not None:
            self._attempt.response_failed(exc)

    def body_written(self) -> None:
        if self._attempt is not None:
            self._attempt.body_written()

    # -- hooks -------------------------------------------------------------------------------

    def _hook(self, hook: Hook, params: Any) -> Awaitable[Any] | None:
        attempt = self._attempt
        assert attempt is not None
        return self._hook_on(attempt, hook, params)

    def _hook_on(self, attempt: Attempt, hook: Hook, params: Any) -> Awaitable[Any] | None:
        """Call a user hook on an attempt's span, with every attribute known so far on it."""
        attempt.flush()
        pending = hook(attempt.span, params, self.trace_request_ctx)
        return None if pending is None else settle(pending, hook.name)


async def _finish_after(pending: Awaitable[Any], attempt: Attempt, end_ns: int) -> None:
    try:
        await pending
    finally:
        attempt.finish(end_ns)


def _redirect_urls(url: URL, response: Any) -> tuple[str, ...]:
    """The redirect target as aiohttp will quote it in an error: as sent, and resolved."""
    location = response.headers.get("Location") or response.headers.get("URI")
    if not location:
        return ()
    try:
        return (location, str(url.join(URL(location))))
    except ValueError:
        return (location,)


def _same_target(sent: URL, known: URL) -> bool:
    """The same host, port, path and query (the URL aiohttp sends has no credentials)."""
    return (
        sent.raw_path_qs == known.raw_path_qs
        and sent.raw_host == known.raw_host
        and sent.port == known.port
    )
