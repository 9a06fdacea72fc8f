"""The exchange of one attempt on the wire: its request body written, its response head read.

aiohttp's ``on_request_end`` and ``on_request_redirect`` fire once per hop of the redirect loop,
around the whole client-middleware chain: a middleware's own attempts (a digest challenge, a
retry after a 503) and aiohttp's hidden resend after a failed connection are never signalled.
Every attempt does go through ``ClientResponse.start``, so it is wrapped once per process: its
return is the attempt's response head, its exception the attempt's failure, each timed where it
happens. ``ClientRequest.write_bytes`` (the task that writes the body) marks the body's end.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp.client_reqrep import ClientRequest, ClientResponse

from .protocol import ORIGINAL_ATTR, fault, request_listeners

KIND = "exchange probe"


def install_exchange_probe() -> None:
    """Wrap ``ClientResponse.start`` and ``ClientRequest.write_bytes`` once."""
    start = ClientResponse.start
    if hasattr(start, ORIGINAL_ATTR):
        return

    @functools.wraps(start)
    async def traced_start(self: ClientResponse, *args: Any, **kwargs: Any) -> Any:
        requests = request_listeners(self._traces)
        if not requests:
            return await start(self, *args, **kwargs)
        try:
            result = await start(self, *args, **kwargs)
        except BaseException as exc:
            for request in requests:
                try:
                    request.response_failed(exc)
                except Exception as ours:
                    fault(KIND, request, ours)
            raise
        for request in requests:
            try:
                request.response_started(self)
            except Exception as exc:
                fault(KIND, request, exc)
        return result

    setattr(traced_start, ORIGINAL_ATTR, start)
    ClientResponse.start = traced_start  # type: ignore[method-assign]

    write_bytes = ClientRequest.write_bytes

    @functools.wraps(write_bytes)
    async def traced_write_bytes(self: ClientRequest, *args: Any, **kwargs: Any) -> None:
        await write_bytes(self, *args, **kwargs)
        requests = request_listeners(self._traces)
        if requests and not _write_failed(args[1] if len(args) > 1 else kwargs.get("conn")):
            for request in requests:
                try:
                    request.body_written()
                except Exception as exc:
                    fault(KIND, request, exc)

    setattr(traced_write_bytes, ORIGINAL_ATTR, write_bytes)
    ClientRequest.write_bytes = traced_write_bytes  # type: ignore[method-assign]


def _write_failed(connection: Any) -> bool:
    """aiohttp reports a failed body write on the connection's protocol, not by raising."""
    protocol = getattr(connection, "protocol", None)
    return protocol is None or protocol.exception() is not None
