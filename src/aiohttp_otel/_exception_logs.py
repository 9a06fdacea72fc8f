"""Exceptions as log records, the semantic conventions' replacement for exception span events.

``OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN`` (or the ``exception_signal`` keyword) chooses:
``logs`` emits a log record only, ``logs/dup`` a log record and the span event, and unset
keeps the span event alone. The record is the event ``http.client.request.exception``,
severity WARN, with the ``exception.*`` attributes and the failed attempt's span context.

The logs API is young and its signature grew over releases: what this API version takes
(the record's ``context``, its ``event_name``) is found once, at import.

```python
logs = ExceptionLogger(logger_provider=None, mode="logs/dup")
logs.spans  # True: the span event is still added
logs.emit(span.get_span_context(), "builtins.OSError", "refused", "Traceback ...", time_ns())
```
"""

from __future__ import annotations

import inspect
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber, get_logger
from opentelemetry.trace import NonRecordingSpan, SpanContext, set_span_in_context

from ._diagnostics import TRACED, report_fault
from ._version import __version__

ENV_EXCEPTION_SIGNAL = "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN"
EVENT_NAME = "http.client.request.exception"

SPAN_EVENTS = "span_events"
LOGS = "logs"
LOGS_DUP = "logs/dup"
#: What the ``exception_signal`` keyword accepts; the first is the default.
EXCEPTION_SIGNAL_CHOICES = (SPAN_EVENTS, LOGS, LOGS_DUP)

_RECORD_PARAMETERS = frozenset(inspect.signature(LogRecord.__init__).parameters)
#: Since API 1.35 a record takes its trace and span ids from a context.
_HAS_CONTEXT = "context" in _RECORD_PARAMETERS
#: Older APIs have no event name: it then goes in the ``event.name`` attribute.
_HAS_EVENT_NAME = "event_name" in _RECORD_PARAMETERS


class ExceptionLogger:
    """Where a failed attempt's exception goes: span events, log records, or both.

    Built once per trace config. ``mode`` is one of :data:`EXCEPTION_SIGNAL_CHOICES`; the
    logger's scope is the trace config's (its tracer's name and schema).
    """

    __slots__ = ("_logger", "logs", "spans")

    def __init__(
        self,
        logger_provider: Any,
        mode: str,
        *,
        scope_name: str = "aiohttp_otel",
        schema_url: str | None = None,
    ) -> None:
        #: Add the ``exception`` span event (every mode but ``logs``).
        self.spans = mode != LOGS
        #: Emit the log record (``logs`` and ``logs/dup``).
        self.logs = mode in (LOGS, LOGS_DUP)
        self._logger: Any = None
        if self.logs:
            try:
                self._logger = get_logger(
                    scope_name, __version__, logger_provider, schema_url=schema_url
                )
            except Exception as exc:
                # Better the deprecated span event than the exception recorded nowhere.
                report_fault(
                    "the logger provider (exceptions go to span events instead)", exc, TRACED
                )
                self.logs = False
                self.spans = True

    def emit(
        self,
        span_context: SpanContext,
        error_type: str,
        message: str,
        stacktrace: str,
        time_ns: int,
    ) -> None:
        """Emit one ``http.client.request.exception`` record; a no-op unless :attr:`logs`.

        ``message`` and ``stacktrace`` must already be redacted; ``time_ns`` is when the
        attempt failed. Never raises: a failing logger provider is reported once.
        """
        logger = self._logger
        if logger is None:
            return
        attributes: dict[str, str] = {"exception.type": error_type}
        if message:
            attributes["exception.message"] = message
        if stacktrace:
            attributes["exception.stacktrace"] = stacktrace
        record: dict[str, Any] = {
            "timestamp": time_ns,
            "severity_number": SeverityNumber.WARN,
            "severity_text": "WARN",
            "attributes": attributes,
        }
        if _HAS_EVENT_NAME:
            record["event_name"] = EVENT_NAME
        else:
            attributes["event.name"] = EVENT_NAME
        try:
            if _HAS_CONTEXT:
                record["context"] = set_span_in_context(NonRecordingSpan(span_context))
            else:
                record["trace_id"] = span_context.trace_id
                record["span_id"] = span_context.span_id
                record["trace_flags"] = span_context.trace_flags
            logger.emit(LogRecord(**record))
        except Exception as exc:
            report_fault("the logger provider (an exception log record)", exc, TRACED)
