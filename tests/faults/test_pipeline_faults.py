"""Faults in the telemetry pipeline, not on the wire: exporters, span processors, user hooks and
meter providers that raise or hang.

Whatever breaks, the request succeeds exactly as it does uninstrumented, every span that
started ends once, and the fault is logged once, not once per request (DESIGN §2, §5). Each
test makes :data:`REQUESTS` requests on fresh connections (``force_close``), so each request
meets the fault in every phase.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from time import perf_counter
from typing import Any

import aiohttp
import pytest
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider, NoOpMeter
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind

import aiohttp_otel._hooks

from ..conftest import Server, Telemetry, attrs
from .conftest import (
    NAME_TREE,
    REQUEST_BOUND_S,
    LoopbackResolver,
    Twins,
    assert_unset,
    assert_well_formed,
    our_warnings,
    outcome,
)

REQUESTS = 20
OK = ("response", 200, b"ok")


def fresh() -> dict[str, Any]:
    """Connector settings under which every request sets up its own connection and looks its
    name up (through the loopback-only resolver)."""
    return {"force_close": True, "use_dns_cache": False, "resolver": LoopbackResolver()}


class Boom(RuntimeError):
    """The injected fault."""


async def requests_succeed(
    traced: aiohttp.ClientSession,
    bare: aiohttp.ClientSession,
    url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """:data:`REQUESTS` requests through the traced session see what the bare one sees (200 and
    the body); whatever the first one logged, the next ones log nothing more."""
    assert await outcome(bare, url) == OK
    assert await outcome(traced, url) == OK
    after_first = [r.getMessage() for r in our_warnings(caplog)]
    for _ in range(REQUESTS - 1):
        assert await outcome(traced, url) == OK
    assert [r.getMessage() for r in our_warnings(caplog)] == after_first, "logged per request"


def assert_logged_once(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """One fault, one warning: not one per request, nor one per place it was felt."""
    records = our_warnings(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    return records[0]


def assert_complete_traces(telemetry: Telemetry) -> None:
    """Every request fully traced on its own new connection, and successful."""
    assert telemetry.tree() == NAME_TREE * REQUESTS
    assert_well_formed(telemetry)
    for request in telemetry.client_spans():
        assert_unset(request)
        assert attrs(request)["http.response.status_code"] == 200


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="aiohttp_otel")
    return caplog


def telemetry_provider(
    telemetry: Telemetry, before: SpanProcessor | None, after: SpanProcessor | None
) -> TracerProvider:
    """A provider with the test's ledger and exporter, between ``before`` and ``after``."""
    provider = TracerProvider()
    if before is not None:
        provider.add_span_processor(before)
    provider.add_span_processor(telemetry.ledger)
    provider.add_span_processor(SimpleSpanProcessor(telemetry.exporter))
    if after is not None:
        provider.add_span_processor(after)
    return provider


# -- exporters -------------------------------------------------------------------------------


class RaisingExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise Boom("the exporter is down")

    def shutdown(self) -> None:
        pass


@pytest.mark.parametrize("processor", [SimpleSpanProcessor, BatchSpanProcessor])
async def test_an_exporter_that_raises(
    twins: Twins,
    telemetry: Telemetry,
    http_server: Server,
    warnings: pytest.LogCaptureFixture,
    processor: type[SimpleSpanProcessor | BatchSpanProcessor],
) -> None:
    """The SDK's processors catch and log exporter errors themselves: the request never sees
    one, and neither do we."""
    exporter = RaisingExporter()
    provider = telemetry_provider(telemetry, None, processor(exporter))
    try:
        traced, bare = twins(connector_kwargs=fresh(), tracer_provider=provider)
        await requests_succeed(traced, bare, http_server.url(), warnings)
        provider.force_flush(2000)
    finally:
        provider.shutdown()
    assert exporter.calls >= 1, "the fault was injected"
    assert_complete_traces(telemetry)
    assert our_warnings(warnings) == []


# -- span processors -------------------------------------------------------------------------


def which_spans(kind: str | None) -> Any:
    """Which spans a faulty processor fails on: all, the CLIENT ones, or the phases."""
    if kind is None:
        return lambda span: True
    wanted = SpanKind.CLIENT if kind == "client" else SpanKind.INTERNAL
    return lambda span: span.kind is wanted


class RaisingProcessor(SpanProcessor):
    def __init__(self, on: str, spans: str | None) -> None:
        self._on = on
        self._fails = which_spans(spans)
        self.raised = 0

    def _maybe_raise(self, span: ReadableSpan) -> None:
        if self._fails(span):
            self.raised += 1
            raise Boom(f"the processor fails in {self._on}")

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self._on == "on_start":
            self._maybe_raise(span)

    def on_end(self, span: ReadableSpan) -> None:
        if self._on == "on_end":
            self._maybe_raise(span)


SPAN_SETS = {"every span": None, "CLIENT spans": "client", "phase spans": "phase"}


@pytest.mark.parametrize("spans", list(SPAN_SETS.values()), ids=list(SPAN_SETS))
async def test_a_processor_that_raises_in_on_start(
    twins: Twins,
    telemetry: Telemetry,
    http_server: Server,
    warnings: pytest.LogCaptureFixture,
    spans: str | None,
) -> None:
    """The SDK lets ``on_start`` errors out of ``start_span``: the span is lost to whoever
    started it (the ledger, placed after the faulty processor, never sees it start). The
    request must go on; what was started must end."""
    faulty = RaisingProcessor("on_start", spans)
    provider = telemetry_provider(telemetry, faulty, None)
    traced, bare = twins(connector_kwargs=fresh(), tracer_provider=provider)
    await requests_succeed(traced, bare, http_server.url(), warnings)
    assert faulty.raised >= REQUESTS, "the fault was injected on every request"

    assert_well_formed(telemetry)
    if spans == "phase":
        # The CLIENT spans started; the first phase of each could not.
        assert len(telemetry.client_spans()) == REQUESTS
    else:
        assert telemetry.spans() == []
    assert_logged_once(warnings)


@pytest.mark.parametrize("spans", list(SPAN_SETS.values()), ids=list(SPAN_SETS))
async def test_a_processor_that_raises_in_on_end(
    twins: Twins,
    telemetry: Telemetry,
    http_server: Server,
    warnings: pytest.LogCaptureFixture,
    spans: str | None,
) -> None:
    """The SDK lets ``on_end`` errors out of ``span.end()``, after the processors ahead of the
    faulty one (the ledger, the exporter) saw the end. Every span must still be ended."""
    faulty = RaisingProcessor("on_end", spans)
    provider = telemetry_provider(telemetry, None, faulty)
    traced, bare = twins(connector_kwargs=fresh(), tracer_provider=provider)
    await requests_succeed(traced, bare, http_server.url(), warnings)
    assert faulty.raised >= REQUESTS, "the fault was injected on every request"

    # The ledger (the telemetry fixture) proves every started span ended once.
    assert_well_formed(telemetry)
    assert len(telemetry.client_spans()) == REQUESTS
    assert_logged_once(warnings)


# -- user hooks ------------------------------------------------------------------------------


@pytest.mark.parametrize("hook", ["request_hook", "response_hook"])
async def test_a_sync_hook_that_raises(
    twins: Twins,
    telemetry: Telemetry,
    http_server: Server,
    warnings: pytest.LogCaptureFixture,
    hook: str,
) -> None:
    calls: list[int] = []

    def raising(span: Any, params: Any) -> None:
        calls.append(1)
        raise Boom(f"the {hook} fails")

    traced, bare = twins(connector_kwargs=fresh(), **{hook: raising})
    await requests_succeed(traced, bare, http_server.url(), warnings)
    assert len(calls) == REQUESTS

    # A hook's fault is the user's: tracing goes on, untouched.
    assert_complete_traces(telemetry)
    assert hook in assert_logged_once(warnings).getMessage()


@pytest.mark.parametrize("hook", ["request_hook", "response_hook"])
async def test_an_async_hook_that_hangs(
    twins: Twins,
    telemetry: Telemetry,
    http_server: Server,
    warnings: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    hook: str,
) -> None:
    monkeypatch.setattr(aiohttp_otel._hooks, "HOOK_TIMEOUT_S", 0.2)
    entered: list[int] = []

    async def hanging(span: Any, params: Any) -> None:
        entered.append(1)
        await asyncio.sleep(60)

    traced, bare = twins(connector_kwargs=fresh(), **{hook: hanging})
    url = http_server.url()
    assert await outcome(bare, url) == OK

    async def timed() -> tuple[Any, float]:
        began = perf_counter()
        seen = await outcome(traced, url)
        return seen, perf_counter() - began

    # Concurrently, so that 20 hangs cost one timeout, not twenty.
    results = await asyncio.wait_for(
        asyncio.gather(*(timed() for _ in range(REQUESTS))), REQUEST_BOUND_S
    )
    assert len(entered) == REQUESTS
    for seen, elapsed in results:
        assert seen == OK
        # The request waited for the hook, up to the bound and no longer.
        assert 0.19 <= elapsed < 2.0, elapsed

    assert len(telemetry.client_spans()) == REQUESTS
    assert_well_formed(telemetry)
    for request in telemetry.client_spans():
        assert_unset(request)
        assert attrs(request)["http.response.status_code"] == 200
    assert "gave up" in assert_logged_once(warnings).getMessage()


# -- meter providers -------------------------------------------------------------------------


class RaisingMeterProvider(MeterProvider):
    """``get_meter`` itself fails."""

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        raise Boom("no meter for you")


class RaisingInstrument:
    """Every measurement fails."""

    def __init__(self, name: str) -> None:
        self.name = name

    def add(self, *args: Any, **kwargs: Any) -> None:
        raise Boom(f"{self.name}.add fails")

    def record(self, *args: Any, **kwargs: Any) -> None:
        raise Boom(f"{self.name}.record fails")

    def set(self, *args: Any, **kwargs: Any) -> None:
        raise Boom(f"{self.name}.set fails")


class RaisingInstrumentsMeter(NoOpMeter):
    """Creates instruments that fail on every measurement."""

    def create_counter(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return RaisingInstrument(name)

    create_up_down_counter = create_counter
    create_histogram = create_counter
    create_gauge = create_counter


class RaisingInstrumentsMeterProvider(MeterProvider):
    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return RaisingInstrumentsMeter(name)


class NoHistogramsMeter(NoOpMeter):
    """Cannot make a histogram at all, with or without bucket advice."""

    def create_histogram(self, name: str, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"no histogram {name} for you")


class NoHistogramsMeterProvider(MeterProvider):
    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return NoHistogramsMeter(name)


METER_FAULTS = {
    "get_meter raises": RaisingMeterProvider,
    "instruments raise": RaisingInstrumentsMeterProvider,
    "create_histogram raises": NoHistogramsMeterProvider,
}


@pytest.mark.parametrize("provider", list(METER_FAULTS.values()), ids=list(METER_FAULTS))
async def test_a_meter_provider_that_raises(
    twins: Twins,
    telemetry: Telemetry,
    http_server: Server,
    warnings: pytest.LogCaptureFixture,
    provider: type[MeterProvider],
) -> None:
    """Broken metrics must cost neither the request nor the traces."""
    # create_trace_config (inside twins) must not raise.
    traced, bare = twins(connector_kwargs=fresh(), meter_provider=provider())
    await requests_succeed(traced, bare, http_server.url(), warnings)

    assert_complete_traces(telemetry)
    assert_logged_once(warnings)
