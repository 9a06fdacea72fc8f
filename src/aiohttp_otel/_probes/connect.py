"""What aiohttp does not signal about connections: where an attempt begins, which connection
it got, and the socket connect and tunnel TLS inside a new one.

* ``BaseConnector.connect`` is called once by every attempt on the wire (each redirect hop,
  each resend, each call a client middleware makes), first thing, with the request and its
  traces in hand: the attempt's beginning, its failure to connect, and the connection it got.
* ``aiohappyeyeballs.start_connection`` (which aiohttp looks up at call time) is the TCP
  connect: its start, its end, and the addresses DNS gave.
* ``TCPConnector._start_tls_connection`` is the TLS handshake with the origin through a proxy's
  CONNECT tunnel (a direct HTTPS connection does its handshake inside ``create_connection``).

The connect wrapper tells the inner wrappers which requests are connecting through a context
variable that it sets and resets itself, within the same task, so the caller's context is left
exactly as it was.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any

import aiohappyeyeballs
from aiohttp.connector import BaseConnector, Connection, TCPConnector

from .protocol import ORIGINAL_ATTR, RequestListener, fault, request_listeners

KIND = "connection probe"

#: The traced requests whose connection attempt is running in this task, in a holder that is
#: emptied when the attempt is over: the event loop keeps a copy of the context for as long as
#: the new connection lives (its reader callback), and it must not keep the requests alive.
_connecting: contextvars.ContextVar[list[tuple[RequestListener, ...]]] = contextvars.ContextVar(
    "aiohttp_otel_connecting"
)


def install_connection_probe() -> None:
    """Wrap the connector's entry, the TCP connect and the tunnel TLS once; later calls are
    no-ops."""
    original = BaseConnector.connect
    if hasattr(original, ORIGINAL_ATTR):
        return

    @functools.wraps(original)
    async def connect(self: BaseConnector, req: Any, *args: Any, **kwargs: Any) -> Connection:
        requests = request_listeners(kwargs.get("traces", args[0] if args else None))
        if not requests:
            return await original(self, req, *args, **kwargs)
        for request in requests:
            try:
                pending = request.attempt_connecting(req)
            except Exception as exc:
                fault(KIND, request, exc)
                continue
            if pending is not None:
                await pending  # a response hook of the attempt this one replaces; never raises
        holder = [requests]
        token = _connecting.set(holder)
        try:
            connection = await original(self, req, *args, **kwargs)
        except BaseException as exc:
            for request in requests:
                try:
                    request.connect_failed(exc)
                except Exception as ours:
                    fault(KIND, request, ours)
            raise
        finally:
            holder.clear()
            _connecting.reset(token)
        for request in requests:
            try:
                request.connection_acquired(connection)
            except Exception as exc:
                fault(KIND, request, exc)
        return connection

    setattr(connect, ORIGINAL_ATTR, original)
    BaseConnector.connect = connect  # type: ignore[method-assign]

    start_connection = aiohappyeyeballs.start_connection

    @functools.wraps(start_connection)
    async def traced_start_connection(addr_infos: Any, *args: Any, **kwargs: Any) -> Any:
        requests = _connecting_requests()
        if not requests:
            return await start_connection(addr_infos, *args, **kwargs)
        for request in requests:
            try:
                request.socket_connect_start(addr_infos)
            except Exception as exc:
                fault(KIND, request, exc)
        try:
            sock = await start_connection(addr_infos, *args, **kwargs)
        except BaseException as exc:
            for request in requests:
                try:
                    request.socket_connect_failed(exc)
                except Exception as ours:
                    fault(KIND, request, ours)
            raise
        for request in requests:
            try:
                request.socket_connect_done(sock)
            except Exception as exc:
                fault(KIND, request, exc)
        return sock

    setattr(traced_start_connection, ORIGINAL_ATTR, start_connection)
    aiohappyeyeballs.start_connection = traced_start_connection

    start_tls = TCPConnector._start_tls_connection

    @functools.wraps(start_tls)
    async def traced_start_tls(self: TCPConnector, *args: Any, **kwargs: Any) -> Any:
        requests = _connecting_requests()
        if not requests:
            return await start_tls(self, *args, **kwargs)
        for request in requests:
            try:
                request.tunnel_tls_start()
            except Exception as exc:
                fault(KIND, request, exc)
        result = await start_tls(self, *args, **kwargs)
        for request in requests:
            try:
                request.tunnel_tls_done(result[0])
            except Exception as exc:
                fault(KIND, request, exc)
        return result

    setattr(traced_start_tls, ORIGINAL_ATTR, start_tls)
    TCPConnector._start_tls_connection = traced_start_tls  # type: ignore[method-assign]


def joined_lookup(session: Any, host: str, port: int | None) -> bool:
    """True when ``on_dns_cache_hit`` means "waiting for another request's lookup"."""
    connector = getattr(session, "connector", None)
    # Newer aiohttp keeps in-flight lookups in _throttle_dns_futures; early 3.10 releases
    # in _throttle_dns_events.
    pending = getattr(connector, "_throttle_dns_futures", None)
    if pending is None:
        pending = getattr(connector, "_throttle_dns_events", None)
    return bool(pending) and (host, port) in pending  # type: ignore[operator]


def _connecting_requests() -> tuple[RequestListener, ...]:
    holder = _connecting.get(None)
    return holder[0] if holder else ()
