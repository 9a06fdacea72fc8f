"""OpenTelemetry tracing for the aiohttp client that shows where each request's time went.

There are three ways to switch it on. Without touching the code, the OpenTelemetry agent finds
the package's `opentelemetry_instrumentor` entry point:

```console
opentelemetry-instrument python app.py
```

For every `aiohttp.ClientSession` created from then on:

```python
from aiohttp_otel import AioHttpClientInstrumentor

AioHttpClientInstrumentor().instrument()
```

For one session:

```python
import aiohttp
from aiohttp_otel import create_trace_config

session = aiohttp.ClientSession(trace_configs=[create_trace_config()])
```

Under `instrument()`, each session carries exactly one aiohttp-otel TraceConfig (yours, if you
passed one) and none of the official `opentelemetry-instrumentation-aiohttp-client`.
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
