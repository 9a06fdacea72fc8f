"""``opentelemetry-instrument`` on the example app, configured only by environment variables.

This is how most users switch the package on: the agent finds our ``opentelemetry_instrumentor``
entry point, the distro sets up the SDK and the OTLP exporters from ``OTEL_*`` variables, and the
app holds no tracing code. The spans and metrics are received and decoded by a loopback OTLP
receiver, as a collector would get them.

The official ``opentelemetry-instrumentation-aiohttp-client`` is installed in the test
environment too, so the agent enables both instrumentations. Ours takes the official TraceConfig
off every session and says so once on stderr: each request still has one CLIENT span, and
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=aiohttp-client`` (its entry point's name) keeps the
official one from loading.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from aiohttp_otel import __version__

from .conftest import Server, clean_env, readme_quick_start, run_python
from .otlp_receiver import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_INTERNAL,
    GrpcReceiver,
    HttpReceiver,
    ReceivedSpan,
)

APP = Path(__file__).resolve().parent.parent / "examples" / "auto_instrument" / "app.py"
# The console script pip put beside this interpreter: the agent exactly as users start it.
AGENT = Path(sys.executable).parent / "opentelemetry-instrument"
SCOPE = "aiohttp_otel"
OFFICIAL_SCOPE = "opentelemetry.instrumentation.aiohttp_client"
COEXISTENCE_WARNING = "official opentelemetry-instrumentation-aiohttp-client is also active"
# BaseInstrumentor's warning for a second instrument() call.
ALREADY_INSTRUMENTED = "Attempting to instrument while already instrumented"
SERVICE = "auto-instrument-test"
# What app.py requests in one round; the redirect is two hops on the wire.
HOPS = ["/hello", "/hello", "/moved", "/hello?name=redirected", "/missing"]
STATUS_CODE_UNSET, STATUS_CODE_ERROR = 0, 2


def official_installed() -> bool:
    try:
        distribution("opentelemetry-instrumentation-aiohttp-client")
    except PackageNotFoundError:
        return False
    return True


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    with GrpcReceiver() as receiver:
        yield receiver


def agent_env(endpoint: str, protocol: str, **extra: str) -> dict[str, str]:
    # The runner's own OTEL_* settings must not leak into what is tested.
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(
        OTEL_SERVICE_NAME=SERVICE,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        # Loopback must never go through a proxy the machine may have configured.
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


async def run_agent(env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    assert AGENT.exists(), f"no opentelemetry-instrument beside {sys.executable}"
    process = await asyncio.create_subprocess_exec(
        str(AGENT),
        sys.executable,
        str(APP),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=APP.parent,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def by_id(spans: list[ReceivedSpan]) -> dict[bytes, ReceivedSpan]:
    return {span.span_id: span for span in spans}


def children_of(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[str]:
    return sorted(span.name for span in spans if span.parent_span_id == parent.span_id)


def assert_one_round_of_client_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """The five hops of app.py's round, each one CLIENT span with its status; returned in
    start order."""
    clients = [span for span in spans if span.span.kind == SPAN_KIND_CLIENT]
    assert [span.name for span in clients] == ["GET"] * len(HOPS)
    paths = [span.attributes["url.full"].split("/", 3)[3] for span in clients]
    assert ["/" + path for path in paths] == HOPS
    statuses = [span.attributes["http.response.status_code"] for span in clients]
    assert statuses == [200, 200, 302, 200, 404]
    assert [span.span.status.code for span in clients] == [STATUS_CODE_UNSET] * 4 + [
        STATUS_CODE_ERROR
    ]
    assert clients[4].attributes["error.type"] == "404"
    assert "http.request.resend_count" not in clients[2].attributes
    assert clients[3].attributes["http.request.resend_count"] == 1
    for span in clients:
        assert span.wire_types["http.response.status_code"] == "int_value"
        assert span.wire_types["server.port"] == "int_value"
        assert span.wire_types["url.full"] == "string_value"
        assert span.parent_span_id == b"", "the app has no span of its own: hops are roots"
    return clients


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_the_agent_exports_our_spans_and_metrics_over_otlp(
    protocol: str, http_receiver: HttpReceiver, grpc_receiver: GrpcReceiver
) -> None:
    receiver = http_receiver if protocol == "http/protobuf" else grpc_receiver
    code, out, err = await run_agent(agent_env(receiver.endpoint, protocol))

    assert code == 0, err
    assert "GET /moved -> 200 'hello redirected'" in out
    assert "Traceback" not in err, err
    # The SDK exports at exit, before the process ends: everything is there already.
    spans = await receiver.wait_for_spans(1, timeout=1)
    assert {span.scope_name for span in spans} == {SCOPE}, "only our instrumentation traced"
    assert {span.scope_version for span in spans} == {__version__}
    assert {span.resource["service.name"] for span in spans} == {SERVICE}
    assert "telemetry.auto.version" in spans[0].resource  # set by the agent

    clients = assert_one_round_of_client_spans(spans)
    assert len({span.span.trace_id for span in clients}) == len(clients)
    first = clients[0]
    assert children_of(spans, first) == ["HTTP connection_setup"]
    (setup,) = (span for span in spans if span.parent_span_id == first.span_id)
    assert setup.span.kind == SPAN_KIND_INTERNAL
    assert children_of(spans, setup) == ["DNS lookup", "socket connect"]
    assert len(spans) == len(HOPS) + 3
    # Every later hop reused the first connection, and points at the setup that opened it.
    for reused in clients[1:]:
        assert [link.span_id for link in reused.span.links] == [setup.span_id]
        assert [link.trace_id for link in reused.span.links] == [setup.span.trace_id]

    durations = await receiver.wait_for_metric("http.client.request.duration", timeout=1)
    assert {metric.scope_name for metric in durations} == {SCOPE}
    assert sum(
        point.count for metric in durations for point in metric.metric.histogram.data_points
    ) == len(HOPS)
    assert OFFICIAL_SCOPE not in {metric.scope_name for metric in receiver.metrics()}

    if official_installed():
        assert err.count(COEXISTENCE_WARNING) == 1, err
    assert ALREADY_INSTRUMENTED not in err


async def test_the_agent_passes_our_environment_options_through(
    http_receiver: HttpReceiver,
) -> None:
    env = agent_env(
        http_receiver.endpoint,
        "http/protobuf",
        OTEL_PYTHON_AIOHTTP_CLIENT_PHASES="events",
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE="content-type",
    )
    code, _, err = await run_agent(env)

    assert code == 0, err
    spans = await http_receiver.wait_for_spans(len(HOPS), timeout=1)
    # One span per hop: the phases are events on it, not child spans.
    assert all(span.span.kind == SPAN_KIND_CLIENT for span in spans), [s.name for s in spans]
    clients = assert_one_round_of_client_spans(spans)
    events = [event.name for event in clients[0].span.events]
    for phase in ("connection_setup", "dns_lookup", "socket_connect"):
        assert events.index(f"{phase}.start") < events.index(f"{phase}.end")
    assert "connection_setup.start" not in [event.name for event in clients[1].span.events]
    assert clients[0].attributes["http.response.header.content-type"] == (
        "text/plain; charset=utf-8",
    )


@pytest.mark.skipif(not official_installed(), reason="the official instrumentation is absent")
async def test_disabling_the_official_instrumentation_silences_the_warning(
    http_receiver: HttpReceiver,
) -> None:
    env = agent_env(
        http_receiver.endpoint,
        "http/protobuf",
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="aiohttp-client",
        OTEL_METRICS_EXPORTER="none",
    )
    code, _, err = await run_agent(env)

    assert code == 0, err
    assert COEXISTENCE_WARNING not in err
    spans = await http_receiver.wait_for_spans(len(HOPS), timeout=1)
    assert {span.scope_name for span in spans} == {SCOPE}
    assert_one_round_of_client_spans(spans)
    assert http_receiver.metric_requests == []


async def test_the_readme_quick_start_under_the_agent_exports_the_counts(
    http_server: Server,
) -> None:
    """The README's quick start (``instrument()`` plus ``create_trace_config()``) run as it
    says, under ``opentelemetry-instrument --metrics_exporter console``."""
    assert AGENT.exists(), f"no opentelemetry-instrument beside {sys.executable}"
    launcher = (
        str(AGENT),
        "--traces_exporter",
        "console",
        "--metrics_exporter",
        "console",
        "--logs_exporter",
        "none",
    )
    code, out, err = await run_python(
        readme_quick_start(http_server.url("/ok")),
        launcher=launcher,
        env=clean_env(OTEL_SERVICE_NAME=SERVICE),
    )

    assert code == 0, err
    assert "200 ok" in out
    assert "Traceback" not in err, err
    # The program's own instrument() call is skipped under the agent.
    assert ALREADY_INSTRUMENTED not in err, err
    for name in (
        "http.client.request.duration",
        "http.client.active_requests",
        "http.client.open_connections",
    ):
        assert f'"name": "{name}"' in out, name
