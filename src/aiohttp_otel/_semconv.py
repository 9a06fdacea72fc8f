"""Semantic-convention names and the pure functions that turn request facts into attributes.

Names are plain strings, not imports from ``opentelemetry.semconv``: the incubating modules
move between releases, and these names are fixed by the stable HTTP conventions.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable, Mapping
from typing import Final

from opentelemetry.util.types import AttributeValue

# Stable HTTP and network attributes.
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_REQUEST_METHOD_ORIGINAL: Final = "http.request.method_original"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_REQUEST_RESEND_COUNT: Final = "http.request.resend_count"
URL_FULL: Final = "url.full"
URL_SCHEME: Final = "url.scheme"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
NETWORK_PEER_ADDRESS: Final = "network.peer.address"
NETWORK_PEER_PORT: Final = "network.peer.port"
NETWORK_PROTOCOL_VERSION: Final = "network.protocol.version"
NETWORK_TRANSPORT: Final = "network.transport"
ERROR_TYPE: Final = "error.type"

# The pre-1.21 names that ``OTEL_SEMCONV_STABILITY_OPT_IN=http/dup`` adds beside the stable ones.
OLD_HTTP_METHOD: Final = "http.method"
OLD_HTTP_URL: Final = "http.url"
OLD_HTTP_STATUS_CODE: Final = "http.status_code"
OLD_NET_PEER_NAME: Final = "net.peer.name"
OLD_NET_PEER_PORT: Final = "net.peer.port"
OLD_HTTP_HOST: Final = "http.host"

OTHER_METHOD: Final = "_OTHER"

# RFC 9110 methods, PATCH (RFC 5789) and QUERY, as the HTTP conventions list them.
DEFAULT_KNOWN_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY"}
)


class SemconvMode(enum.Enum):
    """Which generation of HTTP attribute names to emit."""

    STABLE = "http"
    DUP = "http/dup"


class MethodTable:
    """Maps a request method to its span name and method attributes, computed once per method."""

    __slots__ = ("_known", "_cache")

    def __init__(self, known: Iterable[str]) -> None:
        self._known = frozenset(known)
        self._cache: dict[str, tuple[str, str, str | None]] = {}

    def lookup(self, method: str) -> tuple[str, str, str | None]:
        """Return ``(span_name, http.request.method, http.request.method_original or None)``."""
        hit = self._cache.get(method)
        if hit is None:
            if method in self._known:
                hit = (method, method, None)
            else:
                hit = ("HTTP", OTHER_METHOD, method)
            # Methods are few; a flood of invented ones must not grow the table without bound.
            if len(self._cache) < 64:
                self._cache[method] = hit
        return hit


_error_type_cache: dict[type[BaseException], str] = {}


def error_type(exc: BaseException) -> str:
    """The exception's fully qualified class name, the value of ``error.type`` for it."""
    cls = type(exc)
    name = _error_type_cache.get(cls)
    if name is None:
        module = cls.__module__
        name = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
        _error_type_cache[cls] = name
    return name


def is_cancellation(exc: BaseException) -> bool:
    """Intentional cancellation is not an error (semantic conventions v1.41)."""
    return isinstance(exc, (asyncio.CancelledError, GeneratorExit))


_protocol_versions: dict[tuple[int, int], str] = {}


def protocol_version(version: tuple[int, int] | None) -> str | None:
    """``HttpVersion(1, 1)`` -> ``"1.1"``; HTTP/2 and later are written without a minor part."""
    if version is None:
        return None
    text = _protocol_versions.get(version)
    if text is None:
        major, minor = version
        text = f"{major}.{minor}" if major < 2 else str(major)
        _protocol_versions[version] = text
    return text


def status_error_type(status: int) -> str | None:
    """A client span is an error from 400 up; the code itself is the ``error.type``."""
    return str(status) if status >= 400 else None


def peer_attributes(peername: object) -> Mapping[str, AttributeValue] | None:
    """``network.peer.*`` from a socket's ``getpeername()``: a 2-tuple (4 for IPv6), or the
    path of a Unix socket, which has no port."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        return {NETWORK_PEER_ADDRESS: str(peername[0]), NETWORK_PEER_PORT: int(peername[1])}
    if isinstance(peername, str) and peername:
        return {NETWORK_PEER_ADDRESS: peername, NETWORK_TRANSPORT: "unix"}
    return None
