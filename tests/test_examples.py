"""The examples run as users run them, against loopback only.

Each Python example is run in a subprocess: on its own (it starts its own server and prints
what it did), and pointed with the standard ``OTEL_EXPORTER_OTLP_*`` variables at a loopback
OTLP receiver that decodes what arrives. The docker examples cannot run here; their YAML is
parsed and its structure checked: the services, the ports, and that every collector pipeline
names only components that are defined.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .otlp_receiver import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_INTERNAL,
    GrpcReceiver,
    HttpReceiver,
    ReceivedMetric,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCOPE = "aiohttp_otel"
TIMEOUT_S = 60


def example_env(**settings: str) -> dict[str, str]:
    # The runner's own OTEL_* settings must not leak into what is tested.
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update(settings)
    return env


async def run_example(name: str, *args: str, **settings: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / name),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=example_env(**settings),
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out.decode()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    with GrpcReceiver() as receiver:
        yield receiver


def histogram_count(metrics: list[ReceivedMetric], name: str) -> int:
    return sum(
        point.count
        for received in metrics
        if received.metric.name == name and received.scope_name == SCOPE
        for point in received.metric.histogram.data_points
    )


# -- quickstart.py -----------------------------------------------------------------------------


async def test_quickstart_prints_the_client_span() -> None:
    code, out = await run_example("quickstart.py")
    assert code == 0, out
    assert '"kind": "SpanKind.CLIENT"' in out
    assert '"http.request.method": "GET"' in out
    assert '"http.response.status_code": 200' in out


# -- otlp_metrics.py ---------------------------------------------------------------------------


async def test_otlp_metrics_example_delivers_the_metrics(http_receiver: HttpReceiver) -> None:
    code, out = await run_example(
        "otlp_metrics.py",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=f"{http_receiver.endpoint}/v1/metrics",
    )
    assert code == 0, out
    names: dict[str, int] = {}
    for received in http_receiver.metrics():
        if received.scope_name != SCOPE:
            continue
        metric = received.metric
        if metric.HasField("histogram"):
            names[metric.name] = sum(p.count for p in metric.histogram.data_points)
        elif metric.HasField("sum"):
            names[metric.name] = len(metric.sum.data_points)
    assert names, "nothing arrived at the OTLP receiver"
    assert names["http.client.request.duration"] == 4
    assert names["dns.lookup.duration"] == 2
    assert names["http.client.connection.duration"] == 2
    assert {"http.client.open_connections", "http.client.active_requests"} <= set(names)


# -- manual_session.py -------------------------------------------------------------------------


async def test_manual_session_prints_the_span_tree() -> None:
    code, out = await run_example("manual_session.py")
    assert code == 0, out
    assert "GET /download -> 200, 3000 bytes" in out
    assert "GET /missing -> 404" in out
    assert "exporting spans with" not in out, "no OTLP endpoint was set"
    tree = [line for line in out.splitlines() if " ms" in line]
    shape = [(len(line) - len(line.lstrip()), line.split()[0]) for line in tree]
    assert shape == [
        (0, "GET"),
        (2, "HTTP"),
        (4, "DNS"),
        (4, "socket"),
        (0, "GET"),
        (0, "GET"),
        (0, "GET"),
        (0, "GET"),
    ]
    assert "3 body chunk events" in tree[0]
    (setup_id,) = re.findall(r"span ([0-9a-f]{16})", tree[1])
    for reused in tree[4:]:
        assert f"reused the connection of span {setup_id}" in reused
    assert "HTTP 302" in tree[5]
    assert "HTTP 404, error.type=404" in tree[7]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_manual_session_exports_over_otlp(
    protocol: str, http_receiver: HttpReceiver, grpc_receiver: GrpcReceiver
) -> None:
    receiver = http_receiver if protocol == "http/protobuf" else grpc_receiver
    code, out = await run_example(
        "manual_session.py",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_SERVICE_NAME="manual-session-test",
    )
    assert code == 0, out
    exporter_module = "grpc" if protocol == "grpc" else "http"
    assert f"opentelemetry.exporter.otlp.proto.{exporter_module}.trace_exporter" in out

    # The example shut its provider down before exiting: everything is there.
    spans = await receiver.wait_for_spans(8, timeout=1)
    assert len(spans) == 8
    assert {span.scope_name for span in spans} == {SCOPE}
    assert {span.resource["service.name"] for span in spans} == {"manual-session-test"}
    clients = [span for span in spans if span.span.kind == SPAN_KIND_CLIENT]
    (setup,) = (span for span in spans if span.name == "HTTP connection_setup")
    assert setup.parent_span_id == clients[0].span_id
    assert sorted(span.name for span in spans if span.parent_span_id == setup.span_id) == [
        "DNS lookup",
        "socket connect",
    ]
    assert [[link.span_id for link in span.span.links] for span in clients[1:]] == [
        [setup.span_id]
    ] * 4
    assert clients[0].attributes["http.response.header.content-type"] == (
        "application/octet-stream",
    )


# -- sse_stream.py -----------------------------------------------------------------------------


async def test_sse_stream_reads_every_event_and_prints_the_spans_stream_timeline() -> None:
    code, out = await run_example("sse_stream.py", "--events", "5", "--interval", "0.03")
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines[:5]] == [f"event {n}" for n in range(1, 6)]
    assert "GET /events -> 200, 5 events" in lines
    timeline = lines[lines.index("the span's stream timeline:") + 1 :]
    assert re.fullmatch(r"  response headers after \d+\.\d ms", timeline[0])
    chunks = re.fullmatch(r"  (\d+) body chunk events, longest gap (\d+\.\d) ms", timeline[1])
    assert chunks, timeline
    # Five events and the closing one; a loaded machine may read two writes at once.
    assert 2 <= int(chunks.group(1)) <= 6
    assert float(chunks.group(2)) >= 30 * 0.8
    # The streaming attributes, on a span that has them (the lead's core adds them).
    for line in timeline[2:]:
        name, _, value = line.strip().partition(" = ")
        assert name in (
            "aiohttp.response.time_to_first_chunk",
            "aiohttp.response.chunk_gap.max",
            "aiohttp.response.chunk_count",
        )
        assert float(value) >= 0


# -- production.py -----------------------------------------------------------------------------


async def test_production_sends_one_span_per_request_with_phase_events(
    http_receiver: HttpReceiver,
) -> None:
    code, out = await run_example(
        "production.py",
        "--orders",
        "4",
        OTEL_EXPORTER_OTLP_ENDPOINT=http_receiver.endpoint,
        OTEL_TRACES_SAMPLER_ARG="1",
        OTEL_SERVICE_NAME="production-test",
    )
    assert code == 0, out
    assert "processed 4 orders; 4 traced at ratio 1.0" in out

    spans = await http_receiver.wait_for_spans(12, timeout=1)
    orders = [span for span in spans if span.name == "process order"]
    ours = [span for span in spans if span.scope_name == SCOPE]
    assert len(orders) == 4
    assert len(ours) == 8
    assert len(spans) == 12
    assert {span.resource["service.name"] for span in spans} == {"production-test"}
    # phases="events": no phase spans, the phases are events on the CLIENT span.
    assert {span.span.kind for span in ours} == {SPAN_KIND_CLIENT}
    assert SPAN_KIND_INTERNAL in {span.span.kind for span in orders}
    order_ids = {span.span_id for span in orders}
    assert all(span.parent_span_id in order_ids for span in ours)
    assert sorted(span.name for span in ours) == ["GET"] * 4 + ["POST"] * 4
    assert not any("/healthz" in span.attributes["url.full"] for span in ours)
    setups = [
        span
        for span in ours
        if {"connection_setup.start", "connection_setup.end"}
        <= {event.name for event in span.span.events}
    ]
    assert setups, "no request recorded opening a connection"

    # The health check is excluded from the metrics too: two requests per order.
    assert histogram_count(http_receiver.metrics(), "http.client.request.duration") == 8


async def test_production_samples_traces_but_counts_every_request(
    grpc_receiver: GrpcReceiver,
) -> None:
    code, out = await run_example(
        "production.py",
        "--orders",
        "4",
        OTEL_EXPORTER_OTLP_ENDPOINT=grpc_receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_TRACES_SAMPLER_ARG="0",
    )
    assert code == 0, out
    assert "processed 4 orders; 0 traced at ratio 0.0" in out
    metrics = await grpc_receiver.wait_for_metric("http.client.request.duration", timeout=1)
    assert histogram_count(metrics, "http.client.request.duration") == 8
    assert grpc_receiver.spans() == []


async def test_production_prints_spans_when_no_endpoint_is_set() -> None:
    code, out = await run_example("production.py", "--orders", "2", OTEL_TRACES_SAMPLER_ARG="1")
    assert code == 0, out
    lines = [line.split() for line in out.splitlines() if line.startswith("trace ")]
    assert sorted(line[2] for line in lines) == ["GET", "GET", "POST", "POST", "process", "process"]
    assert len({line[1] for line in lines}) == 2, "one trace per order"


async def test_production_flushes_every_span_on_sigterm(http_receiver: HttpReceiver) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "production.py"),
        "--orders",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=example_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=http_receiver.endpoint, OTEL_TRACES_SAMPLER_ARG="1"
        ),
    )
    try:
        assert process.stdout is not None
        seen = b""
        while b"processing orders" not in seen:
            line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT_S)
            assert line, seen.decode()
            seen += line
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    out = (seen + rest).decode()
    assert process.returncode == 0, out
    assert "telemetry flushed" in out
    (processed,) = (int(n) for n in re.findall(r"processed (\d+) orders", out))
    assert processed > 0

    # Well under the batch processor's 5 s delay: only the shutdown flush sent them.
    spans = await http_receiver.wait_for_spans(3 * processed, timeout=1)
    assert len([span for span in spans if span.name == "process order"]) == processed
    assert len([span for span in spans if span.scope_name == SCOPE]) == 2 * processed


# -- auto_instrument/app.py (under the agent: tests/test_auto_instrument.py) -----------------------


async def test_the_auto_instrument_app_runs_on_its_own() -> None:
    code, out = await run_example("auto_instrument/app.py", "--rounds", "2", "--interval", "0.01")
    assert code == 0, out
    one_round = [
        "GET /hello -> 200 'hello world'",
        "GET /hello -> 200 'hello world'",
        "GET /moved -> 200 'hello redirected'",
        "GET /missing -> 404 '404: Not Found'",
    ]
    assert out.splitlines() == one_round * 2


def test_otel_env_configures_otlp_over_http() -> None:
    settings = dict(
        line.split("=", 1)
        for line in (EXAMPLES / "auto_instrument" / "otel.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert settings["OTEL_TRACES_EXPORTER"] == "otlp"
    assert settings["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert settings["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4318"
    assert settings["OTEL_PYTHON_AIOHTTP_CLIENT_PHASES"] in {"spans", "events", "off"}
    assert all(key.startswith("OTEL_") for key in settings)


# -- the docker examples -----------------------------------------------------------------------


def load_yaml(relative: str) -> Any:
    return yaml.safe_load((EXAMPLES / relative).read_text())


def published_ports(service: dict[str, Any]) -> set[int]:
    """The container ports a compose service publishes (``[host_ip:]host:container``)."""
    return {int(str(entry).rsplit(":", 1)[-1].split("/")[0]) for entry in service["ports"]}


def assert_app_service(compose: dict[str, Any], compose_dir: str, sends_to: str) -> None:
    app = compose["services"]["app"]
    build = app["build"]
    root = (EXAMPLES / compose_dir / build["context"]).resolve()
    assert (root / build["dockerfile"]).is_file()
    assert (root / "pyproject.toml").is_file(), "the build context is the repository's root"
    env = app["environment"]
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    host, port = env["OTEL_EXPORTER_OTLP_ENDPOINT"].removeprefix("http://").split(":")
    assert host == sends_to
    assert host in compose["services"], "the app sends to a service of the same compose file"
    assert int(port) == {"grpc": 4317, "http/protobuf": 4318}[env["OTEL_EXPORTER_OTLP_PROTOCOL"]]
    assert app["command"][:3] == ["opentelemetry-instrument", "python", "app.py"]
    assert sends_to in app["depends_on"]


def test_the_jaeger_compose_file_runs_jaeger_with_otlp_and_the_app() -> None:
    compose = load_yaml("jaeger/docker-compose.yml")
    assert set(compose["services"]) == {"jaeger", "app"}
    jaeger = compose["services"]["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert {4317, 4318, 16686} <= published_ports(jaeger)
    assert_app_service(compose, "jaeger", sends_to="jaeger")


def test_the_collector_compose_file_wires_app_collector_and_jaeger() -> None:
    compose = load_yaml("collector/docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"collector", "jaeger", "app"}
    collector = services["collector"]
    assert collector["image"].startswith("otel/opentelemetry-collector")
    assert {4317, 4318} <= published_ports(collector)
    assert 16686 in published_ports(services["jaeger"])
    mounted = {
        source: target
        for source, target, *_ in (volume.split(":") for volume in collector["volumes"])
    }
    config_target = mounted["./otel-collector-config.yaml"]
    assert (EXAMPLES / "collector" / "otel-collector-config.yaml").is_file()
    assert collector["command"] == [f"--config={config_target}"]
    assert_app_service(compose, "collector", sends_to="collector")


def test_the_collector_config_pipelines_use_only_defined_components() -> None:
    config = load_yaml("collector/otel-collector-config.yaml")
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics"}
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in pipelines.items():
        assert pipeline["receivers"], name
        assert pipeline["exporters"], name
        for kind, components in used.items():
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{name} uses undefined {kind[:-1]} {component}"
                components.add(component)
    for kind, components in used.items():
        assert set(config[kind]) == components, f"{kind} defined but unused"
    assert "otlp/jaeger" in pipelines["traces"]["exporters"]
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert "debug" in pipelines["traces"]["exporters"]
    assert "debug" in pipelines["metrics"]["exporters"]
    # The memory limiter only protects the collector when it runs first.
    for pipeline in pipelines.values():
        assert pipeline["processors"][0] == "memory_limiter"
