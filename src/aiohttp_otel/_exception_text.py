"""The exception event's text: ``exception.type``, a redacted message and a redacted stack.

Formatting a traceback (reading source lines, computing caret positions) and scrubbing it of
URLs costs far more than the rest of a failed request. In an outage the same failure repeats
thousands of times a second from the same code, so the formatted, scrubbed stack is cached by
where it happened: the code location of every frame of the exception and of its
``__cause__``/``__context__`` chain, with each exception's type. The second identical failure
costs a walk of its frames and a dict lookup.

What varies per failure never enters the cache. The cached part is only the frame lines
("Traceback ...", ``File "...", line N, in f``, the source line and its carets), which are the
same for a code location whatever the request. The ``Type: message`` line of each exception
in the chain (and its notes) is built and scrubbed for every failure, then joined in. A URL
never spans that join (the redaction patterns stop at a line end), so scrubbing the parts
apart gives what scrubbing the whole would.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Hashable
from types import TracebackType

from . import _semconv as sc

#: Distinct failure sites remembered per trace config; each entry holds one formatted stack.
DEFAULT_CACHE_SIZE = 256

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"
_HEADER = "Traceback (most recent call last):\n"

# Their last line is not "Type: str(exc)": the traceback module adds suggestions, carets or
# the offending source line. Those are formatted by the traceback module itself.
_SPECIAL = (SyntaxError, NameError, AttributeError, ImportError)

#: One exception of a chain: the separator before it (empty for the first) and the exception.
_Link = tuple[str, BaseException]


class ExceptionText:
    """Describes failures for the exception event, with the stack text cached by location.

    One per trace config: the cached stack was scrubbed with that config's redaction rules.

    ```python
    texts = ExceptionText()
    exc_type, message, stacktrace = texts.describe(exc, redact)
    ```
    """

    __slots__ = ("_cache", "_size", "_lock")

    def __init__(self, size: int = DEFAULT_CACHE_SIZE) -> None:
        self._size = max(0, size)
        # Insertion order is recency: a hit is moved to the end, the oldest evicted first.
        self._cache: dict[Hashable, tuple[str, ...]] = {}
        # Event loops in several threads may share one trace config.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    def describe(self, exc: BaseException, scrub: Callable[[str], str]) -> tuple[str, str, str]:
        """``(exception.type, exception.message, exception.stacktrace)``, the last two scrubbed.

        ``scrub`` redacts free text (URLs in it); it is applied to the message of every
        failure, and to the frame lines once per distinct failure site.
        """
        message = scrub(_safe_str(exc))
        chain = _chain(exc)
        if chain is None:  # an exception group: its nested layout is not cached
            stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            return sc.error_type(exc), message, scrub(stack)
        key = tuple((sep, type(e), _locations(e.__traceback__)) for sep, e in chain)
        frames = self._lookup(key)
        if frames is None:
            frames = tuple(scrub(_frame_text(sep, e.__traceback__)) for sep, e in chain)
            self._store(key, frames)
        parts: list[str] = []
        last = len(chain) - 1
        for i, (frame_text, (_sep, e)) in enumerate(zip(frames, chain, strict=True)):
            parts.append(frame_text)
            if i == last and _plain(e):
                parts.append(_last_line(e, message))  # the message, scrubbed once
            else:
                parts.append(scrub(_final_line(e)))
        return sc.error_type(exc), message, "".join(parts)

    def _lookup(self, key: Hashable) -> tuple[str, ...] | None:
        with self._lock:
            hit = self._cache.pop(key, None)
            if hit is not None:
                self._cache[key] = hit
            return hit

    def _store(self, key: Hashable, frames: tuple[str, ...]) -> None:
        if not self._size:
            return
        with self._lock:
            cache = self._cache
            cache[key] = frames
            while len(cache) > self._size:
                del cache[next(iter(cache))]


def _chain(exc: BaseException) -> list[_Link] | None:
    """The exceptions ``traceback.format_exception`` prints, oldest first, each with the
    separator printed before it; ``None`` when one is an exception group."""
    chain: list[_Link] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None:
        if _GROUP is not None and isinstance(current, _GROUP):
            return None
        seen.add(id(current))
        cause, context = current.__cause__, current.__context__
        # The same choice as the traceback module's, a cycle ending the chain.
        if cause is not None and id(cause) not in seen:
            older, sep = cause, _CAUSE
        elif context is not None and not current.__suppress_context__ and id(context) not in seen:
            older, sep = context, _CONTEXT
        else:
            older, sep = None, ""
        # The separator is printed between the older exception and this one.
        chain.append((sep, current))
        current = older
    chain.reverse()
    return chain


try:
    _GROUP: type[BaseException] | None = BaseExceptionGroup  # type: ignore[name-defined,unused-ignore]
except NameError:  # Python 3.10: no exception groups
    _GROUP = None


def _locations(tb: TracebackType | None) -> tuple[tuple[str, int, str, int], ...]:
    """Where each frame was: what its formatted lines and carets depend on, and nothing else.

    The instruction offset stands for the line number: within one function it tells the line
    and the columns, and ``tb_lineno`` is computed from the line table at each read (it would
    be half the cost of a cache hit).
    """
    out: list[tuple[str, int, str, int]] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        out.append((code.co_filename, code.co_firstlineno, code.co_name, tb.tb_lasti))
        tb = tb.tb_next
    return tuple(out)


def _frame_text(sep: str, tb: TracebackType | None) -> str:
    if tb is None:
        return sep
    return f"{sep}{_HEADER}{''.join(traceback.format_tb(tb))}"


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    if module in ("__main__", "builtins") or not isinstance(module, str):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


def _plain(exc: BaseException) -> bool:
    return not isinstance(exc, _SPECIAL) and getattr(exc, "__notes__", None) is None


def _final_line(exc: BaseException) -> str:
    """The ``Type: message`` line(s) that end one exception's part of the stack."""
    if not _plain(exc):
        return "".join(traceback.format_exception_only(type(exc), exc))
    text = _safe_str(exc)
    name = _type_name(exc)
    return f"{name}: {text}\n" if text else f"{name}\n"


def _last_line(exc: BaseException, scrubbed_message: str) -> str:
    """The final line of a plain exception, from its message already scrubbed."""
    name = _type_name(exc)
    return f"{name}: {scrubbed_message}\n" if scrubbed_message else f"{name}\n"
