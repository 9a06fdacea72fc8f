"""The metric instruments, created once per trace config (never per session).

Names, units, buckets and attributes follow the HTTP and DNS semantic conventions; the
connection and queue instruments follow .NET's, the only other client that has them. The two
observable counts are shared by every trace config on one meter provider (`shared_counts`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

from opentelemetry.metrics import (
    CallbackOptions,
    Histogram,
    Meter,
    MeterProvider,
    Observation,
    get_meter_provider,
)
from opentelemetry.util.types import AttributeValue

from . import _semconv as sc
from ._diagnostics import TRACED, report_fault

try:
    from opentelemetry.metrics._internal import _PROXY_METER_PROVIDER
except ImportError:  # pragma: no cover - an API that moved it: no proxy to look through
    _PROXY_METER_PROVIDER = None  # type: ignore[assignment]

# Stable HTTP client duration buckets (seconds); also DNS and queue time.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# The pre-1.21 http.client.duration buckets (milliseconds).
DURATION_BUCKETS_MS = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)
# How long connections live (seconds).
CONNECTION_BUCKETS_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

# Stable metric attribute -> its pre-1.21 name; stable-only names (error.type) are dropped so
# the old series keeps the keys its dashboards were built on.
_OLD_METRIC_NAMES = {
    sc.HTTP_REQUEST_METHOD: sc.OLD_HTTP_METHOD,
    sc.HTTP_RESPONSE_STATUS_CODE: sc.OLD_HTTP_STATUS_CODE,
    sc.SERVER_ADDRESS: sc.OLD_NET_PEER_NAME,
    sc.SERVER_PORT: sc.OLD_NET_PEER_PORT,
    sc.NETWORK_PROTOCOL_VERSION: "http.flavor",
}

Attributes = Mapping[str, AttributeValue]


class Count:
    """The current value of an up-down count for one set of attributes.

    Its owner (an attempt, a connection) looks it up once and then changes ``value`` in
    place: a change is an integer add, with no hashing of attributes.
    """

    __slots__ = ("attributes", "value")

    def __init__(self, attributes: dict[str, AttributeValue]) -> None:
        self.attributes = attributes
        self.value = 0


class Tally:
    """The current values of an up-down count, kept in the process and read at collection.

    Requests and connections change these counts several times each; an SDK measurement per
    change (hashing its attributes every time) would cost more than the rest of the request's
    telemetry. The reader sees the same values through an asynchronous UpDownCounter.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        # A set of attributes once seen keeps reporting (0 too).
        self._counts: dict[tuple[tuple[str, AttributeValue], ...], Count] = {}

    def count(self, attributes: Attributes) -> Count:
        """The count for these attributes, made at its first use."""
        key = tuple(attributes.items())
        found = self._counts.get(key)
        if found is None:
            # setdefault: two threads making the same new count keep one of them.
            found = self._counts.setdefault(key, Count(dict(key)))
        return found

    def observe(self, _options: CallbackOptions) -> list[Observation]:
        # Called from the reader's thread: take a snapshot of the entries first.
        return [Observation(c.value, c.attributes) for c in list(self._counts.values())]


class SafeHistogram:
    """A histogram whose faults (a broken SDK or meter) are logged once and then ignored:
    metrics must never cost the traces, nor the request."""

    __slots__ = ("_histogram",)

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram

    def record(self, amount: float, attributes: Attributes) -> None:
        try:
            self._histogram.record(amount, attributes)
        except Exception as exc:
            report_fault("recording a metric", exc, TRACED)


class Instruments:
    """Every instrument of one trace config, with the few recording helpers that need care.

    ``meter_provider`` is the provider ``meter`` came from (``None``: the global one); the
    observable counts are shared through it.
    """

    def __init__(
        self,
        meter: Meter,
        *,
        dup: bool,
        meter_provider: MeterProvider | None = None,
        body_sizes: bool = False,
    ) -> None:
        def histogram(name: str, **kwargs: Any) -> SafeHistogram:
            return SafeHistogram(_create_histogram(meter, name, **kwargs))

        self.request_duration = histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S),
        )
        self.old_duration = (
            histogram(
                "http.client.duration",
                unit="ms",
                description="Measures the duration of the outbound HTTP request.",
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_MS),
            )
            if dup
            else None
        )
        # Opt-in (``body_size_metrics``): two more histogram records per request.
        self.request_body_size = (
            histogram(
                "http.client.request.body.size",
                unit="By",
                description="Size of HTTP client request bodies.",
            )
            if body_sizes
            else None
        )
        self.response_body_size = (
            histogram(
                "http.client.response.body.size",
                unit="By",
                description="Size of HTTP client response bodies.",
            )
            if body_sizes
            else None
        )
        self.active_requests, self.open_connections = shared_counts(meter, meter_provider)
        self.connection_duration = histogram(
            "http.client.connection.duration",
            unit="s",
            description="The duration of the successfully established outbound HTTP connections.",
            explicit_bucket_boundaries_advisory=list(CONNECTION_BUCKETS_S),
        )
        self.time_in_queue = histogram(
            "http.client.request.time_in_queue",
            unit="s",
            description="The amount of time requests spent on a queue waiting for an available "
            "connection.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S),
        )
        self.dns_lookup_duration = histogram(
            "dns.lookup.duration",
            unit="s",
            description="Measures the time taken to perform a DNS lookup.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S),
        )

    def record_duration(self, elapsed_ns: int, attributes: Attributes, scheme: str) -> None:
        self.request_duration.record(elapsed_ns / 1e9, attributes)
        if self.old_duration is not None:
            old = {_OLD_METRIC_NAMES[k]: v for k, v in attributes.items() if k in _OLD_METRIC_NAMES}
            # The pre-1.21 series always had the scheme; the stable one leaves it out (opt-in).
            old["http.scheme"] = scheme
            self.old_duration.record(elapsed_ns / 1e6, old)


class _Counts:
    """The observable counts of one meter provider, registered once with it."""

    __slots__ = ("active_requests", "open_connections")

    def __init__(self, meter: Meter) -> None:
        self.active_requests = Tally()
        meter.create_observable_up_down_counter(
            "http.client.active_requests",
            callbacks=[self.active_requests.observe],
            unit="{request}",
            description="Number of outbound HTTP requests that are currently active on the client.",
        )
        self.open_connections = Tally()
        meter.create_observable_up_down_counter(
            "http.client.open_connections",
            callbacks=[self.open_connections.observe],
            unit="{connection}",
            description="Number of outbound HTTP connections that are currently active or idle.",
        )


# Held weakly: a provider the application dropped takes its counts with it.
_COUNTS: weakref.WeakKeyDictionary[object, _Counts] = weakref.WeakKeyDictionary()
_COUNTS_LOCK = threading.Lock()


def shared_counts(meter: Meter, meter_provider: MeterProvider | None) -> tuple[Tally, Tally]:
    """``(active_requests, open_connections)`` for every trace config on one meter provider.

    The SDK keeps the first observable instrument registered per provider, scope and name
    and ignores the callbacks of any later one: a second trace config (or an ``instrument()``
    after ``uninstrument()``) that registered its own would never be reported. So the first
    trace config on a provider registers the counts, and every later one adds to them.
    """
    current = get_meter_provider()
    provider: object = meter_provider if meter_provider is not None else current
    with _COUNTS_LOCK:
        try:
            counts = _COUNTS.get(provider)
        except TypeError:  # a provider that cannot be weakly referenced: not shared
            return _pair(_Counts(meter))
        if counts is None and provider is current and _PROXY_METER_PROVIDER is not None:
            # Counts registered through the API's proxy before the SDK was set now feed
            # the SDK's provider: registering again there would be ignored.
            counts = _COUNTS.get(_PROXY_METER_PROVIDER)
        if counts is None:
            counts = _Counts(meter)
        _COUNTS[provider] = counts
    return _pair(counts)


def _pair(counts: _Counts) -> tuple[Tally, Tally]:
    return counts.active_requests, counts.open_connections


def _create_histogram(meter: Meter, name: str, **kwargs: Any) -> Histogram:
    """A histogram with its advised buckets where the API takes them (1.30 and later)."""
    try:
        return meter.create_histogram(name, **kwargs)
    except TypeError:
        if "explicit_bucket_boundaries_advisory" not in kwargs:
            raise
    # An older API or meter: the SDK's default buckets (or the user's View) apply instead.
    del kwargs["explicit_bucket_boundaries_advisory"]
    return meter.create_histogram(name, **kwargs)


def dns_error_type(exc: BaseException | None) -> str:
    """``error.type`` of a failed lookup: the getaddrinfo error's name where there is one."""
    errno = getattr(getattr(exc, "os_error", exc), "errno", None)
    name = _GAI_ERRORS.get(errno) if isinstance(errno, int) else None
    return name if name is not None else sc.error_type(exc) if exc is not None else "_OTHER"


def _gai_errors() -> dict[int, str]:
    import socket

    table: dict[int, str] = {}
    for constant, name in (
        ("EAI_NONAME", "host_not_found"),
        ("EAI_NODATA", "host_not_found"),
        ("EAI_AGAIN", "try_again"),
        ("EAI_FAMILY", "address_family_not_supported"),
        ("EAI_FAIL", "no_recovery"),
    ):
        value: Any = getattr(socket, constant, None)
        if isinstance(value, int):
            table[value] = name
    return table


_GAI_ERRORS = _gai_errors()
