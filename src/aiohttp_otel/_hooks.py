"""User hooks: sync or async, with or without the request's ``trace_request_ctx``.

How to call a hook is decided once, when the option is parsed: its arity says whether it wants
the ``trace_request_ctx`` the caller passed to the request as a third argument.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from ._diagnostics import TRACED, report_fault

#: How long the request waits for an async hook before going on without it. A hook is awaited
#: inline (aiohttp awaits every trace handler), so one that hangs would hang the request.
HOOK_TIMEOUT_S = 5.0


async def settle(pending: Awaitable[Any], name: str = "hook") -> None:
    """Await what an async hook returned, never longer than :data:`HOOK_TIMEOUT_S`, never
    raising: a fault or a timeout is logged once and the request goes on."""
    try:
        await asyncio.wait_for(pending, HOOK_TIMEOUT_S)
    except asyncio.TimeoutError as exc:
        report_fault(f"{name} (gave up after {HOOK_TIMEOUT_S:g} s)", exc, TRACED)
    except Exception as exc:
        report_fault(name, exc, TRACED)


class Hook:
    """A request or response hook, wrapped so the hot path only calls it."""

    __slots__ = ("name", "fn", "wants_request_ctx")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn
        self.wants_request_ctx = _positional_arity(fn) >= 3

    def __call__(self, span: Any, params: Any, trace_request_ctx: Any) -> Awaitable[Any] | None:
        """Call the hook; return what an async hook gives back, for the caller to await."""
        try:
            result = (
                self.fn(span, params, trace_request_ctx)
                if self.wants_request_ctx
                else self.fn(span, params)
            )
        except Exception as exc:
            # A sync hook's fault is the user's, not ours: tracing goes on.
            report_fault(self.name, exc, TRACED)
            return None
        return result if inspect.isawaitable(result) else None


def _positional_arity(fn: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional)
