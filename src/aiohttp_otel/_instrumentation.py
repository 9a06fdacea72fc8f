"""Everything built once per trace config: the tracer, the instruments, the compiled options.

Signal handlers only read from here; nothing on the request path parses, compiles or looks
up configuration.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.metrics import get_meter
from opentelemetry.trace import get_tracer
from opentelemetry.util.types import AttributeValue
from yarl import URL

from . import _semconv as sc
from ._connector import install_connection_probe
from ._options import Options
from ._redaction import HeaderCapture, UrlRedactor
from ._version import __version__

SCOPE_NAME = "aiohttp_otel"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"

# Stable HTTP client duration buckets (seconds), from the semantic conventions.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# The pre-1.21 http.client.duration buckets (milliseconds).
DURATION_BUCKETS_MS = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)

# Stable metric attribute -> its pre-1.21 name; stable-only names (error.type) are dropped so
# the old series keeps the keys its dashboards were built on.
_OLD_METRIC_NAMES = {
    sc.HTTP_REQUEST_METHOD: sc.OLD_HTTP_METHOD,
    sc.HTTP_RESPONSE_STATUS_CODE: sc.OLD_HTTP_STATUS_CODE,
    sc.SERVER_ADDRESS: sc.OLD_NET_PEER_NAME,
    sc.SERVER_PORT: sc.OLD_NET_PEER_PORT,
    sc.URL_SCHEME: "http.scheme",
    sc.NETWORK_PROTOCOL_VERSION: "http.flavor",
}


class Instrumentation:
    """The compiled form of :class:`Options`, shared by every request of a trace config."""

    def __init__(self, options: Options) -> None:
        self.options = options
        #: The instrumentor turns this off on ``uninstrument()``, for sessions it already wired.
        self.enabled = True
        self.tracer = get_tracer(
            SCOPE_NAME, __version__, options.tracer_provider, schema_url=SCHEMA_URL
        )
        meter = get_meter(SCOPE_NAME, __version__, options.meter_provider, schema_url=SCHEMA_URL)
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S),
        )
        self.dup = options.semconv is sc.SemconvMode.DUP
        self.old_duration = (
            meter.create_histogram(
                "http.client.duration",
                unit="ms",
                description="Measures the duration of the outbound HTTP request.",
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_MS),
            )
            if self.dup
            else None
        )
        self.methods = sc.MethodTable(options.known_methods)
        self.excluded_urls = options.excluded_urls
        self.request_hook = options.request_hook
        self.response_hook = options.response_hook
        self._url_filter = options.url_filter
        self._redact = UrlRedactor(options.sensitive_query_params)
        self.request_headers = _capture(
            "http.request.header.", options.captured_request_headers, options.sensitive_headers
        )
        self.response_headers = _capture(
            "http.response.header.", options.captured_response_headers, options.sensitive_headers
        )
        install_connection_probe()

    def url_full(self, url: URL) -> str:
        """``url.full``: the user's ``url_filter`` first, then our redaction."""
        text = str(url) if self._url_filter is None else str(self._url_filter(url))
        return self._redact(text)

    def record_duration(self, elapsed_ns: int, attributes: Mapping[str, AttributeValue]) -> None:
        self.duration.record(elapsed_ns / 1e9, attributes)
        if self.old_duration is not None:
            old = {_OLD_METRIC_NAMES[k]: v for k, v in attributes.items() if k in _OLD_METRIC_NAMES}
            self.old_duration.record(elapsed_ns / 1e6, old)


def _capture(
    prefix: str, capture: tuple[str, ...], sensitive: tuple[str, ...]
) -> HeaderCapture | None:
    return HeaderCapture(prefix, capture, sensitive) if capture else None
