"""Loopback OTLP receivers: what a collector would get from the real exporters, decoded.

Two receivers, one per OTLP transport:

- :class:`HttpReceiver`: an aiohttp server taking ``POST /v1/traces`` and ``POST /v1/metrics``
  (HTTP/protobuf);
- :class:`GrpcReceiver`: a ``grpc.server`` serving the ``TraceService`` and ``MetricsService``
  of ``opentelemetry-proto``.

Each runs on its own threads, never on the test's event loop: an exporter called
synchronously from that loop (``SimpleSpanProcessor``, ``force_flush()``) would otherwise wait
for a server that cannot answer until the export returns. Both bind 127.0.0.1 on a port the OS
picks, keep every decoded request, and offer bounded waits::

    with HttpReceiver() as receiver:
        ...  # point an exporter at receiver.endpoint
        spans = await receiver.wait_for_spans(3, timeout=5)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

ExportTraceServiceRequest = trace_service_pb2.ExportTraceServiceRequest
ExportMetricsServiceRequest = metrics_service_pb2.ExportMetricsServiceRequest

#: OTLP's enum values, spelled out so that assertions read as what they check.
SPAN_KIND_INTERNAL = Span.SpanKind.SPAN_KIND_INTERNAL  # 1
SPAN_KIND_CLIENT = Span.SpanKind.SPAN_KIND_CLIENT  # 3

_POLL_SECONDS = 0.02


# -- decoding --------------------------------------------------------------------------------


def value_of(value: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue`` (arrays as tuples)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(value_of(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind)


def attributes_of(pairs: Any) -> dict[str, Any]:
    """``{key: value}`` of repeated ``KeyValue``."""
    return {pair.key: value_of(pair.value) for pair in pairs}


def wire_types_of(pairs: Any) -> dict[str, str]:
    """``{key: "int_value" | "string_value" | ...}``: which type each attribute was sent as.

    Python's ``True == 1`` hides a bool sent for an int, and ``"443" != 443`` is easy to miss
    in a dict comparison; this is what a backend sees.
    """
    return {pair.key: str(pair.value.WhichOneof("value")) for pair in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived, with the resource and scope it was sent under."""

    span: Span
    resource: dict[str, Any]
    scope_name: str
    scope_version: str

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def span_id(self) -> bytes:
        return self.span.span_id

    @property
    def parent_span_id(self) -> bytes:
        return self.span.parent_span_id

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes_of(self.span.attributes)

    @property
    def wire_types(self) -> dict[str, str]:
        return wire_types_of(self.span.attributes)


@dataclass(frozen=True)
class ReceivedMetric:
    metric: Metric
    resource: dict[str, Any]
    scope_name: str


# -- storage shared by both transports ---------------------------------------------------------


class _Inbox:
    """The decoded requests, appended by server threads and read by the test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.trace_requests: list[ExportTraceServiceRequest] = []
        self.metric_requests: list[ExportMetricsServiceRequest] = []

    def add_traces(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            self.trace_requests.append(request)

    def add_metrics(self, request: ExportMetricsServiceRequest) -> None:
        with self._lock:
            self.metric_requests.append(request)

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order then start time."""
        with self._lock:
            requests = list(self.trace_requests)
        found = []
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = attributes_of(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            ReceivedSpan(
                                span, resource, scope_spans.scope.name, scope_spans.scope.version
                            )
                        )
        return sorted(found, key=lambda received: received.span.start_time_unix_nano)

    def metrics(self) -> list[ReceivedMetric]:
        with self._lock:
            requests = list(self.metric_requests)
        found = []
        for request in requests:
            for resource_metrics in request.resource_metrics:
                resource = attributes_of(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        found.append(ReceivedMetric(metric, resource, scope_metrics.scope.name))
        return found

    async def wait_for_spans(
        self,
        count: int,
        timeout: float = 5.0,
        where: Callable[[ReceivedSpan], bool] = lambda span: True,
    ) -> list[ReceivedSpan]:
        """The received spans (matching ``where``), once at least ``count`` of them arrived.

        Raises ``TimeoutError`` with what did arrive, after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            spans = [span for span in self.spans() if where(span)]
            if len(spans) >= count:
                return spans
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{len(spans)} of {count} spans arrived in {timeout} s: "
                    f"{[(span.scope_name, span.name) for span in self.spans()]}"
                )
            await asyncio.sleep(_POLL_SECONDS)

    async def wait_for_metric(self, name: str, timeout: float = 5.0) -> list[ReceivedMetric]:
        """Every received copy of the metric ``name``, once one arrived; bounded like
        :meth:`wait_for_spans`."""
        deadline = time.monotonic() + timeout
        while True:
            found = [metric for metric in self.metrics() if metric.metric.name == name]
            if found:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no {name} in {timeout} s: {sorted({m.metric.name for m in self.metrics()})}"
                )
            await asyncio.sleep(_POLL_SECONDS)


# -- OTLP over HTTP/protobuf -------------------------------------------------------------------


class HttpReceiver(_Inbox):
    """An OTLP/HTTP endpoint on 127.0.0.1, served by aiohttp on a thread of its own.

    ``endpoint`` is the base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes it; the exporters
    add ``/v1/traces`` and ``/v1/metrics``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _traces(self, request: web.Request) -> web.Response:
        self.add_traces(ExportTraceServiceRequest.FromString(await request.read()))
        return _protobuf(trace_service_pb2.ExportTraceServiceResponse())

    async def _metrics(self, request: web.Request) -> web.Response:
        self.add_metrics(ExportMetricsServiceRequest.FromString(await request.read()))
        return _protobuf(metrics_service_pb2.ExportMetricsServiceResponse())

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


def _protobuf(message: Any) -> web.Response:
    return web.Response(body=message.SerializeToString(), content_type="application/x-protobuf")


# -- OTLP over gRPC ----------------------------------------------------------------------------


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, inbox: _Inbox) -> None:
        self._inbox = inbox

    def Export(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._inbox.add_traces(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, inbox: _Inbox) -> None:
        self._inbox = inbox

    def Export(
        self, request: ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self._inbox.add_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class GrpcReceiver(_Inbox):
    """An insecure OTLP/gRPC endpoint on 127.0.0.1 (``endpoint`` as the exporters take it)."""

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _MetricsService(self), self._server
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GrpcReceiver:
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # No grace: an exporter still retrying must not hold up the test's teardown.
        self._server.stop(grace=None).wait(10)
