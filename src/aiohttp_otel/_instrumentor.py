"""``AioHttpClientInstrumentor``: puts our TraceConfig on every ``ClientSession``.

aiohttp has no global trace-config hook (its maintainers declined one), so ``__init__`` is
wrapped. The wiring runs after the original ``__init__``, whatever other wrappers exist, and
leaves each session with exactly one of our TraceConfigs and none of the official package's.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Sequence
from typing import Any

import aiohttp
import wrapt
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import unwrap

from ._coexistence import without_official
from ._diagnostics import warn_once
from ._instrumentation import Instrumentation
from ._options import parse_options
from ._trace_config import OtelTraceConfig, create_trace_config

_OPTION_KEYWORDS = frozenset(inspect.signature(create_trace_config).parameters)
_INSTRUMENT_KEYWORDS = _OPTION_KEYWORDS | {"trace_configs"}


class AioHttpClientInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Trace every `aiohttp.ClientSession` created after `instrument()`.

    An OpenTelemetry `BaseInstrumentor`: a process-wide singleton, so a second `instrument()`
    call logs a warning and does nothing until `uninstrument()` is called. The
    `opentelemetry-instrument` agent calls `instrument()` with no keywords through the
    `aiohttp_otel` entry point; then only the environment variables configure it.

    - `instrument(**options)` takes every keyword of
      [`create_trace_config`][aiohttp_otel.create_trace_config], plus `trace_configs`: more
      `aiohttp.TraceConfig` objects to add to every session after ours. Each session it wires
      carries exactly one aiohttp-otel TraceConfig (the one passed to the session, if any) and
      none of the official instrumentation's. An unknown keyword is logged once and ignored.
    - `uninstrument()`: sessions created from then on are not traced, and the sessions that
      were wired stop being traced too.

    ```python
    from aiohttp_otel import AioHttpClientInstrumentor

    AioHttpClientInstrumentor().instrument(
        captured_response_headers=["content-type"],
        excluded_urls=["/healthz$"],
    )
    ```
    """

    _trace_config: OtelTraceConfig | None = None
    _extra_trace_configs: tuple[aiohttp.TraceConfig, ...] = ()
    _default_trace_config: OtelTraceConfig | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("aiohttp >= 3.10, < 4",)

    def _instrument(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - _INSTRUMENT_KEYWORDS)
        if unknown:
            warn_once(
                f"instrument:{unknown}",
                "aiohttp-otel: instrument() ignores unknown keyword(s) %s; accepted: %s.",
                ", ".join(unknown),
                ", ".join(sorted(_INSTRUMENT_KEYWORDS)),
            )
        extras = kwargs.get("trace_configs") or ()
        options = parse_options(**{k: v for k, v in kwargs.items() if k in _OPTION_KEYWORDS})
        trace_config = OtelTraceConfig(Instrumentation(options))
        # The official package marks its configs so; tools that look for it find ours too.
        trace_config._is_instrumented_by_opentelemetry = True  # type: ignore[attr-defined]
        self._trace_config = trace_config
        self._extra_trace_configs = tuple(extras)
        wrapt.wrap_function_wrapper(aiohttp.ClientSession, "__init__", self._wrapped_init)

    def _uninstrument(self, **kwargs: Any) -> None:
        # unwrap() would take off the outermost wrapper, whoever's it is (the official
        # instrumentor's, if it was instrumented after us): splice out ours only.
        outer: Any = None
        fn = aiohttp.ClientSession.__dict__["__init__"]
        while hasattr(fn, "__wrapped__"):
            if getattr(fn, "_self_wrapper", None) == self._wrapped_init:
                if outer is None:
                    unwrap(aiohttp.ClientSession, "__init__")
                else:
                    outer.__wrapped__ = fn.__wrapped__
                break
            outer, fn = fn, fn.__wrapped__
        if self._trace_config is not None:
            self._trace_config.instrumentation.enabled = False
        self._trace_config = None
        self._extra_trace_configs = ()

    def _wrapped_init(
        self,
        wrapped: Any,
        session: aiohttp.ClientSession,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        wrapped(*args, **kwargs)
        trace_config = self._trace_config
        if trace_config is not None:
            _wire(session, trace_config, self._extra_trace_configs)

    def instrument_session(self, session: aiohttp.ClientSession) -> None:
        """Add our TraceConfig to a session that already exists. Idempotent.

        For sessions created before `instrument()`, which are not traced otherwise. Uses the
        options of the active `instrument()` call or, without one, the defaults and the
        environment variables (read once, on the first such call).

        ```python
        session = aiohttp.ClientSession()  # created before instrument()
        AioHttpClientInstrumentor().instrument_session(session)
        ```

        :param session: the session to trace.
        """
        trace_config = self._trace_config
        if trace_config is None:
            trace_config = AioHttpClientInstrumentor._default_trace_config
            if trace_config is None:
                trace_config = OtelTraceConfig(Instrumentation(parse_options()))
                AioHttpClientInstrumentor._default_trace_config = trace_config
        _wire(session, trace_config, ())

    @staticmethod
    def uninstrument_session(client_session: aiohttp.ClientSession) -> None:
        """Stop tracing one session: our TraceConfigs are taken off it.

        Other sessions stay traced. A static method with the official instrumentor's
        parameter name, so either call works:

        ```python
        AioHttpClientInstrumentor.uninstrument_session(session)
        AioHttpClientInstrumentor.uninstrument_session(client_session=session)
        ```

        :param client_session: the session to stop tracing.
        """
        client_session._trace_configs = [
            tc for tc in client_session._trace_configs if not isinstance(tc, OtelTraceConfig)
        ]


def _wire(
    session: aiohttp.ClientSession,
    ours: OtelTraceConfig,
    extras: Sequence[aiohttp.TraceConfig],
) -> None:
    # Drop ours left disabled by an earlier uninstrument(): they would block the live one.
    configs = [
        tc
        for tc in without_official(list(session._trace_configs))
        if not (isinstance(tc, OtelTraceConfig) and not tc.instrumentation.enabled)
    ]
    if not any(isinstance(tc, OtelTraceConfig) for tc in configs):
        ours.freeze()
        configs.append(ours)
    for extra in extras:
        if extra not in configs:
            extra.freeze()
            configs.append(extra)
    session._trace_configs = configs
