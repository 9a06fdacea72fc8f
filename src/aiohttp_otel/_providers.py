"""Whether anything can record: a configured SDK, or only the API's no-op stand-ins.

Without an SDK the OpenTelemetry API hands out proxies that drop every span and measurement
until a provider is set, which may happen at any time (an application often instruments first
and configures the SDK later). Until then a request needs no span, no attributes and no
metrics: only the context that came in with it is passed on. Telling the two apart costs a
provider lookup per request, and nothing at all once a provider is there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType

from opentelemetry import metrics, trace
from opentelemetry.environment_variables import (
    OTEL_PYTHON_METER_PROVIDER,
    OTEL_PYTHON_TRACER_PROVIDER,
)
from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, TracerProvider

try:
    from opentelemetry.metrics import _internal as _metrics_internal
    from opentelemetry.metrics._internal import _ProxyMeterProvider
except ImportError:  # pragma: no cover - an API that moved it: assume an SDK may be there
    _ProxyMeterProvider = None  # type: ignore[assignment,misc]
    _metrics_internal = None  # type: ignore[assignment]


class RecordingWatch:
    """Answers "could a span or a measurement be recorded now?" for one trace config."""

    __slots__ = ("_live", "_waiting")

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        # The checks that say "not yet"; once one of them says yes, it stays yes (a global
        # provider can be set only once).
        waiting: list[Callable[[], bool]] = []
        live = False
        for check in (
            _unset_check(
                tracer_provider,
                trace.get_tracer_provider,
                ProxyTracerProvider,
                _global_slot(trace, "_TRACER_PROVIDER", OTEL_PYTHON_TRACER_PROVIDER),
            ),
            _unset_check(
                meter_provider,
                metrics.get_meter_provider,
                _ProxyMeterProvider,
                _global_slot(_metrics_internal, "_METER_PROVIDER", OTEL_PYTHON_METER_PROVIDER),
            ),
        ):
            if check is None:
                live = True
            elif check is not _never:
                waiting.append(check)
        self._live = live
        self._waiting = tuple(waiting)

    def can_record(self) -> bool:
        if self._live:
            return True
        for still_unset in self._waiting:
            if not still_unset():
                self._live = True
                return True
        return False


def _never() -> bool:
    """The check of a provider that is a no-op for good: it is always "still unset"."""
    return True


def _unset_check(
    given: object,
    get_global: Callable[[], object],
    proxy_type: type | None,
    slot: Callable[[], bool] | None = None,
) -> Callable[[], bool] | None:
    """``None`` when the provider records; ``_never`` when it never will (an explicit no-op);
    otherwise a check that is true while the global provider is still the API's proxy."""
    provider = given if given is not None else get_global()
    if isinstance(provider, (NoOpTracerProvider, NoOpMeterProvider)):
        return _never
    if given is not None or proxy_type is None or not isinstance(provider, proxy_type):
        return None
    if slot is not None:
        return slot
    return lambda: get_global() is provider


def _global_slot(module: ModuleType | None, name: str, env_var: str) -> Callable[[], bool] | None:
    """A check of the API's global provider variable itself: true while it is still unset.

    ``get_tracer_provider()`` reads the environment on every call until a provider is set
    (about 2 µs a call), and this check runs on every request without an SDK. It is used only
    while no provider is named in the environment: then "unset" is exactly what the API's
    getter would answer with its proxy. ``None`` (the getter is asked) if the API moved it.
    """
    namespace = getattr(module, "__dict__", None)
    if namespace is None or name not in namespace or env_var in os.environ:
        return None
    return lambda: namespace[name] is None
