"""Body content capture (opt-in): the first bytes of a body, as sent or as received.

Per the semantic conventions, ``http.request.body.content`` / ``http.response.body.content``
hold a ``str`` when the Content-Type is textual, decoded with its declared charset and cut on a
character boundary, and ``bytes`` otherwise. Capture only copies what passes by: it never
reads a body, so what the user reads is unchanged, and it keeps no more than the cap.

One :class:`BodyContent` per direction is built with the trace config; each recorded attempt
that has a body gets its own :class:`BodyCapture`, fed chunk by chunk:

```python
content = BodyContent("response", cap=4096, body_filter=None)
capture = content.capture()
capture.feed(b'{"id": 1}')
content.value(capture, {"Content-Type": "application/json"})  # '{"id": 1}'
```
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ._diagnostics import TRACED, report_fault, warn_once

Direction = Literal["request", "response"]
Content = str | bytes

#: ``(direction, content, headers) -> content | None``: redact, replace or drop (None) a body.
BodyFilter = Callable[[str, Content, Any], "Content | None"]

REQUEST_BODY_CONTENT = "http.request.body.content"
RESPONSE_BODY_CONTENT = "http.response.body.content"
#: The cap that ``capture_request_body=True`` / ``capture_response_body=True`` mean.
DEFAULT_BODY_CAP = 4096

#: Textual types that are not ``text/*`` and carry no ``+json``/``+xml``/``+yaml`` suffix.
TEXTUAL_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/x-www-form-urlencoded",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/graphql",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/sql",
    }
)
_TEXTUAL_SUFFIXES = ("+json", "+xml", "+yaml")


class BodyCapture:
    """The first ``cap`` bytes of one body. ``feed`` is O(1) once the cap is reached."""

    __slots__ = ("_data", "_room")

    def __init__(self, cap: int) -> None:
        self._data = bytearray()
        self._room = cap

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Record a chunk as it was sent or received; beyond the cap, nothing is kept."""
        room = self._room
        if room <= 0:
            return
        size = len(data)
        if size <= room:
            self._data += data
            self._room = room - size
        else:
            self._data += data[:room]  # copies only what fits
            self._room = 0

    @property
    def size(self) -> int:
        """Bytes kept so far (at most the cap)."""
        return len(self._data)


class BodyContent:
    """One direction's capture settings, built once: makes captures and turns them into the
    attribute value, the user's ``body_filter`` applied."""

    __slots__ = ("attribute", "body_filter", "cap", "direction")

    def __init__(self, direction: Direction, cap: int, body_filter: BodyFilter | None) -> None:
        self.direction = direction
        self.cap = cap
        self.body_filter = body_filter
        #: The attribute the value goes to.
        self.attribute = REQUEST_BODY_CONTENT if direction == "request" else RESPONSE_BODY_CONTENT

    def capture(self) -> BodyCapture:
        """A new, empty capture for one body."""
        return BodyCapture(self.cap)

    def value(self, capture: BodyCapture, headers: Mapping[str, str] | None) -> Content | None:
        """The attribute value for what ``capture`` holds, or ``None`` for no attribute (no
        body byte, or the filter dropped it or failed). ``headers`` are the body's own (the
        request's or the response's): their Content-Type decides ``str`` or ``bytes``, and the
        filter sees them. Never raises."""
        raw = capture._data
        if not raw:
            return None
        content = as_content(bytes(raw), _content_type(headers))
        body_filter = self.body_filter
        if body_filter is None:
            return content
        return self._filtered(body_filter, content, headers)

    def _filtered(
        self, body_filter: BodyFilter, content: Content, headers: Mapping[str, str] | None
    ) -> Content | None:
        try:
            result = body_filter(self.direction, content, headers)
        except Exception as exc:
            report_fault(
                "body_filter",
                exc,
                f"the {self.direction} body content is not recorded; {TRACED}",
            )
            return None
        if result is None or isinstance(result, (str, bytes)):
            return result
        if isinstance(result, (bytearray, memoryview)):
            return bytes(result)
        warn_once(
            f"body_filter:{type(result).__qualname__}",
            "aiohttp-otel: body_filter returned %s; it must return str, bytes or None. The "
            "body content is not recorded.",
            type(result).__qualname__,
        )
        return None


def as_content(raw: bytes, content_type: str | None) -> Content:
    """``raw`` as the semantic conventions want it: ``str`` for a textual Content-Type, decoded
    with its charset (UTF-8 when none is declared or it is unknown), without a trailing
    partial character; ``bytes`` otherwise.

    ```python
    as_content("né".encode()[:2], "text/plain")  # 'n': the cut 'é' is left out
    as_content(b"\\x89PNG", "image/png")  # b'\\x89PNG'
    ```
    """
    codec = _textual_codec(content_type or "")
    if codec is None:
        return raw
    # final=False: an incomplete trailing sequence (the cap cut a character) is left out;
    # invalid bytes elsewhere become U+FFFD rather than failing.
    return codecs.getincrementaldecoder(codec)(errors="replace").decode(raw, final=False)


@functools.lru_cache(maxsize=128)
def _textual_codec(content_type: str) -> str | None:
    """The codec to decode a body of this Content-Type with, or ``None`` when it is binary."""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if not (
        media.startswith("text/") or media in TEXTUAL_TYPES or media.endswith(_TEXTUAL_SUFFIXES)
    ):
        return None
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            return _codec(val.strip().strip("\"'"))
    return "utf-8"


def _codec(charset: str) -> str:
    try:
        info = codecs.lookup(charset)
    except LookupError:
        return "utf-8"
    # base64, rot13, zlib... are codecs too, but not text encodings.
    return info.name if getattr(info, "_is_text_encoding", True) else "utf-8"


def _content_type(headers: Mapping[str, str] | None) -> str | None:
    if headers is None:
        return None
    # A CIMultiDict matches either spelling; a plain dict may hold the lowercase one.
    return headers.get("Content-Type") or headers.get("content-type")
