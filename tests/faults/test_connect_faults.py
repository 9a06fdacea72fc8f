"""Faults before a connection exists: a refused port, a name that does not resolve, and TLS
that fails (a certificate for another name, an untrusted CA, a server that hangs up mid
handshake).

Names resolve through :class:`LoopbackResolver`, in the traced and the bare session alike: no
DNS query leaves the host.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
import trustme
from aiohttp import web

from ..conftest import Telemetry, Tls, attrs, closed_port, serve
from .conftest import (
    CONNECT,
    DNS,
    GET,
    IP_TREE,
    NAME_TREE,
    SETUP,
    TLS,
    LoopbackResolver,
    Twins,
    assert_error,
    assert_transport_error,
    assert_unset,
    assert_well_formed,
    child,
    connect_spans,
    fqn,
    raw_server,
    reset,
    same_outcome,
    server_context,
)

CONNECTOR_ERROR = "aiohttp.client_exceptions.ClientConnectorError"
# aiohttp 3.10.10 split DNS failures out of ClientConnectorError.
DNS_ERROR_CLASS = getattr(aiohttp, "ClientConnectorDNSError", aiohttp.ClientConnectorError)


async def test_a_refused_port(twins: Twins, telemetry: Telemetry) -> None:
    traced, bare = twins()
    seen = await same_outcome(traced, bare, f"http://127.0.0.1:{closed_port()}/")
    assert seen == ("raised", aiohttp.ClientConnectorError)

    request, setup, connect = connect_spans(telemetry)
    # The connect records the OS error that ended it; its parents, what the caller saw.
    assert_error(connect, "ConnectionRefusedError")
    assert_error(setup, CONNECTOR_ERROR)
    assert_transport_error(request, aiohttp.ClientConnectorError)


async def test_a_name_that_does_not_resolve(twins: Twins, telemetry: Telemetry) -> None:
    resolver = LoopbackResolver()
    traced, bare = twins(connector_kwargs={"resolver": resolver})
    seen = await same_outcome(traced, bare, f"http://nothing.invalid:{closed_port()}/")
    assert seen == ("raised", DNS_ERROR_CLASS)
    assert resolver.asked == ["nothing.invalid", "nothing.invalid"]

    assert telemetry.tree() == [(0, GET), (1, SETUP), (2, DNS)]
    assert_well_formed(telemetry)
    request = telemetry.only_span()
    setup = child(telemetry, request, SETUP)
    dns = child(telemetry, setup, DNS)
    assert attrs(dns)["dns.question.name"] == "nothing.invalid"
    assert "dns.answers" not in attrs(dns)
    assert_error(dns, fqn(DNS_ERROR_CLASS))
    assert_error(setup, fqn(DNS_ERROR_CLASS))
    assert_transport_error(request, DNS_ERROR_CLASS)
    assert attrs(request)["server.address"] == "nothing.invalid"


# -- TLS ---------------------------------------------------------------------------------------

CERT_ERROR = aiohttp.ClientConnectorCertificateError


def tls_tree(host: str) -> list[tuple[int, str]]:
    return (IP_TREE if host == "127.0.0.1" else NAME_TREE) + [(2, TLS)]


def assert_handshake_failed(telemetry: Telemetry, host: str, error: type[BaseException]) -> None:
    """DNS and connect went fine; the handshake failed, and with it the setup and request."""
    assert telemetry.tree() == tls_tree(host)
    assert_well_formed(telemetry)
    request = telemetry.only_span()
    setup = child(telemetry, request, SETUP)
    assert_unset(child(telemetry, setup, CONNECT))
    if host != "127.0.0.1":
        assert_unset(child(telemetry, setup, DNS))
    handshake = child(telemetry, setup, TLS)
    assert attrs(handshake)["server.address"] == host
    assert_error(handshake, fqn(error))
    assert_error(setup, fqn(error))
    assert_transport_error(request, error)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_certificate_for_another_name(
    twins: Twins, telemetry: Telemetry, tls: Tls, host: str
) -> None:
    """The CA is trusted, the certificate is valid, but for ``other.example`` only."""
    traced, bare = twins(connector_kwargs={"resolver": LoopbackResolver()})
    # aiohttp's own server: the handshake fails before any HTTP is spoken.
    async with serve(web.Application(), server_context(tls, "other.example")) as server:
        seen = await same_outcome(traced, bare, server.url("/", host=host))
    assert seen == ("raised", CERT_ERROR)
    assert_handshake_failed(telemetry, host, CERT_ERROR)


async def test_a_certificate_from_an_untrusted_ca(twins: Twins, telemetry: Telemetry) -> None:
    """The client's context is the default one (system CAs): the server's CA is unknown."""
    rogue = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    rogue.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    connector_kwargs = {"resolver": LoopbackResolver(), "ssl": ssl.create_default_context()}
    traced, bare = twins(connector_kwargs=connector_kwargs)
    async with serve(web.Application(), context) as server:
        seen = await same_outcome(traced, bare, server.url("/"))
    assert seen == ("raised", CERT_ERROR)
    assert_handshake_failed(telemetry, "localhost", CERT_ERROR)


@pytest.mark.parametrize("abort", [False, True], ids=["close", "reset"])
async def test_a_server_that_hangs_up_during_the_handshake(
    twins: Twins, telemetry: Telemetry, abort: bool
) -> None:
    """A raw TCP server reads the ClientHello, then closes (FIN) or resets (RST)."""
    hellos: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hellos.append(await reader.read(5))  # a TLS record header: the ClientHello began
        await asyncio.sleep(0.02)
        if abort:
            reset(writer)
        else:
            writer.close()

    traced, bare = twins(connector_kwargs={"resolver": LoopbackResolver()})
    async with raw_server(handle) as port:
        seen = await same_outcome(traced, bare, f"https://localhost:{port}/")
    assert [hello[:1] for hello in hellos] == [b"\x16", b"\x16"]  # handshake records
    assert seen[0] == "raised"
    error = seen[1]
    assert issubclass(error, aiohttp.ClientConnectorError)
    assert_handshake_failed(telemetry, "localhost", error)
