"""A fault in what a probe of aiohttp's internals calls never reaches the request.

Each probe runs a step of ours inside aiohttp's own code (the connector, the response head,
the body stream, the pool). Here each step in turn is made to raise: the request must still
succeed with its whole body, the fault must be logged once naming the probe, every span that
started must end (the ``telemetry`` fixture checks it), and the active-request count must go
back to zero.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from aiohttp_otel._attempt import Attempt
from aiohttp_otel._connection_record import ConnectionRecord
from aiohttp_otel._probes import body as _body
from aiohttp_otel._probes.protocol import BodyListener
from aiohttp_otel._request import RequestTrace

from .conftest import SessionFactory, Telemetry, serve

BODY = b"chunk-" * 2000


async def _chunked(request: web.Request) -> web.StreamResponse:
    """Four chunks, a short pause before each: the body is still arriving when the head is
    read, so the client watches it chunk by chunk."""
    response = web.StreamResponse()
    await response.prepare(request)
    for start in range(0, len(BODY), 3000):
        await asyncio.sleep(0.005)
        await response.write(BODY[start : start + 3000])
    await response.write_eof()
    return response


@pytest.fixture
async def chunked_server() -> AsyncIterator[Any]:
    app = web.Application()
    app.router.add_route("*", "/chunked", _chunked)
    async with serve(app) as server:
        yield server


#: (class, step, the probe named in the warning, how the request makes that step run)
STEPS = [
    (RequestTrace, "attempt_connecting", "connection probe", "GET"),
    (Attempt, "connection_acquired", "connection probe", "GET"),
    (Attempt, "socket_connect_start", "connection probe", "GET"),
    (Attempt, "socket_connect_done", "connection probe", "GET"),
    (Attempt, "response_started", "exchange probe", "GET"),
    (Attempt, "body_written", "exchange probe", "POST"),
    (Attempt, "body_chunk", "body tracking", "GET"),
    (Attempt, "body_released", "body tracking", "GET"),
    (ConnectionRecord, "released", "connection metrics", "GET"),
]


@pytest.mark.parametrize(
    ("owner", "step", "kind", "method"), STEPS, ids=[f"{c.__name__}.{s}" for c, s, *_ in STEPS]
)
async def test_a_fault_in_a_probe_step_leaves_the_request_whole(
    make_session: SessionFactory,
    chunked_server: Any,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    owner: type,
    step: str,
    kind: str,
    method: str,
) -> None:
    calls = []

    def broken(self: Any, *args: Any) -> None:
        calls.append(step)
        raise RuntimeError(f"{step} is broken")

    monkeypatch.setattr(owner, step, broken)
    session = make_session()
    with caplog.at_level(logging.WARNING, logger="aiohttp_otel"):
        for _ in range(2):  # the second request reuses the connection the first one opened
            kwargs = {"data": b"x" * 100} if method == "POST" else {}
            async with session.request(method, chunked_server.url("/chunked"), **kwargs) as r:
                assert r.status == 200
                assert await r.read() == BODY
        # A connection's last release happens when it closes with the session.
        await session.close()

    assert calls, f"{step} never ran: the test does not reach the probe it means to break"
    reports = [r for r in caplog.records if f"{kind} failed" in r.getMessage()]
    assert len(reports) == 1, [r.getMessage() for r in caplog.records]
    assert reports[0].exc_info is not None
    assert f"{step} is broken" in str(reports[0].exc_info[1])
    [active] = telemetry.metric_points("http.client.active_requests")
    assert active.value == 0


def test_a_fault_told_from_a_finalizer_is_logged_and_the_listener_abandoned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A response collected unreleased tells its end from its finalizer, where an exception
    would only be printed to stderr. (aiohttp's own ``__del__`` closes the connection first,
    which the close probe tells; the finalizer is the backstop for a response without one.)"""

    class Broken(BodyListener):
        abandoned = 0

        def body_abandoned(self) -> None:
            raise RuntimeError("body_abandoned is broken")

        def abandon(self) -> None:
            self.abandoned += 1

    listener = Broken()
    with caplog.at_level(logging.WARNING, logger="aiohttp_otel"):
        _body._abandoned(listener)
    reports = [r for r in caplog.records if "body tracking failed" in r.getMessage()]
    assert len(reports) == 1
    assert listener.abandoned == 1
