"""What a collector receives: real requests, traced and sent by the real OTLP exporters.

Each test runs once per transport (OTLP HTTP/protobuf and gRPC) and span processor
(batching, and one export per span). The exporters send to a loopback receiver
(``tests/otlp_receiver.py``), which decodes the protobuf as a collector would; the assertions
read what arrived: the span tree by parent span id, the OTLP span kinds, the link from a reused
connection, attribute values with their wire types, status codes, events and the
instrumentation scope.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)

from aiohttp_otel import __version__, create_trace_config

from .conftest import Server, Tls, make_app, serve
from .otlp_receiver import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_INTERNAL,
    GrpcReceiver,
    HttpReceiver,
    ReceivedSpan,
    attributes_of,
    wire_types_of,
)

SCOPE = "aiohttp_otel"
SERVICE = "otlp-export-test"
SETUP, DNS, CONNECT, TLS = (
    "HTTP connection_setup",
    "DNS lookup",
    "socket connect",
    "TLS client handshake",
)
CHUNKS, CHUNK_SIZE = 3, 1000
POSTED = b"p" * 100
WAIT_S = 5.0
# After a flush everything is in: the receiver stores a request before it answers it.
ARRIVED_S = 1.0


# -- the pipeline under test -------------------------------------------------------------------


@dataclass
class Pipeline:
    receiver: HttpReceiver | GrpcReceiver
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def flush(self) -> None:
        # Synchronous, on the test's loop: the receiver answers from its own threads.
        assert self.tracer_provider.force_flush(int(WAIT_S * 1000))
        assert self.meter_provider.force_flush(int(WAIT_S * 1000))


@pytest.fixture(
    params=[("http", "batch"), ("grpc", "batch"), ("http", "simple"), ("grpc", "simple")],
    ids=lambda param: "-".join(param),
)
def pipeline(request: pytest.FixtureRequest) -> Iterator[Pipeline]:
    transport, processing = request.param
    receiver: HttpReceiver | GrpcReceiver
    span_exporter: SpanExporter
    metric_exporter: MetricExporter
    with HttpReceiver() if transport == "http" else GrpcReceiver() as receiver:
        if transport == "http":
            span_exporter = HttpSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")
            metric_exporter = HttpMetricExporter(endpoint=f"{receiver.endpoint}/v1/metrics")
        else:
            span_exporter = GrpcSpanExporter(endpoint=receiver.endpoint, insecure=True)
            metric_exporter = GrpcMetricExporter(endpoint=receiver.endpoint, insecure=True)
        processor: SpanProcessor = (
            BatchSpanProcessor(span_exporter)
            if processing == "batch"
            else SimpleSpanProcessor(span_exporter)
        )
        resource = Resource.create({"service.name": SERVICE})
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(processor)
        # A long interval: only the explicit flush exports, so the counts are exact.
        reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=600_000)
        meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
        try:
            yield Pipeline(receiver, tracer_provider, meter_provider)
        finally:
            # Before the receiver stops: shutting down stops the exporters' threads and channels.
            tracer_provider.shutdown()
            meter_provider.shutdown()


# -- the server --------------------------------------------------------------------------------


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for i in range(CHUNKS):
        if i:
            await asyncio.sleep(0.02)  # each write arrives as its own chunk
        await response.write(b"s" * CHUNK_SIZE)
    await response.write_eof()
    return response


@pytest.fixture
async def https_server(tls: Tls) -> AsyncIterator[Server]:
    app = make_app()
    app.router.add_get("/stream", _stream)
    async with serve(app, tls.server) as server:
        yield server


async def make_requests(pipeline: Pipeline, server: Server, tls: Tls, **options: object) -> bytes:
    """A new HTTPS connection (streamed body), then on the same connection: a plain GET, a
    redirect (two hops), a POST with a body and a 500. Returns the parent span's id."""
    trace_config = create_trace_config(
        tracer_provider=pipeline.tracer_provider,
        meter_provider=pipeline.meter_provider,
        **options,  # type: ignore[arg-type]
    )
    tracer = pipeline.tracer_provider.get_tracer("tests")
    with tracer.start_as_current_span("scenario") as parent:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls.client), trace_configs=[trace_config]
        ) as session:
            async with session.get(server.url("/stream")) as response:
                body = b"".join([c async for c in response.content.iter_chunked(CHUNK_SIZE)])
                assert body == b"s" * CHUNKS * CHUNK_SIZE
            for method, path, data, status in (
                ("GET", "/ok", None, 200),
                ("GET", "/redirect/1", None, 200),
                ("POST", "/ok", POSTED, 200),
                ("GET", "/status/500", None, 500),
            ):
                async with session.request(method, server.url(path), data=data) as response:
                    assert response.status == status
                    await response.read()
    return parent.get_span_context().span_id.to_bytes(8, "big")


def ours(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [span for span in spans if span.scope_name == SCOPE]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [span for span in spans if span.parent_span_id == parent.span_id]


def names(spans: list[ReceivedSpan]) -> list[str]:
    return sorted(span.name for span in spans)


def within(child: ReceivedSpan, parent: ReceivedSpan) -> bool:
    return (
        parent.span.start_time_unix_nano
        <= child.span.start_time_unix_nano
        <= child.span.end_time_unix_nano
        <= parent.span.end_time_unix_nano
    )


# -- traces ------------------------------------------------------------------------------------


async def test_the_span_tree_arrives_with_kinds_scope_and_resource(
    pipeline: Pipeline, https_server: Server, tls: Tls
) -> None:
    parent_id = await make_requests(pipeline, https_server, tls)
    pipeline.flush()

    # The parent, six CLIENT spans (the redirect is two) and the four phase spans.
    received = await pipeline.receiver.wait_for_spans(11, timeout=ARRIVED_S)
    spans = ours(received)
    assert len(received) == 11, [(s.scope_name, s.name) for s in received]
    assert len(spans) == 10
    assert {span.scope_version for span in spans} == {__version__}
    assert {span.resource["service.name"] for span in spans} == {SERVICE}
    assert len({span.span.trace_id for span in received}) == 1

    clients = [span for span in spans if span.parent_span_id == parent_id]
    assert [span.name for span in clients] == ["GET", "GET", "GET", "GET", "POST", "GET"]
    assert {span.span.kind for span in clients} == {SPAN_KIND_CLIENT}
    first = clients[0]
    (setup,) = children(spans, first)
    assert setup.name == SETUP
    assert names(children(spans, setup)) == sorted([DNS, CONNECT, TLS])
    phases = [setup, *children(spans, setup)]
    assert {span.span.kind for span in phases} == {SPAN_KIND_INTERNAL}
    assert all(within(span, setup) for span in phases[1:])
    assert within(setup, first)
    for client in clients[1:]:
        assert children(spans, client) == [], f"{client.name} reused the connection"


async def test_a_reused_connection_links_to_the_setup_span_that_opened_it(
    pipeline: Pipeline, https_server: Server, tls: Tls
) -> None:
    await make_requests(pipeline, https_server, tls)
    pipeline.flush()

    spans = ours(await pipeline.receiver.wait_for_spans(11, timeout=ARRIVED_S))
    clients = [span for span in spans if span.span.kind == SPAN_KIND_CLIENT]
    (setup,) = (span for span in spans if span.name == SETUP)
    assert list(clients[0].span.links) == []
    for reused in clients[1:]:
        (link,) = reused.span.links
        assert link.span_id == setup.span_id
        assert link.trace_id == setup.span.trace_id
        assert attributes_of(link.attributes) == {"aiohttp.connection.reused": True}
        assert wire_types_of(link.attributes) == {"aiohttp.connection.reused": "bool_value"}


async def test_attributes_arrive_with_their_types_and_statuses_with_their_codes(
    pipeline: Pipeline, https_server: Server, tls: Tls
) -> None:
    await make_requests(pipeline, https_server, tls)
    pipeline.flush()

    spans = ours(await pipeline.receiver.wait_for_spans(11, timeout=ARRIVED_S))
    clients = [span for span in spans if span.span.kind == SPAN_KIND_CLIENT]
    first, plain, hop, target, post, failed = clients
    port = https_server.port

    attributes = first.attributes
    assert attributes["url.full"] == https_server.url("/stream")
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.scheme"] == "https"
    assert attributes["server.address"] == "localhost"
    assert attributes["server.port"] == port
    assert attributes["network.peer.address"] == "127.0.0.1"
    assert attributes["network.peer.port"] == port
    assert attributes["http.response.status_code"] == 200
    assert attributes["http.response.body.size"] == CHUNKS * CHUNK_SIZE
    assert {
        key: first.wire_types[key]
        for key in (
            "url.full",
            "http.request.method",
            "server.address",
            "server.port",
            "network.peer.port",
            "http.response.status_code",
            "http.response.body.size",
        )
    } == {
        "url.full": "string_value",
        "http.request.method": "string_value",
        "server.address": "string_value",
        "server.port": "int_value",
        "network.peer.port": "int_value",
        "http.response.status_code": "int_value",
        "http.response.body.size": "int_value",
    }

    (handshake,) = (span for span in spans if span.name == TLS)
    assert handshake.attributes["tls.protocol.name"] == "tls"
    assert handshake.wire_types["tls.resumed"] == "bool_value"
    (dns,) = (span for span in spans if span.name == DNS)
    assert dns.attributes["dns.question.name"] == "localhost"
    assert "127.0.0.1" in dns.attributes["dns.answers"]
    assert dns.wire_types["dns.answers"] == "array_value"

    assert hop.attributes["http.response.status_code"] == 302
    assert "http.request.resend_count" not in hop.attributes
    assert target.attributes["url.full"] == https_server.url("/ok")
    assert target.attributes["http.request.resend_count"] == 1
    assert target.wire_types["http.request.resend_count"] == "int_value"
    assert post.attributes["http.request.body.size"] == len(POSTED)

    unset = Status.StatusCode.STATUS_CODE_UNSET
    assert [span.span.status.code for span in (first, plain, hop, target, post)] == [unset] * 5
    assert failed.span.status.code == Status.StatusCode.STATUS_CODE_ERROR
    assert failed.attributes["error.type"] == "500"
    assert failed.attributes["http.response.status_code"] == 500


async def test_body_chunks_arrive_as_events(
    pipeline: Pipeline, https_server: Server, tls: Tls
) -> None:
    await make_requests(pipeline, https_server, tls)
    pipeline.flush()

    spans = ours(await pipeline.receiver.wait_for_spans(11, timeout=ARRIVED_S))
    clients = [span for span in spans if span.span.kind == SPAN_KIND_CLIENT]
    first, post = clients[0], clients[4]

    received = [e for e in first.span.events if e.name == "aiohttp.response.chunk_received"]
    sizes = [attributes_of(event.attributes)["aiohttp.chunk.size"] for event in received]
    offsets = [attributes_of(event.attributes)["aiohttp.chunk.offset"] for event in received]
    assert sum(sizes) == CHUNKS * CHUNK_SIZE
    assert len(received) >= 2, "the streamed body arrived in one piece"
    assert offsets == [sum(sizes[:i]) for i in range(len(sizes))]
    assert {wire_types_of(event.attributes)["aiohttp.chunk.size"] for event in received} == {
        "int_value"
    }
    times = [event.time_unix_nano for event in first.span.events]
    assert times == sorted(times)
    assert [e.name for e in first.span.events[:2]] == [
        "aiohttp.request.headers_sent",
        "aiohttp.response.headers",
    ]
    assert all(first.span.start_time_unix_nano <= t <= first.span.end_time_unix_nano for t in times)

    sent = [e for e in post.span.events if e.name == "aiohttp.request.chunk_sent"]
    assert [attributes_of(event.attributes) for event in sent] == [
        {"aiohttp.chunk.size": len(POSTED), "aiohttp.chunk.offset": 0}
    ]


async def test_phases_as_events_arrive_on_the_one_client_span(
    pipeline: Pipeline, https_server: Server, tls: Tls
) -> None:
    await make_requests(pipeline, https_server, tls, phases="events")
    pipeline.flush()

    spans = ours(await pipeline.receiver.wait_for_spans(7, timeout=ARRIVED_S))
    assert {span.span.kind for span in spans} == {SPAN_KIND_CLIENT}
    events = {event.name: event for event in spans[0].span.events}
    for phase in ("connection_setup", "dns_lookup", "socket_connect", "tls_handshake"):
        start, end = events[f"{phase}.start"], events[f"{phase}.end"]
        assert start.time_unix_nano <= end.time_unix_nano
    handshake = events["tls_handshake.end"]
    assert attributes_of(handshake.attributes)["server.address"] == "localhost"
    assert wire_types_of(handshake.attributes)["tls.resumed"] == "bool_value"
    connect = events["socket_connect.end"]
    assert attributes_of(connect.attributes)["network.peer.port"] == https_server.port
    assert wire_types_of(connect.attributes)["network.peer.port"] == "int_value"
    assert not any(name.endswith(".start") for name in (e.name for e in spans[1].span.events))


# -- metrics -----------------------------------------------------------------------------------


async def test_the_request_duration_metric_arrives_with_one_point_per_hop(
    pipeline: Pipeline, https_server: Server, tls: Tls
) -> None:
    await make_requests(pipeline, https_server, tls)
    pipeline.flush()

    (received,) = await pipeline.receiver.wait_for_metric(
        "http.client.request.duration", timeout=ARRIVED_S
    )
    assert received.scope_name == SCOPE
    assert received.resource["service.name"] == SERVICE
    assert received.metric.unit == "s"
    points = received.metric.histogram.data_points
    by_status: dict[int, int] = {}
    for point in points:
        status = attributes_of(point.attributes)["http.response.status_code"]
        by_status[status] = by_status.get(status, 0) + point.count
    assert by_status == {200: 4, 302: 1, 500: 1}
    for point in points:
        types = wire_types_of(point.attributes)
        assert types["server.port"] == "int_value"
        assert types["http.response.status_code"] == "int_value"
        assert types["http.request.method"] == "string_value"
