"""``AioHttpClientInstrumentor``: each session traced once, undone cleanly, beside the official.

The instrumentors are process-wide singletons that wrap ``aiohttp.ClientSession.__init__``; the
``instrumentors`` fixture undoes every ``instrument()`` a test made, last first, and proves that
``__init__`` is the original again.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import (
    AioHttpClientInstrumentor as OfficialInstrumentor,
)
from opentelemetry.instrumentation.aiohttp_client import (
    create_trace_config as official_create_trace_config,
)
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from aiohttp_otel import AioHttpClientInstrumentor, create_trace_config
from aiohttp_otel._coexistence import is_official
from aiohttp_otel._options import parse_options
from aiohttp_otel._trace_config import OtelTraceConfig

from .conftest import Server, Telemetry, Tls, echoed_headers, fetch, requires

SCOPE = "aiohttp_otel"
OFFICIAL_SCOPE = "opentelemetry.instrumentation.aiohttp_client"
COEXISTENCE_WARNING = "official opentelemetry-instrumentation-aiohttp-client is also active"


# -- fixtures and helpers --------------------------------------------------------------------


@dataclass
class Instrumentors:
    """Instrument ours or the official one; everything is undone, last first, at teardown."""

    telemetry: Telemetry
    ours: AioHttpClientInstrumentor = field(default_factory=AioHttpClientInstrumentor)
    official: OfficialInstrumentor = field(default_factory=OfficialInstrumentor)
    active: list[BaseInstrumentor] = field(default_factory=list)

    def _providers(self, options: dict[str, Any]) -> dict[str, Any]:
        options.setdefault("tracer_provider", self.telemetry.tracer_provider)
        options.setdefault("meter_provider", self.telemetry.meter_provider)
        return options

    def instrument_ours(self, **options: Any) -> AioHttpClientInstrumentor:
        self.ours.instrument(**self._providers(options))
        self.active.append(self.ours)
        return self.ours

    def instrument_official(self, **options: Any) -> OfficialInstrumentor:
        self.official.instrument(**self._providers(options))
        self.active.append(self.official)
        return self.official

    def uninstrument_ours(self) -> None:
        self.ours.uninstrument()
        self.active.remove(self.ours)


def _init_is_wrapped() -> bool:
    return hasattr(aiohttp.ClientSession.__dict__["__init__"], "__wrapped__")


@pytest.fixture
def instrumentors(telemetry: Telemetry) -> Iterator[Instrumentors]:
    assert not _init_is_wrapped(), "a previous test left ClientSession.__init__ wrapped"
    original_init = aiohttp.ClientSession.__dict__["__init__"]
    state = Instrumentors(telemetry)
    assert not state.ours._is_instrumented_by_opentelemetry
    assert not state.official._is_instrumented_by_opentelemetry
    try:
        yield state
    finally:
        for instrumentor in reversed(state.active):
            if instrumentor._is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
    assert aiohttp.ClientSession.__dict__["__init__"] is original_init


@pytest.fixture
async def new_session(tls: Tls) -> AsyncIterator[Callable[..., aiohttp.ClientSession]]:
    """Plain ``aiohttp.ClientSession(...)`` calls (as the user writes them), closed at teardown."""
    sessions: list[aiohttp.ClientSession] = []

    def factory(**kwargs: Any) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.client), **kwargs)
        sessions.append(session)
        return session

    yield factory
    for session in sessions:
        await session.close()


def ours_on(session: aiohttp.ClientSession) -> list[OtelTraceConfig]:
    return [tc for tc in session._trace_configs if isinstance(tc, OtelTraceConfig)]


def officials_on(session: aiohttp.ClientSession) -> list[aiohttp.TraceConfig]:
    return [tc for tc in session._trace_configs if is_official(tc)]


def scope_of(span: ReadableSpan) -> str:
    assert span.instrumentation_scope is not None
    return span.instrumentation_scope.name


def our_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aiohttp_otel" and r.levelno == logging.WARNING]


# -- instrument() ----------------------------------------------------------------------------


async def test_instrument_traces_a_new_session_with_one_client_span(
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    server: Server,
    telemetry: Telemetry,
) -> None:
    instrumentors.instrument_ours()
    assert _init_is_wrapped()
    session = new_session()

    assert await fetch(session, server.url("/ok")) == (200, "ok")

    span = telemetry.only_span()
    assert span.kind is SpanKind.CLIENT
    assert span.name == "GET"
    assert scope_of(span) == SCOPE
    assert span.attributes is not None
    assert span.attributes["url.full"] == server.url("/ok")
    assert span.attributes["http.response.status_code"] == 200
    assert len(ours_on(session)) == 1
    assert len(session._trace_configs) == 1


async def test_fifty_sessions_share_one_trace_config_and_one_span_per_request(
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    instrumentors.instrument_ours()
    sessions = [new_session() for _ in range(50)]

    for session in sessions:
        before = len(telemetry.client_spans())
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")
        assert len(telemetry.client_spans()) == before + 1, "one span per request, in every session"
        assert len(session._trace_configs) == 1

    configs = [ours_on(session) for session in sessions]
    assert all(len(found) == 1 for found in configs)
    shared = configs[0][0]
    assert all(found[0] is shared for found in configs)
    # Instruments are made once, with the config, not per session.
    assert all(
        found[0].instrumentation.instruments is shared.instrumentation.instruments
        for found in configs
    )
    points = telemetry.metric_points("http.client.request.duration")
    assert len(points) == 1
    assert points[0].count == 50


async def test_a_session_given_our_trace_config_keeps_only_that_one(
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    instrumentors.instrument_ours()
    manual = create_trace_config(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    session = new_session(trace_configs=[manual])

    assert session._trace_configs == [manual]
    for n in range(1, 4):
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")
        assert len(telemetry.client_spans()) == n


async def test_extra_trace_configs_are_added_to_each_session_once(
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    starts: list[str] = []

    async def on_request_start(_session: Any, _ctx: Any, params: Any) -> None:
        starts.append(params.url.path)

    user_tc = aiohttp.TraceConfig()
    user_tc.on_request_start.append(on_request_start)
    extras = [user_tc]
    instrumentors.instrument_ours(trace_configs=extras)

    plain = [new_session() for _ in range(3)]
    given = new_session(trace_configs=[user_tc])
    for session in [*plain, given]:
        assert session._trace_configs.count(user_tc) == 1
        assert len(ours_on(session)) == 1
        before = len(starts)
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")
        assert len(starts) == before + 1

    assert len(telemetry.client_spans()) == 4
    assert extras == [user_tc]
    assert len(extras) == 1


async def test_uninstrument_stops_tracing_sessions_made_before_and_after(
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    original_init = aiohttp.ClientSession.__dict__["__init__"]
    instrumentors.instrument_ours()
    before = new_session()
    assert await fetch(before, http_server.url("/ok")) == (200, "ok")
    assert len(telemetry.client_spans()) == 1
    traced = telemetry.spans()  # the request span and its phase spans

    instrumentors.uninstrument_ours()
    assert aiohttp.ClientSession.__dict__["__init__"] is original_init
    after = new_session()
    assert ours_on(after) == []

    for session in (before, after):
        assert await fetch(session, http_server.url("/ok")) == (200, "ok")
        status, body = await fetch(session, http_server.url("/headers"))
        assert status == 200
        assert "traceparent" not in {k.lower() for k in echoed_headers(body)}
    # Not one more span of any kind after uninstrument.
    assert telemetry.spans() == traced


# -- instrument_session() / uninstrument_session() --------------------------------------------


async def test_instrument_session_traces_a_session_made_before_instrument(
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    early = new_session()
    instrumentor = instrumentors.instrument_ours()
    assert ours_on(early) == []

    instrumentor.instrument_session(early)
    instrumentor.instrument_session(early)

    assert len(ours_on(early)) == 1
    assert len(early._trace_configs) == 1
    # It is the active instrument() call's config, shared with sessions made from now on.
    assert ours_on(early)[0] is ours_on(new_session())[0]
    assert await fetch(early, http_server.url("/ok")) == (200, "ok")
    span = telemetry.only_span()
    assert span.kind is SpanKind.CLIENT
    assert scope_of(span) == SCOPE


async def test_instrument_session_without_instrument_uses_the_defaults(
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    http_server: Server,
) -> None:
    first, second = new_session(), new_session()

    AioHttpClientInstrumentor().instrument_session(first)
    AioHttpClientInstrumentor().instrument_session(first)
    AioHttpClientInstrumentor().instrument_session(second)

    assert not _init_is_wrapped()
    assert len(ours_on(first)) == 1
    assert len(first._trace_configs) == 1
    config = ours_on(first)[0]
    assert config.instrumentation.options == parse_options()
    assert config.instrumentation.options.tracer_provider is None  # the global one
    assert ours_on(second)[0] is config, "the default config is built once"
    assert await fetch(first, http_server.url("/ok")) == (200, "ok")


async def test_instrument_session_revives_a_session_wired_by_an_earlier_instrument(
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    instrumentors.instrument_ours()
    session = new_session()
    instrumentors.uninstrument_ours()
    instrumentor = instrumentors.instrument_ours()

    instrumentor.instrument_session(session)

    assert await fetch(session, http_server.url("/ok")) == (200, "ok")
    assert len(telemetry.client_spans()) == 1
    assert len(ours_on(session)) == 1


@pytest.mark.parametrize("by_keyword", [False, True], ids=["positional", "client_session="])
async def test_uninstrument_session_stops_tracing_that_session_only(
    by_keyword: bool,
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    instrumentor = instrumentors.instrument_ours()
    stopped, traced = new_session(), new_session()

    if by_keyword:
        # The official instrumentor's parameter name.
        instrumentor.uninstrument_session(client_session=stopped)
    else:
        instrumentor.uninstrument_session(stopped)

    assert ours_on(stopped) == []
    assert await fetch(stopped, http_server.url("/ok")) == (200, "ok")
    assert telemetry.spans() == []
    assert await fetch(traced, http_server.url("/ok")) == (200, "ok")
    assert len(telemetry.client_spans()) == 1


# -- beside the official instrumentation ------------------------------------------------------


@pytest.mark.parametrize("official_first", [True, False], ids=["official-first", "ours-first"])
async def test_with_the_official_instrumentor_each_request_has_one_span(
    official_first: bool,
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    if official_first:
        instrumentors.instrument_official()
        instrumentors.instrument_ours()
    else:
        instrumentors.instrument_ours()
        instrumentors.instrument_official()

    tracer = telemetry.tracer_provider.get_tracer("test")
    sessions = [new_session() for _ in range(3)]
    with tracer.start_as_current_span("caller") as caller:
        for session in sessions:
            assert officials_on(session) == []
            assert len(ours_on(session)) == 1
            for _ in range(2):
                context_before = otel_context.get_current()
                assert await fetch(session, server.url("/ok")) == (200, "ok")
                assert otel_context.get_current() == context_before
                assert trace.get_current_span() is caller

    clients = telemetry.client_spans()
    assert len(clients) == 6
    assert {scope_of(span) for span in clients} == {SCOPE}
    assert all(span.parent is not None for span in clients)
    assert {span.parent.span_id for span in clients if span.parent} == {
        caller.get_span_context().span_id
    }
    warnings = our_warnings(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert COEXISTENCE_WARNING in warnings[0].getMessage()


# The official create_trace_config takes meter_provider= from 0.55b0 on.
@requires("opentelemetry-instrumentation-aiohttp-client", "0.55b0")
@pytest.mark.parametrize("official_first", [True, False], ids=["official-first", "ours-first"])
async def test_a_session_built_with_both_trace_configs_drops_the_official_one(
    official_first: bool,
    new_session: Callable[..., aiohttp.ClientSession],
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    providers = {
        "tracer_provider": telemetry.tracer_provider,
        "meter_provider": telemetry.meter_provider,
    }
    official = official_create_trace_config(**providers)
    ours = create_trace_config(**providers)
    session = new_session(trace_configs=[official, ours] if official_first else [ours, official])
    tracer = telemetry.tracer_provider.get_tracer("test")

    with tracer.start_as_current_span("caller") as caller:
        for n in range(1, 4):
            context_before = otel_context.get_current()
            assert await fetch(session, http_server.url("/ok")) == (200, "ok")
            assert otel_context.get_current() == context_before
            assert trace.get_current_span() is caller
            assert officials_on(session) == []
            assert session._trace_configs == [ours]
            if n == 1:
                # The first request was already under way with both configs.
                first = telemetry.client_spans()
                assert sorted(scope_of(s) for s in first) == sorted([OFFICIAL_SCOPE, SCOPE])
                telemetry.exporter.clear()
            else:
                spans = telemetry.client_spans()
                assert len(spans) == 1, [scope_of(s) for s in spans]
                assert scope_of(spans[0]) == SCOPE
                assert spans[0].parent is not None
                assert spans[0].parent.span_id == caller.get_span_context().span_id
                telemetry.exporter.clear()

    assert len(our_warnings(caplog)) == 1


async def test_uninstrumenting_ours_leaves_the_official_instrumentation_working(
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    http_server: Server,
    telemetry: Telemetry,
) -> None:
    instrumentors.instrument_ours()
    instrumentors.instrument_official()

    instrumentors.uninstrument_ours()

    session = new_session()
    assert ours_on(session) == []
    assert len(officials_on(session)) == 1, "uninstrument() took the official wrapper away"
    assert await fetch(session, http_server.url("/ok")) == (200, "ok")
    assert [scope_of(s) for s in telemetry.client_spans()] == [OFFICIAL_SCOPE]


# -- configuration -----------------------------------------------------------------------------


def test_the_entry_point_loads_the_instrumentor() -> None:
    found = [ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == SCOPE]
    assert len(found) == 1
    assert found[0].load() is AioHttpClientInstrumentor


async def test_an_unknown_keyword_is_reported_once_and_ignored(
    instrumentors: Instrumentors,
    new_session: Callable[..., aiohttp.ClientSession],
    http_server: Server,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")

    instrumentors.instrument_ours(bogus_option=1)

    warnings = our_warnings(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "bogus_option" in message
    for accepted in ("tracer_provider", "request_hook", "trace_configs", "url_filter"):
        assert accepted in message
    session = new_session()
    assert await fetch(session, http_server.url("/ok")) == (200, "ok")
    assert telemetry.only_span().kind is SpanKind.CLIENT


_SCRIPT = """
import asyncio

import aiohttp
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor


class ScopePrinter(SpanProcessor):
    def on_end(self, span):
        print(f"SCOPE {span.instrumentation_scope.name} {span.kind.name}", flush=True)


async def ok(request):
    return web.Response(text="ok")


async def main():
    trace.get_tracer_provider().add_span_processor(ScopePrinter())
    app = web.Application()
    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/ok") as response:
                print("RESULT", response.status, await response.text(), flush=True)
    finally:
        await runner.cleanup()


asyncio.run(main())
"""


def test_opentelemetry_instrument_traces_a_script(tmp_path: Path) -> None:
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    if not launcher.exists():
        pytest.skip("opentelemetry-instrument is not installed")
    if not list(entry_points(group="opentelemetry_distro")):
        pytest.skip("opentelemetry-distro is not installed: nothing would configure the SDK")
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_SERVICE_NAME"] = "aiohttp-otel-test"

    done = subprocess.run(
        [
            str(launcher),
            "--traces_exporter",
            "console",
            "--metrics_exporter",
            "none",
            "--logs_exporter",
            "none",
            sys.executable,
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )

    out, err = done.stdout, done.stderr
    assert done.returncode == 0, err
    assert "RESULT 200 ok" in out
    assert out.count('"kind": "SpanKind.CLIENT"') == 1, out
    assert '"http.request.method": "GET"' in out
    scopes = [line.split()[1:] for line in out.splitlines() if line.startswith("SCOPE ")]
    assert [scope for scope in scopes if scope[1] == "CLIENT"] == [[SCOPE, "CLIENT"]]
    assert "Traceback" not in err, err
    assert "unknown keyword" not in err, err
    assert err.count(COEXISTENCE_WARNING) <= 1
