"""How the instrumentation reports its own trouble: once per process per kind, never raising.

An instrumentation lives inside other people's services. A fault that repeats on every request
must not flood their logs, so each distinct kind of fault is logged once, with its traceback.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("aiohttp_otel")

_reported: set[str] = set()
_lock = threading.Lock()


def _first_time(kind: str) -> bool:
    with _lock:
        if kind in _reported:
            return False
        _reported.add(kind)
        return True


def warn_once(kind: str, message: str, *args: object) -> None:
    """Log a warning the first time ``kind`` is seen in this process."""
    if _first_time(kind):
        logger.warning(message, *args)


UNTRACED = "the request goes on untraced from here"
TRACED = "the request and its tracing go on"


def report_fault(kind: str, exc: BaseException, consequence: str = UNTRACED) -> None:
    """Log an instrumentation fault (ours, a hook's, the SDK's) once per kind, with its traceback.

    The kind includes the exception type, so a hook that fails in two different ways is
    reported twice, not a thousand times.
    """
    if _first_time(f"{kind}:{type(exc).__qualname__}"):
        logger.warning(
            "aiohttp-otel: %s failed; %s. This is logged once per process.",
            kind,
            consequence,
            exc_info=(type(exc), exc, exc.__traceback__),
        )


def reset_for_tests() -> None:
    """Forget what has been reported, so a test can observe the first report again."""
    with _lock:
        _reported.clear()
