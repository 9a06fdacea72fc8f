"""``aiohttp-otel trace --otlp``: the OTLP/HTTP exporters, checked rather than trusted.

The SDK's exporters retry a receiver that is gone for seconds, log every retry, and leave
the caller nothing to tell the user. Here the receiver is tried once before the run, each
export has a short deadline, the exporters' own log lines are kept out of the terminal, and
whether every export arrived decides the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from yarl import URL

# Long enough for a receiver across a network, short enough that a dead one is soon told.
EXPORT_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 2.0
# Where the exporters (and the transport under them) log their retries and failures.
_EXPORTER_LOGGER = "opentelemetry.exporter"
_SIGNAL_PATHS = ("/v1/traces", "/v1/metrics")


def otlp_signal_endpoint(endpoint: str, signal: str) -> str:
    """``http://host:4318`` (or that with a signal path already) -> ``.../v1/<signal>``."""
    base = endpoint.rstrip("/")
    for known in _SIGNAL_PATHS:
        if base.endswith(known):
            base = base[: -len(known)]
    return f"{base}/v1/{signal}"


class _KeptRecords(logging.Handler):
    """Keeps what the exporters log, to say it once in our own words."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())


class _WatchedSpans(SpanExporter):
    def __init__(self, inner: SpanExporter, export: OtlpExport) -> None:
        self._inner = inner
        self._export = export

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:
            result = SpanExportResult.FAILURE
            self._export.note(f"{type(exc).__name__}: {exc}")
        self._export.record("traces", result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _WatchedMetrics(MetricExporter):
    def __init__(self, inner: MetricExporter, export: OtlpExport) -> None:
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self._inner = inner
        self._export = export

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            result = MetricExportResult.FAILURE
            self._export.note(f"{type(exc).__name__}: {exc}")
        self._export.record("metrics", result is MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class OtlpExport:
    """The OTLP/HTTP span and metric exporters of one run, and how their exports went."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.failures: list[str] = []
        self._notes: list[str] = []
        self._kept = _KeptRecords()
        self._unreachable: str | None = None

    def span_processor(self) -> BatchSpanProcessor:
        # Imported here: the OTLP exporter is optional, and the parser checked it is present.
        module = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        inner = module.OTLPSpanExporter(
            endpoint=otlp_signal_endpoint(self.endpoint, "traces"), timeout=EXPORT_TIMEOUT_S
        )
        return BatchSpanProcessor(_WatchedSpans(inner, self))

    def metric_reader(self) -> PeriodicExportingMetricReader:
        module = importlib.import_module("opentelemetry.exporter.otlp.proto.http.metric_exporter")
        inner = module.OTLPMetricExporter(
            endpoint=otlp_signal_endpoint(self.endpoint, "metrics"), timeout=EXPORT_TIMEOUT_S
        )
        # Exported once, at shutdown: the command is over in seconds.
        return PeriodicExportingMetricReader(
            _WatchedMetrics(inner, self), export_interval_millis=3_600_000
        )

    async def reachable(self) -> bool:
        """Whether a TCP connection to the receiver opens (true when a proxy is in the way:
        only the exporter knows how to go through it)."""
        url = URL(self.endpoint)
        host, port = url.host or "", url.port or 0
        if urllib.request.getproxies().get(url.scheme) and not urllib.request.proxy_bypass(host):
            return True
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
            )
        except (OSError, asyncio.TimeoutError) as exc:
            self._unreachable = (
                f"cannot connect to the OTLP receiver at {host}:{port} ({_reason(exc)})"
            )
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def record(self, signal: str, ok: bool) -> None:
        if not ok:
            self.failures.append(signal)

    def note(self, message: str) -> None:
        self._notes.append(message)

    def failed(self) -> bool:
        return bool(self.failures) or self._unreachable is not None

    def problem(self) -> str:
        """What went wrong, in a line."""
        if self._unreachable is not None:
            return self._unreachable
        signals = " and ".join(dict.fromkeys(self.failures))
        said = [*self._notes, *self._kept.messages]
        why = f": {said[-1]}" if said else ""
        return f"exporting {signals} to {self.endpoint} failed{why}"

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Keep the exporters' log lines (a retry each, then the failure) off the terminal
        while the run flushes, for :meth:`problem` to sum them up."""
        logger = logging.getLogger(_EXPORTER_LOGGER)
        propagate = logger.propagate
        logger.addHandler(self._kept)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(self._kept)
            logger.propagate = propagate


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer in {CONNECT_TIMEOUT_S:g} s"
    if isinstance(exc, socket.gaierror):
        return f"the name does not resolve: {exc.strerror}"
    if isinstance(exc, OSError) and exc.errno:
        # "Connection refused", not asyncio's "Connect call failed ('127.0.0.1', 1)".
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
