"""OpenTelemetry tracing for the aiohttp client that shows where each request's time went.

Three ways to switch it on::

    # 1. Without touching the code:  opentelemetry-instrument python app.py

    # 2. Every session in the process:
    from aiohttp_otel import AioHttpClientInstrumentor
    AioHttpClientInstrumentor().instrument()

    # 3. One session:
    from aiohttp_otel import create_trace_config
    session = aiohttp.ClientSession(trace_configs=[create_trace_config()])
"""

from ._instrumentor import AioHttpClientInstrumentor
from ._redaction import DEFAULT_SENSITIVE_HEADERS, DEFAULT_SENSITIVE_QUERY_PARAMS
from ._trace_config import create_trace_config
from ._version import __version__

__all__ = [
    "DEFAULT_SENSITIVE_HEADERS",
    "DEFAULT_SENSITIVE_QUERY_PARAMS",
    "AioHttpClientInstrumentor",
    "__version__",
    "create_trace_config",
]
