"""Every patch of aiohttp's internals, in one place: what is wrapped, and why.

aiohttp's tracing signals do not show everything an attempt does, so a few internals are
wrapped, once per process, each by the module named for what it watches:

* ``connect``: ``BaseConnector.connect`` (where each attempt begins, and which connection it
  got), ``aiohappyeyeballs.start_connection`` (the TCP connect),
  ``TCPConnector._start_tls_connection`` (TLS through a proxy tunnel);
* ``exchange``: ``ClientResponse.start`` (each attempt's response head, or its failure) and
  ``ClientRequest.write_bytes`` (the request body's end);
* ``body``: ``StreamReader.feed_data``/``set_exception`` and ``ResponseHandler.close``/``abort``
  (the response body's chunks and its end);
* ``lifecycle``: ``BaseConnector._release`` and ``ResponseHandler.connection_lost`` (pool state).

One internal is read, not wrapped: the connector's in-flight DNS lookups
(``connect.joined_lookup``).

The probes call back through ``protocol`` only; they never import the code that records.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .._diagnostics import report_fault, warn_once
from .body import install_body_probe
from .connect import install_connection_probe
from .exchange import install_exchange_probe
from .lifecycle import install_lifecycle_probe

#: Every internal a probe wraps: (module, attribute path). A missing one costs a few phases or
#: events, never a request; ``missing_internals`` names them.
PROBED: tuple[tuple[str, str], ...] = (
    ("aiohttp.connector", "BaseConnector.connect"),
    ("aiohttp.connector", "BaseConnector._release"),
    ("aiohttp.connector", "TCPConnector._start_tls_connection"),
    ("aiohappyeyeballs", "start_connection"),
    ("aiohttp.client_reqrep", "ClientResponse.start"),
    ("aiohttp.client_reqrep", "ClientRequest.write_bytes"),
    ("aiohttp.streams", "StreamReader.feed_data"),
    ("aiohttp.streams", "StreamReader.set_exception"),
    ("aiohttp.client_proto", "ResponseHandler.close"),
    ("aiohttp.client_proto", "ResponseHandler.connection_lost"),
)


def missing_internals() -> list[str]:
    """The probed internals this aiohttp does not have, as ``module.Class.name``."""
    missing = []
    for module_name, path in PROBED:
        try:
            target: object = importlib.import_module(module_name)
            for part in path.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError):
            missing.append(f"{module_name}.{path}")
    return missing


def check_internals() -> None:
    """Warn once, naming every probed internal that is missing from the installed aiohttp."""
    missing = missing_internals()
    if missing:
        warn_once(
            "probes missing",
            "aiohttp-otel: this aiohttp lacks internals the instrumentation watches (%s); "
            "the spans that depend on them (phases, body end, attempts) will be incomplete.",
            ", ".join(missing),
        )


_INSTALLERS: tuple[Callable[[], None], ...] = (
    install_connection_probe,
    install_exchange_probe,
    install_lifecycle_probe,
    install_body_probe,
)


def install_probes() -> None:
    """Install every probe once per process; a probe that cannot be installed is reported
    once, and the others still are."""
    for install in _INSTALLERS:
        try:
            install()
        except Exception as exc:
            # An aiohttp whose internals moved: trace what the signals show, still.
            report_fault(f"{install.__name__} (some phases and body events will be missing)", exc)


check_internals()
