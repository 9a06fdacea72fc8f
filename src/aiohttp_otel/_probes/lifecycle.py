"""A connection's pool life, which aiohttp does not signal: put back in the pool, or closed.

* ``BaseConnector._release`` puts a connection back in the pool, or closes it;
* ``ResponseHandler.connection_lost`` is every close, however it came about (released with
  ``should_close``, keep-alive expiry, the server hanging up, the session closing).

Both are wrapped once per process, and call the listener kept on the protocol object.
"""

from __future__ import annotations

from typing import Any

from aiohttp.client_proto import ResponseHandler
from aiohttp.connector import BaseConnector

from .protocol import ORIGINAL_ATTR, fault, listener_of

KIND = "connection metrics"


def install_lifecycle_probe() -> None:
    """Wrap ``BaseConnector._release`` and ``ResponseHandler.connection_lost`` once."""
    release = BaseConnector._release
    if hasattr(release, ORIGINAL_ATTR):
        return
    connection_lost = ResponseHandler.connection_lost

    def traced_release(self: BaseConnector, key: Any, protocol: Any, *args: Any, **kw: Any) -> Any:
        result = release(self, key, protocol, *args, **kw)
        listener = listener_of(protocol)
        if listener is not None:
            try:
                listener.released(protocol.is_connected())
            except Exception as exc:
                fault(KIND, listener, exc)
        return result

    def traced_connection_lost(self: ResponseHandler, exc: BaseException | None) -> None:
        connection_lost(self, exc)
        listener = listener_of(self)
        if listener is not None:
            try:
                listener.closed()
            except Exception as exc:
                fault(KIND, listener, exc)

    setattr(traced_release, ORIGINAL_ATTR, release)
    setattr(traced_connection_lost, ORIGINAL_ATTR, connection_lost)
    BaseConnector._release = traced_release  # type: ignore[method-assign]
    ResponseHandler.connection_lost = traced_connection_lost  # type: ignore[method-assign]
