"""Everything built once per trace config: the tracer, the instruments, the compiled options.

Signal handlers only read from here; nothing on the request path parses, compiles or looks
up configuration.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable

from opentelemetry.metrics import NoOpMeter, NoOpMeterProvider, get_meter
from opentelemetry.trace import get_tracer
from yarl import URL

from . import _semconv as sc
from ._body_capture import BodyContent, BodyFilter, Direction
from ._diagnostics import report_fault
from ._exception_logs import ExceptionLogger
from ._exception_text import ExceptionText
from ._metrics import Instruments
from ._options import Options
from ._phases import EventPhases, SpanPhases
from ._probes import install_probes
from ._providers import RecordingWatch
from ._redaction import URL_IN_TEXT, HeaderCapture, UrlRedactor
from ._version import __version__

SCOPE_NAME = "aiohttp_otel"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"


class Instrumentation:
    """The compiled form of :class:`Options`, shared by every request of a trace config."""

    def __init__(self, options: Options) -> None:
        self.options = options
        #: The instrumentor turns this off on ``uninstrument()``, for sessions it already wired.
        self.enabled = True
        self.tracer = get_tracer(
            SCOPE_NAME, __version__, options.tracer_provider, schema_url=SCHEMA_URL
        )
        self.dup = options.semconv is sc.SemconvMode.DUP
        self._recording = RecordingWatch(options.tracer_provider, options.meter_provider)
        try:
            meter = get_meter(
                SCOPE_NAME, __version__, options.meter_provider, schema_url=SCHEMA_URL
            )
            self.instruments = Instruments(
                meter,
                dup=self.dup,
                meter_provider=options.meter_provider,
                body_sizes=options.body_size_metrics,
            )
        except Exception as exc:
            # A broken meter provider (or an instrument it cannot make) must not cost the
            # traces, nor the request: one warning, then no metrics from this trace config.
            report_fault(
                "creating the metric instruments",
                exc,
                "metrics are off for this trace config; tracing goes on",
            )
            # Its own no-op provider: the counts must not land on the global provider's.
            self.instruments = Instruments(
                NoOpMeter(SCOPE_NAME), dup=self.dup, meter_provider=NoOpMeterProvider()
            )
        self.methods = sc.MethodTable(options.known_methods)
        self.excluded_urls = options.excluded_urls
        self.request_hook = options.request_hook
        self.response_hook = options.response_hook
        self._url_filter = options.url_filter
        self._redact = UrlRedactor(options.sensitive_query_params)
        self.request_headers = _capture(
            "http.request.header.",
            options.captured_request_headers,
            options.sensitive_headers,
            self._scrub_url,
        )
        self.response_headers = _capture(
            "http.response.header.",
            options.captured_response_headers,
            options.sensitive_headers,
            self._scrub_url,
        )
        self.phase_recorder: SpanPhases | EventPhases | None = (
            SpanPhases(self.tracer)
            if options.phases == "spans"
            else EventPhases()
            if options.phases == "events"
            else None
        )
        self.chunk_events = options.chunk_events
        self.max_chunk_events = options.max_chunk_events
        self.end_at_body = options.span_end == "body"
        #: Body content capture per direction; ``None`` when off (nothing to do per chunk).
        self.request_body = _body_content(
            "request", options.capture_request_body, options.body_filter
        )
        self.response_body = _body_content(
            "response", options.capture_response_body, options.body_filter
        )
        #: Where exceptions go: ``.spans`` (the span event), ``.logs`` / ``.emit()`` (a record).
        self.exception_logs = ExceptionLogger(
            options.logger_provider,
            options.exception_signal,
            scope_name=SCOPE_NAME,
            schema_url=SCHEMA_URL,
        )
        self._exception_text = ExceptionText()
        install_probes()

    def dormant(self) -> bool:
        """True while nothing could record a request (no SDK yet) and no hook wants to see
        it: the request then only passes on the context it came with."""
        return (
            not self._recording.can_record()
            and self.request_hook is None
            and self.response_hook is None
        )

    def url_full(self, url: URL) -> str:
        """``url.full``: the user's ``url_filter`` first, then our redaction."""
        text = str(url) if self._url_filter is None else str(self._url_filter(url))
        return self._redact(text)

    def describe_exception(
        self, exc: BaseException, known_urls: Iterable[str] = ()
    ) -> tuple[str, str, str]:
        """``(exception.type, exception.message, exception.stacktrace)`` for the exception
        event, the last two scrubbed as :meth:`scrub` does; the stack is cached by where the
        failure happened, so a repeated failure costs a lookup."""
        urls = sorted(set(known_urls), key=len, reverse=True)
        return self._exception_text.describe(exc, lambda text: self._scrub_sorted(text, urls))

    def scrub(self, text: str, known_urls: Iterable[str] = ()) -> str:
        """Free text (an exception message, a traceback) with every URL in it treated as
        ``url.full`` is: aiohttp's exceptions quote the request URL, signed query included.

        The request's own URLs are replaced where they appear verbatim (a URL may hold a
        quote or a space that ends a pattern match early); any other URL-looking text is
        matched by pattern.
        """
        return self._scrub_sorted(text, sorted(set(known_urls), key=len, reverse=True))

    def _scrub_sorted(self, text: str, known_urls: list[str]) -> str:
        """:meth:`scrub` with the known URLs already sorted longest first."""
        if "://" not in text:
            return text
        for raw in known_urls:
            if raw and raw in text:
                text = text.replace(raw, self._scrub_url(raw))
        return URL_IN_TEXT.sub(self._scrub_match, text)

    def _scrub_match(self, match: re.Match[str]) -> str:
        if match["single"] is not None:
            return f"'{self._scrub_url(match['single'])}'"
        if match["double"] is not None:
            return f'"{self._scrub_url(match["double"])}"'
        return self._scrub_url(match["bare"])

    def _scrub_url(self, text: str) -> str:
        if self._url_filter is not None:
            # Not a URL yarl takes, or a filter that cannot take it: redaction still applies.
            with contextlib.suppress(Exception):
                text = str(self._url_filter(URL(text)))
        return self._redact(text)


def _body_content(
    direction: Direction, cap: int | None, body_filter: BodyFilter | None
) -> BodyContent | None:
    return None if cap is None else BodyContent(direction, cap, body_filter)


def _capture(
    prefix: str,
    capture: tuple[str, ...],
    sensitive: tuple[str, ...],
    scrub_url: Callable[[str], str],
) -> HeaderCapture | None:
    return HeaderCapture(prefix, capture, sensitive, scrub_url) if capture else None
