"""HTTPS through a loopback forward proxy (CONNECT tunnel): what can be seen is recorded,
what cannot (the TLS handshake inside the tunnel) is left out, and nothing breaks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from opentelemetry.trace import SpanKind, StatusCode

from .conftest import Server, SessionFactory, Telemetry, attrs, fetch


@contextlib.asynccontextmanager
async def connect_proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """A minimal CONNECT-only forward proxy on 127.0.0.1; logs the CONNECT targets."""
    targets: list[str] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        method, target, _ = head.split("\r\n", 1)[0].split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        targets.append(target)
        _, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", targets
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


async def test_https_through_a_connect_proxy(
    make_session: SessionFactory, https_server: Server, telemetry: Telemetry
) -> None:
    async with connect_proxy() as (proxy, targets):
        session = make_session()
        assert await fetch(session, https_server.url("/ok"), proxy=proxy) == (200, "ok")
        await session.close()
    assert targets == [f"localhost:{https_server.port}"]

    request = telemetry.only_span()
    assert request.kind is SpanKind.CLIENT
    assert request.status.status_code is StatusCode.UNSET
    assert attrs(request)["url.full"] == https_server.url("/ok")
    assert attrs(request)["http.response.status_code"] == 200
    (setup,) = telemetry.children(request)
    assert setup.name == "HTTP connection_setup"
    assert setup.kind is SpanKind.INTERNAL
    # The socket connect goes to the proxy; then the CONNECT exchange opens the tunnel; then
    # TLS with the origin runs through it.
    assert [s.name for s in telemetry.children(setup)] == [
        "socket connect",
        "HTTP CONNECT tunnel",
        "TLS client handshake",
    ]
    connect, tunnel, handshake = telemetry.children(setup)
    assert attrs(connect)["network.peer.address"] == "127.0.0.1"
    assert attrs(connect)["network.peer.port"] == int(proxy.rsplit(":", 1)[1])
    assert attrs(tunnel)["server.address"] == "localhost"
    assert attrs(tunnel)["server.port"] == https_server.port
    assert attrs(handshake)["server.address"] == "localhost"
    assert attrs(handshake)["tls.protocol.name"] == "tls"
    assert attrs(handshake)["tls.protocol.version"] in ("1.2", "1.3")
    assert isinstance(attrs(handshake)["tls.cipher"], str)
    assert attrs(handshake)["tls.resumed"] is False
    for span in (connect, tunnel, handshake):
        assert span.status.status_code is StatusCode.UNSET
    assert connect.end_time <= tunnel.start_time <= tunnel.end_time  # type: ignore[operator]
    assert tunnel.end_time <= handshake.start_time  # type: ignore[operator]
    assert handshake.end_time <= setup.end_time  # type: ignore[operator]
    # network.peer.* of the CLIENT span is the proxy: the socket this attempt talks to.
    assert attrs(request)["network.peer.port"] == int(proxy.rsplit(":", 1)[1])


async def test_a_dead_proxy_is_an_error_like_any_refused_connect(
    make_session: SessionFactory, https_server: Server, telemetry: Telemetry
) -> None:
    async with connect_proxy() as (proxy, _):
        pass  # the proxy is gone: its port refuses connections
    session = make_session()
    try:
        await fetch(session, https_server.url("/ok"), proxy=proxy)
    except Exception as exc:
        seen = type(exc)
    else:
        raise AssertionError("the request through a dead proxy succeeded")
    request = telemetry.only_span()
    assert request.status.status_code is StatusCode.ERROR
    assert attrs(request)["error.type"] == f"{seen.__module__}.{seen.__qualname__}"
    names = [s.name for s in telemetry.spans()]
    assert "TLS client handshake" not in names
    for span in telemetry.spans():
        if span.name in ("HTTP connection_setup", "socket connect"):
            assert span.status.status_code is StatusCode.ERROR
