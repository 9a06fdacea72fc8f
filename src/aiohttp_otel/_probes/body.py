"""Watching a response body arrive, since aiohttp 3.x signals neither its chunks nor its end.

``on_response_chunk_received`` fires only from ``read()``, once, with the whole body, and never
for ``resp.content`` reads. What every read path has in common is the stream the connection
feeds, so ``StreamReader.feed_data`` (and ``set_exception``, for a body cut short) are wrapped
once per process. The stream is fed after decompression, so chunks are the bytes the caller
reads. A wrapped call costs one check of an empty dict unless a watched body is arriving.

A watched body ends at whichever comes first:

* network EOF (``StreamReader.on_eof``, public): the whole body has arrived;
* ``release()`` or ``close()`` by the caller (``async with`` calls ``release()``);
* the stream failing (reset, truncated body): an error;
* the connection closed under it (the session closed mid-body) or the response being
  garbage-collected unreleased.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from typing import Any

from aiohttp.client_proto import ResponseHandler
from aiohttp.streams import EmptyStreamReader, StreamReader

from .._semconv import is_cancellation
from .protocol import ORIGINAL_ATTR, BodyListener, fault

#: id(stream) -> the listener of the body it carries; only while the body is being received.
_receiving: dict[int, BodyListener] = {}
#: The same, for the listeners that want each chunk (a recording span): an unsampled one only
#: needs the body's end, and pays nothing per chunk.
_chunks: dict[int, BodyListener] = {}

KIND = "body tracking"


def install_body_probe() -> None:
    """Wrap ``StreamReader.feed_data`` and ``set_exception`` once; later calls are no-ops."""
    feed_data = StreamReader.feed_data
    if hasattr(feed_data, ORIGINAL_ATTR):
        return
    set_exception = StreamReader.set_exception

    def traced_feed_data(self: StreamReader, data: bytes, *args: Any, **kwargs: Any) -> Any:
        result = feed_data(self, data, *args, **kwargs)
        if _chunks and data:
            listener = _chunks.get(id(self))
            if listener is not None:
                try:
                    listener.body_chunk(data)
                except Exception as exc:
                    fault(KIND, listener, exc)
        return result

    def traced_set_exception(self: StreamReader, exc: BaseException, *args: Any, **kw: Any) -> Any:
        result = set_exception(self, exc, *args, **kw)
        if _receiving:
            listener = _receiving.get(id(self))
            if listener is not None:
                try:
                    listener.body_failed(exc)
                except Exception as ours:
                    fault(KIND, listener, ours)
        return result

    setattr(traced_feed_data, ORIGINAL_ATTR, feed_data)
    setattr(traced_set_exception, ORIGINAL_ATTR, set_exception)
    StreamReader.feed_data = traced_feed_data  # type: ignore[method-assign]
    StreamReader.set_exception = traced_set_exception  # type: ignore[method-assign]
    # Closing a connection drops its payload without failing it: the body is cut off.
    for name in ("close", "abort"):  # abort() is newer than aiohttp 3.10.0
        if hasattr(ResponseHandler, name):
            setattr(ResponseHandler, name, _cutting_off(getattr(ResponseHandler, name)))


def _cutting_off(close: Callable[[ResponseHandler], None]) -> Callable[[ResponseHandler], None]:
    def traced_close(self: ResponseHandler) -> None:
        if _receiving:
            payload = getattr(self, "_payload", None)
            listener = None if payload is None else _receiving.get(id(payload))
            if listener is not None:
                try:
                    listener.body_abandoned()
                except Exception as exc:
                    fault(KIND, listener, exc)
        close(self)

    setattr(traced_close, ORIGINAL_ATTR, close)
    return traced_close


def is_complete(response: Any) -> bool:
    """True when nothing more will arrive: the body is in (or there is none), or it is a
    websocket handshake, whose span ends at the handshake."""
    if response.status == 101 or response.connection is None:
        return True
    return bool(response.content.is_eof())


def received_size(response: Any) -> int | None:
    """Body bytes received so far, as on the wire (compressed, when it was)."""
    content = getattr(response, "content", None)
    if content is None:
        return None
    size = getattr(content, "total_raw_bytes", None)  # aiohttp >= 3.13
    if size is None:
        size = getattr(content, "total_bytes", None)
        if size is None and isinstance(content, EmptyStreamReader):
            # aiohttp 3.11.0-3.11.11 gave StreamReader __slots__ and left this one's count
            # unset: an empty stream (HEAD, 204, 304) received nothing.
            return 0
    return size if isinstance(size, int) else None


def watch(listener: BodyListener, response: Any, chunks: bool = True) -> Callable[[], None]:
    """Follow ``response`` until its body is over, and each chunk of it unless ``chunks`` is
    False; return the function that stops watching."""
    content = response.content
    key = id(content)
    _receiving[key] = listener
    if chunks:
        _chunks[key] = listener
    content.on_eof(listener.body_received)
    owner = weakref.ref(response)
    for name in ("release", "close"):
        setattr(response, name, _ending(owner, name, listener))
    finalizer = weakref.finalize(response, _abandoned, listener)

    def unwatch() -> None:
        _receiving.pop(key, None)
        _chunks.pop(key, None)
        finalizer.detach()

    return unwatch


def _abandoned(listener: BodyListener) -> None:
    """The response was collected unreleased (from its finalizer, where a fault would only be
    printed: it is ours to log)."""
    try:
        listener.body_abandoned()
    except Exception as exc:
        fault(KIND, listener, exc)


def buffered(response: Any) -> tuple[bytes, ...]:
    """The body bytes that arrived with the headers, before a watch began (none are read
    yet: the caller has not had the response)."""
    return tuple(getattr(response.content, "_buffer", ()))


def _ending(owner: weakref.ref[Any], name: str, listener: BodyListener) -> Callable[..., Any]:
    """``response.release``/``close`` that end the body first, then do what they always did.

    It holds the response weakly: a strong reference would make a cycle and keep an
    unreleased response (and its span) alive until the cycle collector runs.
    """

    def end_then_call(*args: Any, **kwargs: Any) -> Any:
        # aiohttp's own read() closes the response when reading fails (a total timeout
        # cancels the read without failing the stream): then the body failed, it was not
        # let go of.
        failure = sys.exc_info()[1]
        try:
            if failure is not None and not is_cancellation(failure):
                listener.body_failed(failure)
            else:
                listener.body_released()
        except Exception as exc:
            fault(KIND, listener, exc)
        response = owner()
        if response is None:
            return None
        return getattr(type(response), name)(response, *args, **kwargs)

    return end_then_call
