"""Living beside the official ``opentelemetry-instrumentation-aiohttp-client``.

Two instrumentations on one session would give two CLIENT spans per request, and the official
one's attach/detach of its span as the current context is not balanced when another config
does the same. Where ours is active, the official TraceConfig is taken off the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._diagnostics import warn_once

if TYPE_CHECKING:
    import aiohttp

OFFICIAL_MODULE = "opentelemetry.instrumentation.aiohttp_client"


def is_official(trace_config: aiohttp.TraceConfig) -> bool:
    """True for a TraceConfig built by the official instrumentation."""
    return any(
        getattr(handler, "__module__", None) == OFFICIAL_MODULE
        for handler in trace_config.on_request_start
    )


def without_official(trace_configs: list[aiohttp.TraceConfig]) -> list[aiohttp.TraceConfig]:
    """The list minus the official TraceConfigs, warning once per process if any were there."""
    kept = [tc for tc in trace_configs if not is_official(tc)]
    if len(kept) != len(trace_configs):
        warn_once(
            "coexistence",
            "aiohttp-otel: the official opentelemetry-instrumentation-aiohttp-client is also "
            "active; its TraceConfig was removed from the session so that each request gets "
            "one CLIENT span. Uninstall it or stop enabling it to silence this warning.",
        )
    return kept


def evict_official(session: aiohttp.ClientSession) -> None:
    """Take the official TraceConfig off a session that carries ours too.

    Called at request start for sessions built by hand with both configs; the request in
    flight still runs the official handlers (aiohttp copied the list), later ones do not.
    """
    current = session._trace_configs
    kept = without_official(current)
    if len(kept) != len(current):
        session._trace_configs = kept
