"""What may leave the process: URL redaction and request/response header capture.

``url.full`` keeps every byte of the URL except the secrets: userinfo becomes
``REDACTED:REDACTED`` and the values of signed-URL query keys become ``REDACTED``. Nothing is
re-encoded, so what a user sees in the trace is the URL their code sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final
from urllib.parse import unquote

from multidict import CIMultiDictProxy, MultiDictProxy
from opentelemetry.util.types import AttributeValue

REDACTED: Final = "REDACTED"
REDACTED_HEADER_VALUE: Final = "[REDACTED]"

#: Query keys whose values are replaced by ``REDACTED`` in ``url.full`` (matched case-sensitively,
#: as the semantic conventions ask). Pass ``sensitive_query_params`` to replace the list.
DEFAULT_SENSITIVE_QUERY_PARAMS: Final = (
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
    "X-Goog-Signature",
)

#: Header-name patterns whose captured values are replaced by ``[REDACTED]``, even when every
#: header is captured with ``.*``. Pass ``sensitive_headers`` to replace the list.
DEFAULT_SENSITIVE_HEADERS: Final = (
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
    ".*-authenticate",
)


_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
#: A URL inside free text (an exception's message or traceback): quoted, it runs to its
#: closing quote (a URL may hold the other quote); bare, to the first space or quote.
URL_IN_TEXT = re.compile(
    rf"'(?P<single>{_SCHEME}[^'\n]*)'|\"(?P<double>{_SCHEME}[^\"\n]*)\"|(?P<bare>{_SCHEME}[^\s'\"<>]+)"
)


class UrlRedactor:
    """Turns a request URL string into the value of ``url.full``."""

    __slots__ = ("_keys", "_needles")

    def __init__(self, sensitive_query_params: Iterable[str]) -> None:
        self._keys = frozenset(sensitive_query_params)
        # A URL whose query mentions none of "key=" needs no splitting at all: the common case.
        self._needles = tuple(f"{key}=" for key in self._keys)

    def __call__(self, url: str) -> str:
        # Most URLs have neither userinfo nor a query: two scans, and the URL is returned as is.
        if "@" in url:
            url = _without_userinfo(url)
        if "?" not in url:
            return url
        fragment_start = url.find("#")
        query_end = len(url) if fragment_start < 0 else fragment_start
        query_start = url.find("?", 0, query_end)
        if query_start < 0 or not self._needles:
            return url
        query = url[query_start + 1 : query_end]
        if "%" not in query and not any(needle in query for needle in self._needles):
            return url
        redacted = "&".join(self._redact_pair(pair) for pair in query.split("&"))
        return f"{url[: query_start + 1]}{redacted}{url[query_end:]}"

    def _redact_pair(self, pair: str) -> str:
        key, sep, _ = pair.partition("=")
        # A server decodes "%73ig" to "sig": an encoded key is the same key.
        if sep and (key in self._keys or ("%" in key and unquote(key) in self._keys)):
            return f"{key}={REDACTED}"
        return pair


def _without_userinfo(url: str) -> str:
    scheme_end = url.find("://")
    if scheme_end < 0:
        return url
    authority_start = scheme_end + 3
    authority_end = _authority_end(url, authority_start)
    at = url.rfind("@", authority_start, authority_end)
    if at < 0:
        return url
    return f"{url[:authority_start]}{REDACTED}:{REDACTED}{url[at:]}"


def _authority_end(url: str, start: int) -> int:
    end = len(url)
    for delimiter in "/?#":
        found = url.find(delimiter, start, end)
        if found >= 0:
            end = found
    return end


#: Headers whose value is a URL: captured, they are redacted as ``url.full`` is.
URL_HEADERS = frozenset({"location", "content-location", "referer", "uri"})

_AS_IS, _REDACT, _URL = range(3)


class HeaderCapture:
    """Builds ``http.{request,response}.header.<name>`` attributes for the configured headers.

    Patterns are case-insensitive regular expressions matched against the whole header name.
    The decision for each header name is remembered, so a request pays a dict lookup per header.
    """

    __slots__ = ("_capture", "_sensitive", "_prefix", "_decisions", "_scrub_url")

    _MAX_REMEMBERED = 1024

    def __init__(
        self,
        prefix: str,
        capture: Sequence[str],
        sensitive: Sequence[str],
        scrub_url: Callable[[str], str],
    ) -> None:
        self._prefix = prefix
        self._capture = _compile_any(capture)
        self._sensitive = _compile_any(sensitive)
        #: Applied to the values of headers that carry a URL (Location, Referer, ...), which
        #: would otherwise bring a signed URL's secrets in through the back door.
        self._scrub_url = scrub_url
        # header name (lower case) -> (attribute key, how to record) or None when not captured
        self._decisions: dict[str, tuple[str, int] | None] = {}

    def __bool__(self) -> bool:
        return self._capture is not None

    def attributes(
        self, headers: Mapping[str, str] | CIMultiDictProxy[str] | MultiDictProxy[str]
    ) -> dict[str, AttributeValue]:
        out: dict[str, AttributeValue] = {}
        for name in headers:
            decision = self._decide(name.lower())
            if decision is None or decision[0] in out:
                continue
            key, how = decision
            getall = getattr(headers, "getall", None)
            values = getall(name) if getall is not None else [headers[name]]
            if how == _REDACT:
                out[key] = [REDACTED_HEADER_VALUE] * len(values)
            elif how == _URL:
                out[key] = [self._scrub_url(value) for value in values]
            else:
                out[key] = list(values)
        return out

    def _decide(self, name: str) -> tuple[str, int] | None:
        try:
            return self._decisions[name]
        except KeyError:
            pass
        decision: tuple[str, int] | None = None
        if self._capture is not None and self._capture.fullmatch(name):
            if self._sensitive is not None and self._sensitive.fullmatch(name) is not None:
                how = _REDACT
            else:
                how = _URL if name in URL_HEADERS else _AS_IS
            decision = (f"{self._prefix}{name}", how)
        if len(self._decisions) < self._MAX_REMEMBERED:
            self._decisions[name] = decision
        return decision


def _compile_any(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
