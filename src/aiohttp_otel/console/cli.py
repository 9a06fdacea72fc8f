"""The ``aiohttp-otel`` console tool: ``trace`` requests to a URL, or take the ``demo`` tour.

This module parses and checks the command line. The commands are imported only once the
``cli`` extra is known to be installed, so a missing extra costs one clear line, not a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from yarl import URL

from .._version import __version__

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["main"]

_PROG = "aiohttp-otel"
_CLI_EXTRA = 'pip install "aiohttp-otel[cli]"'
_OTLP_PACKAGE = "opentelemetry-exporter-otlp-proto-http"
# The module each command imports, and the distribution that provides it.
_NEEDED = {
    "trace": {"rich": "rich", "opentelemetry.sdk": "opentelemetry-sdk"},
    "demo": {"rich": "rich", "opentelemetry.sdk": "opentelemetry-sdk", "trustme": "trustme"},
}
_OTLP_MODULE = "opentelemetry.exporter.otlp.proto.http"
# RFC 9110 token: what a method or a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_DESCRIPTION = """\
Trace aiohttp requests with OpenTelemetry and draw where their time went: a
waterfall of the request's spans (waiting for a connection, DNS, connect, TLS,
sending, waiting for the server, the body) in the terminal."""

_TRACE_DESCRIPTION = """\
Make requests to URL with full instrumentation and draw each request's span
tree as a waterfall, or print the spans as OTLP/JSON."""

_TRACE_EPILOG = """\
examples:
  aiohttp-otel trace http://localhost:8080/
  aiohttp-otel trace https://localhost:8443/api -X POST \\
      -H 'Content-Type: application/json' -d '{"name": "x"}'
  aiohttp-otel trace https://localhost:8443/ --cacert ca.pem
  aiohttp-otel trace http://localhost:8080/events --stream
  aiohttp-otel trace http://localhost:8080/ --repeat 3 --concurrency 2
  aiohttp-otel trace http://localhost:8080/ --json > spans.json
  aiohttp-otel trace http://localhost:8080/ --otlp http://localhost:4318

The exit status is 0 when every request got a response below 400 (and, with
--otlp, the export succeeded), 1 when one failed, and 2 for a usage error."""

_DEMO_DESCRIPTION = """\
Start HTTP and HTTPS servers on this machine (the HTTPS certificate comes from
a CA made in memory) and trace a tour: a new connection, keep-alive reuse,
waiting for a connection, a redirect chain, a streamed body and a failure."""


def _http_url(text: str) -> str:
    candidate = text if "://" in text else f"http://{text}"
    try:
        url = URL(candidate)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return str(url)


def _otlp_endpoint(text: str) -> str:
    example = "such as http://localhost:4318"
    try:
        url = URL(text)
        port = url.port
    except ValueError as exc:
        if "port" in str(exc).lower():  # yarl words it differently from one release to another
            raise argparse.ArgumentTypeError(f"{text!r} has no valid port ({example})") from None
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an OTLP/HTTP endpoint: give its http:// or https:// URL, {example}"
        )
    if port is None or not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} has no valid port ({example})")
    if url.query_string or url.fragment or url.user is not None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an OTLP/HTTP endpoint: no query, fragment or user, {example}"
        )
    return str(url)


def _ca_file(text: str) -> str:
    try:
        ssl.create_default_context(cafile=text)
    except ssl.SSLError:
        raise argparse.ArgumentTypeError(
            f"{text!r} holds no PEM certificate a TLS client can trust"
        ) from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror}") from None
    return text


def _svg_path(text: str) -> Path:
    path = Path(text)
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: no directory {str(folder)!r}")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {str(folder)!r} is read-only")
    return path


def _method(text: str) -> str:
    if not _TOKEN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an HTTP method (one word, like POST)")
    return text.upper()


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not name:
        raise argparse.ArgumentTypeError(f"{text!r} has no 'Name: value' form")
    if not _TOKEN.fullmatch(name):
        raise argparse.ArgumentTypeError(f"{name!r} is not a valid header name")
    return name, value.strip()


def _body(text: str) -> bytes:
    if not text.startswith("@"):
        return text.encode()
    try:
        return Path(text[1:]).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text[1:]!r}: {exc.strerror}") from None


def _at_least_one(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return number


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    """The ``aiohttp-otel`` argument parser, with its ``trace`` and ``demo`` commands."""
    parser = argparse.ArgumentParser(
        prog=_PROG, description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    trace = commands.add_parser(
        "trace",
        help="make requests to a URL and draw each one's spans",
        description=_TRACE_DESCRIPTION,
        epilog=_TRACE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trace.add_argument("url", metavar="URL", type=_http_url, help="http:// or https:// URL")
    trace.add_argument(
        "-X",
        "--request",
        dest="method",
        metavar="METHOD",
        type=_method,
        help="request method (default: GET, or POST with -d)",
    )
    trace.add_argument(
        "-H",
        "--header",
        dest="headers",
        metavar="'NAME: VALUE'",
        type=_header,
        action="append",
        default=[],
        help="add a request header; repeat for more",
    )
    trace.add_argument(
        "-d",
        "--data",
        metavar="DATA",
        type=_body,
        help="request body; @FILE sends the file's bytes",
    )
    trace.add_argument(
        "--repeat",
        metavar="N",
        type=_at_least_one,
        default=1,
        help="requests made one after another (default: 1)",
    )
    trace.add_argument(
        "--concurrency",
        metavar="C",
        type=_at_least_one,
        default=1,
        help="run C of those sequences at once, on one session: C x N requests (default: 1)",
    )
    trace.add_argument(
        "--json",
        action="store_true",
        help="print the spans as OTLP/JSON on standard output instead of the waterfalls",
    )
    trace.add_argument(
        "--stream",
        action="store_true",
        help="print each body chunk as it arrives (offset, size, gap), then the waterfall",
    )
    trace.add_argument(
        "--otlp",
        metavar="ENDPOINT",
        type=_otlp_endpoint,
        help="also export spans and metrics to this OTLP/HTTP receiver "
        "(for example http://localhost:4318)",
    )
    trace.add_argument(
        "--phases",
        choices=("spans", "events", "off"),
        default="spans",
        help="how connection phases are recorded (default: spans)",
    )
    trust = trace.add_mutually_exclusive_group()
    trust.add_argument(
        "--cacert",
        metavar="FILE",
        type=_ca_file,
        help="trust the CA certificates in this PEM file (instead of the system's)",
    )
    trust.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="do not verify the server's TLS certificate",
    )
    trace.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=30.0,
        help="give up on a request after this long (default: 30)",
    )

    demo = commands.add_parser(
        "demo",
        help="serve HTTP and HTTPS locally and trace a tour of requests",
        description=_DEMO_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--svg",
        metavar="PATH",
        type=_svg_path,
        help="also save what is printed as an SVG picture",
    )
    return parser


def _missing_modules(needed: dict[str, str]) -> list[str]:
    missing = []
    for module, distribution in needed.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(distribution)
    return missing


def _prerequisites_error(args: argparse.Namespace) -> str | None:
    missing = _missing_modules(_NEEDED[args.command])
    if missing:
        return (
            f"{_PROG}: the console tool needs the cli extra (missing: {', '.join(missing)}); "
            f"install it with: {_CLI_EXTRA}"
        )
    if getattr(args, "otlp", None) and _missing_modules({_OTLP_MODULE: _OTLP_PACKAGE}):
        return (
            f"{_PROG}: --otlp needs the OTLP/HTTP exporter; "
            f"install it with: pip install {_OTLP_PACKAGE}"
        )
    return None


def main(argv: Sequence[str] | None = None, *, console: Console | None = None) -> int:
    """Run the console tool; return its exit status.

    ``console`` is where the output goes (a rich console on standard output by default).

    Example:

    ```python
    from aiohttp_otel.console.cli import main

    status = main(["trace", "http://localhost:8080/", "--repeat", "2"])
    ```
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        # --help and --version stop with 0, a usage error with 2.
        return stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 2
    problem = _prerequisites_error(args)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    try:
        if args.command == "trace":
            from .trace import TraceOptions, run_trace

            options = TraceOptions(
                url=args.url,
                method=args.method or ("POST" if args.data is not None else "GET"),
                headers=tuple(args.headers),
                data=args.data,
                repeat=args.repeat,
                concurrency=args.concurrency,
                json=args.json,
                otlp=args.otlp,
                phases=args.phases,
                insecure=args.insecure,
                cacert=args.cacert,
                stream=args.stream,
                timeout=args.timeout,
            )
            return run_trace(options, console)
        from .demo import run_demo

        return run_demo(console, svg_path=args.svg)
    except KeyboardInterrupt:
        return 130
