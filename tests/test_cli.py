"""The console tool, run as a user runs it: ``aiohttp-otel demo`` and ``aiohttp-otel trace``.

The commands run in-process through ``main()`` with a rich console that writes to memory, and
as ``python -m aiohttp_otel`` in a subprocess with a pipe for its output. Every request goes to
a loopback server.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from rich.cells import cell_len
from rich.console import Console

from aiohttp_otel.console.cli import main
from aiohttp_otel.console.demo import (
    REDIRECT_HOPS,
    STREAM_CHUNK_SIZE,
    STREAM_CHUNKS,
    STREAM_INTERVAL_S,
    TOUR,
)
from aiohttp_otel.console.layout import format_bytes

from .conftest import Server, Tls, closed_port, serve

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
DURATION = r"\d+(\.\d)? (ms|µs)|\d+\.\d\d s"
# A bar is drawn with full blocks, light shades (a CLIENT span's waits) or a hairline.
BAR_GLYPH = re.compile("[█▒░▏]")


def bar_cells(row: str) -> int:
    return len(BAR_GLYPH.findall(row))


SUBPROCESS_TIMEOUT_S = 60
CLI_EXTRA_HINT = 'pip install "aiohttp-otel[cli]"'


def memory_console(width: int = 120) -> Console:
    return Console(file=io.StringIO(), width=width)


def text_of(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return ANSI.sub("", file.getvalue())


def row_names(lines: list[str]) -> list[str]:
    """The span names of a waterfall's rows (the text before the bar, unindented)."""
    return [BAR_GLYPH.split(line)[0].strip() for line in lines if BAR_GLYPH.search(line)]


def child_env(columns: int | None = None) -> dict[str, str]:
    """The environment of a child process whose output is piped: nothing forces colour."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")
    }
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return env


async def run_module(
    *args: str, columns: int | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """``python -m aiohttp_otel ARGS`` with piped output, bounded in time."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiohttp_otel",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**child_env(columns), **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), SUBPROCESS_TIMEOUT_S)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out.decode(), err.decode()


async def run_main(*args: str, width: int = 120) -> tuple[int, str]:
    """``main([...])`` in a thread (it runs its own event loop), while servers run in ours."""
    console = memory_console(width)
    code = await asyncio.wait_for(
        asyncio.to_thread(main, list(args), console=console), SUBPROCESS_TIMEOUT_S
    )
    return code, text_of(console)


# -- demo ------------------------------------------------------------------------------------


def demo_sections(text: str) -> list[list[str]]:
    """The demo's output cut at each stop's heading: the heading's lines, then its rows."""
    lines = text.splitlines()
    starts = [
        next(i for i, line in enumerate(lines) if line.startswith(f"{n}. {stop.title}"))
        for n, stop in enumerate(TOUR, 1)
    ]
    ends = [*starts[1:], len(lines)]
    return [lines[start:end] for start, end in zip(starts, ends, strict=True)]


def check_tour(text: str) -> None:
    """Each stop of the tour shows the spans it is there to show."""
    sections = demo_sections(text)
    assert len(sections) == 6
    for section in sections:
        rows = [line for line in section if BAR_GLYPH.search(line)]
        assert rows, section
        for row in rows:
            assert re.search(rf"[█▒░▏] +({DURATION})", row), row
    new, reuse, queue, redirects, stream, failure = (
        [line for line in s if BAR_GLYPH.search(line)] for s in sections
    )
    assert row_names(new) == [
        "new connection",
        "GET",
        "HTTP connection_setup",
        "DNS lookup",
        "socket connect",
        "TLS client handshake",
    ]
    assert "localhost → 127.0.0.1" in new[3]
    assert re.search(r"TLS 1\.[23]", new[5])

    assert row_names(reuse) == ["keep-alive reuse", "GET"]
    assert "reused connection" in reuse[1]

    assert row_names(queue).count("GET") == 2
    assert row_names(queue).count("HTTP wait_for_connection") == 1
    # The waiting request is the one that came second.
    assert row_names(queue)[-1] == "HTTP wait_for_connection"

    assert row_names(redirects) == ["redirect chain"] + ["GET"] * (REDIRECT_HOPS + 1)
    statuses = [re.search(r"(ms|µs)  (\d{3}) · ", row) for row in redirects[1:]]
    assert [m.group(2) if m else row for m, row in zip(statuses, redirects[1:], strict=True)] == [
        "302"
    ] * REDIRECT_HOPS + ["200"]
    assert "resend" not in redirects[1]
    for hop in range(1, REDIRECT_HOPS + 1):
        assert f"resend {hop} · " in redirects[hop + 1]

    assert row_names(stream) == ["streamed body", "GET"]
    body = format_bytes(STREAM_CHUNKS * STREAM_CHUNK_SIZE)
    # Usually one chunk event per write; a loaded machine may read two writes at once.
    chunks = re.search(rf"200 · (\d+) chunks?, {re.escape(body)} · ttfb ", stream[1])
    assert chunks, stream[1]
    assert 1 <= int(chunks.group(1)) <= STREAM_CHUNKS
    # The span lasts until the last byte: at least the server's pauses between the chunks.
    duration = re.search(r"[█▒░▏] +(\d+\.\d) ms", stream[1])
    assert duration, stream[1]
    assert float(duration.group(1)) >= (STREAM_CHUNKS - 1) * STREAM_INTERVAL_S * 1000

    assert row_names(failure) == [
        "connection refused",
        "GET",
        "HTTP connection_setup",
        "DNS lookup",
        "socket connect",
    ]
    assert "ClientConnectorError" in failure[1]
    assert "ConnectionRefusedError" in failure[4]


def test_the_demo_prints_a_waterfall_for_every_stop_of_the_tour() -> None:
    console = memory_console(140)
    assert main(["demo"], console=console) == 0
    text = text_of(console)
    for stop in TOUR:
        assert stop.hint in text
    # The intro names the segments of a request's bar.
    assert "▒ queued  █ connecting  █ sending  ░ waiting  █ downloading" in text.splitlines()[2]
    check_tour(text)


def test_the_demo_saves_an_svg_of_what_it_printed(tmp_path: Path) -> None:
    picture = tmp_path / "demo.svg"
    console = memory_console(100)
    assert main(["demo", "--svg", str(picture)], console=console) == 0
    svg = picture.read_text()
    assert svg.startswith("<svg")
    # The SVG writes spaces as non-breaking ones.
    assert "A&#160;redirect&#160;chain" in svg
    assert "TLS&#160;client&#160;handshake" in svg


async def test_python_m_demo_piped_is_plain_and_fits_the_width() -> None:
    # The width of the documentation's picture.
    code, out, err = await run_module("demo", columns=120)
    assert code == 0, err
    assert "\x1b[" not in out
    check_tour(out)
    assert max(cell_len(line) for line in out.splitlines()) <= 120


# -- trace -----------------------------------------------------------------------------------


async def test_trace_draws_the_request_against_a_local_server(http_server: Server) -> None:
    url = http_server.url("/ok")
    code, out, err = await run_module("trace", url, columns=120)
    assert code == 0, err
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert re.fullmatch(rf"GET {re.escape(url)} → 200 OK · 2 B · ({DURATION})", lines[0])
    assert row_names(lines) == [
        "request",
        "GET",
        "HTTP connection_setup",
        "DNS lookup",
        "socket connect",
    ]


async def test_at_80_columns_the_bar_and_the_names_give_way_before_the_url_and_ttfb(
    http_server: Server,
) -> None:
    url = http_server.url("/ok")
    # Piped output with no COLUMNS is 80 columns wide, as most terminals are.
    code, out, err = await run_module("trace", url)
    assert code == 0, err
    lines = out.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    client = next(line for line in lines if line.startswith("  GET "))
    assert re.search(rf"200 · .*ttfb ({DURATION}) · {re.escape(url)}$", client), client
    # The phases go by their short names, in the same tree.
    assert row_names(lines) == ["request", "GET", "setup", "DNS", "TCP"]
    assert "localhost → 127.0.0.1" in next(line for line in lines if "DNS " in line)


async def test_trace_in_process_draws_under_the_summary(http_server: Server) -> None:
    code, text = await run_main("trace", http_server.url("/redirect/2"), width=160)
    assert code == 0
    lines = text.splitlines()
    assert lines[0].startswith(f"GET {http_server.url('/redirect/2')} → 200 OK after 2 redirects")
    assert row_names(lines) == [
        "request",
        "GET",
        "HTTP connection_setup",
        "DNS lookup",
        "socket connect",
        "GET",
        "GET",
    ]
    hops = [line for line in lines if line.lstrip().startswith("GET ") and BAR_GLYPH.search(line)]
    assert "resend 1" in hops[1]
    assert "resend 2" in hops[2]


@pytest.fixture
async def recording_server() -> AsyncIterator[tuple[Server, list[dict[str, Any]]]]:
    """A server that remembers each request's method, headers and body."""
    seen: list[dict[str, Any]] = []

    async def remember(request: web.Request) -> web.Response:
        seen.append(
            {"method": request.method, "headers": request.headers, "body": await request.read()}
        )
        return web.Response(text="seen")

    app = web.Application()
    app.router.add_route("*", "/", remember)
    async with serve(app) as server:
        yield server, seen


async def test_trace_sends_the_method_headers_and_body_asked_for(
    recording_server: tuple[Server, list[dict[str, Any]]], tmp_path: Path
) -> None:
    server, seen = recording_server
    url = server.url("/")
    code, text = await run_main(
        "trace", url, "-X", "put", "-H", "X-One: 1", "-H", "X-Two:two", "-d", "hello"
    )
    assert code == 0, text
    assert seen[0]["method"] == "PUT"
    assert (seen[0]["headers"]["X-One"], seen[0]["headers"]["X-Two"]) == ("1", "two")
    assert seen[0]["body"] == b"hello"
    assert text.startswith(f"PUT {url} → 200 OK")
    assert "sent 1 chunk, 5 B" in text

    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"from a file")
    code, text = await run_main("trace", url, "-d", f"@{payload}")
    assert code == 0
    assert seen[1]["method"] == "POST"  # -d without -X posts, as curl does
    assert seen[1]["body"] == b"from a file"


async def test_repeat_runs_requests_one_after_another(
    recording_server: tuple[Server, list[dict[str, Any]]],
) -> None:
    server, seen = recording_server
    code, text = await run_main("trace", server.url("/"), "--repeat", "3")
    assert code == 0
    assert len(seen) == 3
    summaries = [line for line in text.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in summaries] == ["[1/3]", "[2/3]", "[3/3]"]
    assert row_names(text.splitlines()).count("request 3") == 1
    # Only the first request opened a connection; the others reused it.
    assert row_names(text.splitlines()).count("HTTP connection_setup") == 1
    assert text.count("reused connection") == 2
    assert text.rstrip().endswith("3 requests: 3 succeeded, 0 failed")


async def test_concurrency_runs_sequences_at_once_on_one_session(
    recording_server: tuple[Server, list[dict[str, Any]]],
) -> None:
    server, seen = recording_server
    code, text = await run_main("trace", server.url("/"), "--repeat", "2", "--concurrency", "3")
    assert code == 0
    assert len(seen) == 6
    names = row_names(text.splitlines())
    assert sorted(n for n in names if n.startswith("request")) == [
        f"request {n}" for n in range(1, 7)
    ]
    # Three requests ran at once, so three connections were opened, then reused.
    assert names.count("HTTP connection_setup") == 3
    assert "6 requests: 6 succeeded, 0 failed" in text


async def test_a_refused_connection_fails_the_command() -> None:
    url = f"http://localhost:{closed_port()}/"
    code, text = await run_main("trace", url)
    assert code == 1
    lines = text.splitlines()
    # The outcome fits one line; the exception's message follows, indented.
    assert re.fullmatch(rf"GET {re.escape(url)} ✗ ClientConnectorError · ({DURATION})", lines[0])
    assert lines[1].startswith("  Cannot connect to host localhost:")
    refused = next(line for line in text.splitlines() if "socket connect" in line)
    assert "ConnectionRefusedError" in refused


async def test_an_http_error_status_fails_the_command(http_server: Server) -> None:
    code, text = await run_main("trace", http_server.url("/status/503"))
    assert code == 1
    assert "→ 503 Service Unavailable" in text.splitlines()[0]


async def test_a_request_past_the_timeout_fails_the_command(http_server: Server) -> None:
    code, text = await run_main("trace", http_server.url("/slow?delay=5"), "--timeout", "0.2")
    assert code == 1
    assert re.fullmatch(rf"GET \S+ ✗ TimeoutError · ({DURATION})", text.splitlines()[0])
    client = next(line for line in text.splitlines() if line.startswith("  GET "))
    assert "TimeoutError" in client


async def test_an_untrusted_certificate_fails_unless_insecure(https_server: Server) -> None:
    code, text = await run_main("trace", https_server.url())
    assert code == 1
    assert "ClientConnectorCertificateError" in text.splitlines()[0]
    code, text = await run_main("trace", https_server.url(), "--insecure")
    assert code == 0
    assert "TLS client handshake" in row_names(text.splitlines())


async def test_phases_as_events_are_drawn_from_the_events(http_server: Server) -> None:
    code, text = await run_main("trace", http_server.url(), "--phases", "events")
    assert code == 0
    assert row_names(text.splitlines()) == [
        "request",
        "GET",
        "HTTP connection_setup",
        "DNS lookup",
        "socket connect",
    ]


# -- --json ----------------------------------------------------------------------------------


def _spans_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        span
        for resource_spans in document["resourceSpans"]
        for scope_spans in resource_spans["scopeSpans"]
        for span in scope_spans["spans"]
    ]


async def test_json_prints_the_span_tree_as_otlp_json(
    https_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await run_main("trace", https_server.url("/redirect/1"), "--json", "-k")
    assert code == 0
    document = json.loads(out)
    every = _spans_of(document)
    spans = {span["name"]: span for span in every}
    root = spans["request"]
    assert "parentSpanId" not in root
    assert root["kind"] == 1  # INTERNAL
    hops = [span for span in every if span["name"] == "GET"]
    assert [hop["kind"] for hop in hops] == [3, 3]  # CLIENT
    assert {hop["parentSpanId"] for hop in hops} == {root["spanId"]}

    def children(parent: dict[str, Any]) -> list[str]:
        return sorted(s["name"] for s in every if s.get("parentSpanId") == parent["spanId"])

    # The first hop opens the connection. The second usually reuses it, but aiohttp 3.10
    # sometimes opens another (the redirect's connection is not always back in the pool
    # yet); then its setup has the same phases, its lookup answered from the DNS cache.
    assert children(hops[0]) == ["HTTP connection_setup"]
    assert children(hops[1]) in ([], ["HTTP connection_setup"])
    setups = [s for s in every if s["name"] == "HTTP connection_setup"]
    assert children(setups[0]) == ["DNS lookup", "TLS client handshake", "socket connect"]
    for later in setups[1:]:
        assert children(later) == ["TLS client handshake", "socket connect"]
    assert len(every) == 3 + 4 * len(setups) - (len(setups) - 1)
    assert {span["traceId"] for span in spans.values()} == {root["traceId"]}
    assert re.fullmatch(r"[0-9a-f]{32}", root["traceId"])
    assert re.fullmatch(r"[0-9a-f]{16}", root["spanId"])
    attributes = {a["key"]: a["value"] for a in hops[1]["attributes"]}
    assert attributes["http.response.status_code"] == {"intValue": "200"}
    assert attributes["http.request.resend_count"] == {"intValue": "1"}
    assert attributes["url.full"] == {"stringValue": https_server.url("/ok")}
    assert hops[0]["status"] == {"code": 0}
    assert int(hops[0]["startTimeUnixNano"]) < int(hops[0]["endTimeUnixNano"])
    if len(setups) == 1:  # reused: the link leads to the setup that opened the connection
        assert hops[1]["links"][0]["spanId"] == setups[0]["spanId"]
    else:
        assert "links" not in hops[1] or not hops[1]["links"]
    assert [e["name"] for e in hops[1]["events"][:2]] == [
        "aiohttp.request.headers_sent",
        "aiohttp.response.headers",
    ]
    # The summary went to standard error, so standard output is only the JSON.
    assert "→ 200 OK after 1 redirect" in capsys.readouterr().err


async def test_json_is_what_an_otlp_receiver_accepts(http_server: Server) -> None:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    code, out = await run_main("trace", http_server.url("/status/500"), "--json")
    assert code == 1
    document = json.loads(out)
    # OTLP/JSON writes ids in hex where protobuf's own JSON mapping wants base64.
    for span in _spans_of(document):
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        for link in span["links"]:
            for key in ("traceId", "spanId"):
                link[key] = base64.b64encode(bytes.fromhex(link[key])).decode()
    request = json_format.ParseDict(document, ExportTraceServiceRequest())
    names = [
        span.name
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    assert sorted(names) == sorted(
        ["request", "GET", "HTTP connection_setup", "DNS lookup", "socket connect"]
    )
    client = next(
        span
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
        if span.name == "GET"
    )
    assert client.status.code == client.status.STATUS_CODE_ERROR
    assert client.kind == client.SPAN_KIND_CLIENT


# -- --otlp ----------------------------------------------------------------------------------


@pytest.fixture
async def otlp_receiver() -> AsyncIterator[tuple[str, dict[str, list[bytes]]]]:
    """A loopback OTLP/HTTP receiver that keeps the bodies it is sent, by path."""
    received: dict[str, list[bytes]] = {"/v1/traces": [], "/v1/metrics": []}

    async def keep(request: web.Request) -> web.Response:
        received[request.path].append(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", keep)
    app.router.add_post("/v1/metrics", keep)
    async with serve(app) as server:
        yield f"http://127.0.0.1:{server.port}", received


async def test_otlp_exports_the_spans_and_metrics_too(
    http_server: Server, otlp_receiver: tuple[str, dict[str, list[bytes]]]
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    endpoint, received = otlp_receiver
    code, text = await run_main("trace", http_server.url(), "--otlp", endpoint)
    assert code == 0
    assert "DNS lookup" in row_names(text.splitlines())  # the waterfall is still drawn
    names: list[str] = []
    for body in received["/v1/traces"]:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                names.extend(span.name for span in scope_spans.spans)
    assert sorted(names) == sorted(
        ["request", "GET", "HTTP connection_setup", "DNS lookup", "socket connect"]
    )
    metric_names: set[str] = set()
    for body in received["/v1/metrics"]:
        metrics = ExportMetricsServiceRequest()
        metrics.ParseFromString(body)
        for resource_metrics in metrics.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                metric_names.update(metric.name for metric in scope_metrics.metrics)
    assert "http.client.request.duration" in metric_names


# -- what the summary line shows -------------------------------------------------------------


async def test_the_summary_line_redacts_the_url_as_the_spans_do(http_server: Server) -> None:
    url = f"http://user:secretpw@127.0.0.1:{http_server.port}/ok?sig=abc&page=2"
    code, text = await run_main("trace", url)
    assert code == 0, text
    assert "secretpw" not in text
    assert "abc" not in text
    summary = text.splitlines()[0]
    assert summary.startswith(
        f"GET http://REDACTED:REDACTED@127.0.0.1:{http_server.port}/ok?sig=REDACTED&page=2 → 200"
    )


async def test_an_error_message_is_redacted_too(http_server: Server) -> None:
    # aiohttp's TooManyRedirects quotes the first request's URL, signed query and all.
    url = f"http://user:secretpw@localhost:{http_server.port}/loop?sig=abc"
    code, text = await run_main("trace", url)
    assert code == 1
    lines = text.splitlines()
    assert "✗ TooManyRedirects" in lines[0]
    assert f"http://localhost:{http_server.port}/loop?sig=REDACTED" in lines[1]
    assert "secretpw" not in text
    assert "sig=abc" not in text


async def test_the_summary_line_fits_80_columns_and_does_not_wrap(http_server: Server) -> None:
    long_path = "/ok?" + "&".join(f"key{n}=value{n}" for n in range(12))
    code, text = await run_main("trace", http_server.url(long_path), width=80)
    assert code == 0
    summary = text.splitlines()[0]
    assert cell_len(summary) <= 80
    # The URL gives way in its middle; the outcome, the size and the time stay whole.
    assert re.fullmatch(
        rf"GET http://localhost:\d+/ok\?key\S*…\S*value11 → 200 OK · 2 B · ({DURATION})", summary
    ), summary
    refused = f"http://localhost:{closed_port()}/"
    code, text = await run_main("trace", refused, width=80)
    lines = text.splitlines()
    assert cell_len(lines[0]) <= 80
    assert re.fullmatch(
        rf"GET {re.escape(refused)} ✗ ClientConnectorError · ({DURATION})", lines[0]
    )
    # The message wraps on its own lines, each indented under the summary.
    message = []
    for line in lines[1:]:
        if not line.startswith("  ") or BAR_GLYPH.search(line):
            break
        message.append(line)
    assert message, lines
    assert all(cell_len(line) <= 80 for line in message)
    assert "Connect call failed" in " ".join(message)


# -- --cacert ----------------------------------------------------------------------------------


async def test_cacert_trusts_the_ca_in_a_file(
    https_server: Server, tls: Tls, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    tls.ca.cert_pem.write_to_path(str(ca))
    code, text = await run_main("trace", https_server.url(), "--cacert", str(ca))
    assert code == 0, text
    assert "TLS client handshake" in row_names(text.splitlines())
    # Another CA's file: the certificate is not trusted.
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    code, text = await run_main("trace", https_server.url(), "--cacert", str(other))
    assert code == 1
    assert "ClientConnectorCertificateError" in text.splitlines()[0]


def test_cacert_and_insecure_exclude_each_other(
    tls: Tls, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca.pem"
    tls.ca.cert_pem.write_to_path(str(ca))
    assert main(["trace", URL, "--cacert", str(ca), "-k"], console=memory_console()) == 2
    assert "argument -k/--insecure: not allowed with argument --cacert" in capsys.readouterr().err


async def test_ssl_cert_file_is_trusted_as_documented(
    https_server: Server, tls: Tls, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    tls.ca.cert_pem.write_to_path(str(ca))
    code, out, err = await run_module("trace", https_server.url())
    assert code == 1, (out, err)  # the system does not trust the test CA
    code, out, err = await run_module("trace", https_server.url(), env={"SSL_CERT_FILE": str(ca)})
    assert code == 0, (out, err)
    assert "→ 200 OK" in out


# -- --otlp checked --------------------------------------------------------------------------


async def test_an_unreachable_otlp_receiver_fails_at_once_in_one_clear_line(
    http_server: Server,
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    code, out, err = await run_module("trace", http_server.url(), "--otlp", endpoint)
    assert code == 1
    problem = [line for line in (out + err).splitlines() if "--otlp" in line]
    assert len(problem) == 1, out + err
    assert endpoint.removeprefix("http://") in problem[0]
    assert "cannot connect" in problem[0]
    # No SDK retry messages, and no traceback.
    assert "retrying" not in out + err
    assert "Traceback" not in err


@pytest.fixture
async def not_a_receiver() -> AsyncIterator[str]:
    """An HTTP server that answers 404 to every OTLP path: reachable, but not a receiver."""
    async with serve(web.Application()) as server:
        yield f"http://127.0.0.1:{server.port}"


async def test_a_failed_export_fails_the_command_with_the_reason(
    http_server: Server, not_a_receiver: str
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    code, out, err = await run_module("trace", http_server.url(), "--otlp", not_a_receiver)
    assert code == 1
    assert "→ 200 OK" in out  # the request itself went well, and was drawn
    assert "DNS" in row_names(out.splitlines())
    problem = [line for line in (out + err).splitlines() if "--otlp" in line]
    assert len(problem) == 1, out + err
    assert "exporting traces and metrics" in problem[0]
    assert "404" in problem[0]
    assert "Failed to export" not in err  # the SDK's own line is summed up, not repeated


# -- --stream --------------------------------------------------------------------------------

STREAMED_CHUNKS = 5
STREAMED_SIZE = 1000
STREAM_PAUSE_S = 0.05


@pytest.fixture
async def streaming_server() -> AsyncIterator[Server]:
    """Five chunks of 1000 bytes, each written after a pause."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for index in range(STREAMED_CHUNKS):
            await asyncio.sleep(STREAM_PAUSE_S)
            await response.write(bytes([65 + index]) * STREAMED_SIZE)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/stream", stream)
    async with serve(app) as server:
        yield server


CHUNK_LINE = re.compile(
    rf" *(?P<n>\d+) +(?P<offset>\d+) +(?P<size>\d+(?:\.\d)? (?:B|kB))"
    rf" +(?P<gap>-|{DURATION}) +(?P<since>{DURATION})"
)


def _ms(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"µs": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def test_stream_prints_each_chunk_as_it_arrives_then_the_waterfall(
    streaming_server: Server,
) -> None:
    code, text = await run_main("trace", streaming_server.url("/stream"), "--stream")
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0] == "← 200 OK, the body as it arrives:"
    chunks = [m for m in map(CHUNK_LINE.fullmatch, lines) if m]
    # Each write usually arrives alone; a loaded machine may read two at once.
    assert 1 <= len(chunks) <= STREAMED_CHUNKS
    assert [int(m["n"]) for m in chunks] == list(range(1, len(chunks) + 1))
    offsets = [int(m["offset"]) for m in chunks]
    assert offsets[0] == 0
    assert offsets == sorted(offsets)
    assert chunks[0]["gap"] == "-"
    since = [_ms(m["since"]) for m in chunks]
    assert since == sorted(since)
    # The last chunk came after the server's five pauses.
    assert since[-1] >= (STREAMED_CHUNKS - 1) * STREAM_PAUSE_S * 1000 * 0.9
    total = STREAMED_CHUNKS * STREAMED_SIZE
    assert any(line.startswith(f"{len(chunks)} chunk") and "5.0 kB" in line for line in lines)
    # Then the summary, and the waterfall with the body's row.
    summary = next(i for i, line in enumerate(lines) if line.startswith("GET "))
    assert summary > lines.index(chunks[-1].group(0))
    assert f"→ 200 OK · {format_bytes(total)}" in lines[summary]
    assert "GET" in row_names(lines[summary:])


async def test_stream_arrival_is_printed_before_the_body_is_over(
    streaming_server: Server,
) -> None:
    """The first chunk line is out while the server is still sending: read from the pipe."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiohttp_otel",
        "trace",
        streaming_server.url("/stream"),
        "--stream",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    assert process.stdout is not None
    try:
        seen: list[str] = []
        for _ in range(50):
            line = await asyncio.wait_for(process.stdout.readline(), SUBPROCESS_TIMEOUT_S)
            if not line:
                break
            seen.append(line.decode().rstrip("\n"))
            if CHUNK_LINE.fullmatch(seen[-1]):
                break
        # No summary yet: the request is still going when its first chunk is printed.
        assert CHUNK_LINE.fullmatch(seen[-1]), seen
        assert not any(line.startswith("GET ") for line in seen)
    finally:
        try:
            await asyncio.wait_for(process.communicate(), SUBPROCESS_TIMEOUT_S)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


# -- usage errors and missing extras ---------------------------------------------------------

URL = "http://localhost:1/"


@pytest.mark.parametrize(
    ("args", "named", "why"),
    [
        (["trace", URL, "-H", "no colon here"], "argument -H/--header", "'Name: value'"),
        (["trace", URL, "-H", ": empty name"], "argument -H/--header", "'Name: value'"),
        (["trace", URL, "-H", "bad name: x"], "argument -H/--header", "not a valid header name"),
        (["trace", URL, "--repeat", "0"], "argument --repeat", "at least 1, not '0'"),
        (["trace", URL, "--concurrency", "many"], "argument --concurrency", "not 'many'"),
        (["trace", URL, "-X", "GE T"], "argument -X/--request", "not an HTTP method"),
        (["trace", URL, "--timeout", "0"], "argument --timeout", "above 0, not '0'"),
        (["trace", URL, "--phases", "sometimes"], "argument --phases", "invalid choice"),
        (["trace", URL, "-d", "@no/such/file"], "argument -d/--data", "cannot read"),
        (["trace", URL, "--otlp", "grpc://collector:4317"], "argument --otlp", "http://"),
        (["trace", URL, "--otlp", "nonsense"], "argument --otlp", "http://"),
        (["trace", URL, "--otlp", "http://localhost:99999"], "argument --otlp", "no valid port"),
        (["trace", URL, "--otlp", "http://localhost:4318/?a=b"], "argument --otlp", "no query"),
        (["trace", URL, "--cacert", "no/such/ca.pem"], "argument --cacert", "cannot read"),
        (["trace", URL, "--cacert", "pyproject.toml"], "argument --cacert", "no PEM"),
        (["demo", "--svg", "/no/such/dir/x.svg"], "argument --svg", "no directory"),
        (["demo", "--svg", "."], "argument --svg", "is a directory"),
        (["trace", "ftp://localhost/"], "argument URL", "not an http:// or https:// URL"),
        (["trace"], "URL", "required"),
        ([], "COMMAND", "required"),
    ],
)
def test_bad_usage_exits_2_naming_the_option(
    args: list[str], named: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    console = memory_console()
    assert main(args, console=console) == 2
    err = capsys.readouterr().err
    message = err.splitlines()[-1]
    assert message.startswith("aiohttp-otel")
    assert "error:" in message
    assert named in message
    assert why in message
    assert text_of(console) == ""  # nothing was traced


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "-X",
        "-H",
        "-d",
        "--repeat",
        "--concurrency",
        "--json",
        "--stream",
        "--otlp",
        "--cacert",
        "-k",
    ):
        assert option in out


@pytest.mark.parametrize("command", [[], ["trace"], ["demo"]])
def test_no_help_line_is_longer_than_80_columns(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") > 5
    assert max(len(line) for line in out.splitlines()) <= 80


def test_a_bad_svg_path_stops_the_demo_before_it_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console = memory_console()
    assert main(["demo", "--svg", "/no/such/dir/x.svg"], console=console) == 2
    assert text_of(console) == ""  # no tour was taken
    assert "/no/such/dir" in capsys.readouterr().err


def _run_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process in which ``module`` cannot be imported."""
    script = (
        "import sys\n"
        f"sys.modules[{module!r}] = None\n"
        "from aiohttp_otel.console.cli import main\n"
        f"raise SystemExit(main({list(args)!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        env=child_env(),
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "args", "missing"),
    [
        ("rich", ["demo"], "rich"),
        ("trustme", ["demo"], "trustme"),
        ("opentelemetry.sdk", ["trace", URL], "opentelemetry-sdk"),
    ],
)
def test_a_missing_cli_extra_is_one_clear_line(module: str, args: list[str], missing: str) -> None:
    result = _run_without(module, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert CLI_EXTRA_HINT in lines[0]
    assert f"missing: {missing}" in lines[0]


def test_otlp_without_its_exporter_says_what_to_install() -> None:
    result = _run_without(
        "opentelemetry.exporter.otlp.proto.http", "trace", URL, "--otlp", "http://localhost:4318"
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--otlp" in result.stderr
    assert "opentelemetry-exporter-otlp-proto-http" in result.stderr


def test_the_trace_command_does_not_need_trustme() -> None:
    result = _run_without("trustme", "trace", f"http://localhost:{closed_port()}/")
    assert result.returncode == 1  # it ran, and the request failed
    assert "ClientConnectorError" in result.stdout


# -- the console is a subpackage of its own --------------------------------------------------

SOURCE = Path(__file__).resolve().parent.parent / "src" / "aiohttp_otel"


def _python(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        env=child_env(),
        check=False,
    )


@pytest.mark.parametrize("module", ["rich", "opentelemetry.sdk"])
def test_the_waterfall_without_the_cli_extra_says_which_extra_to_install(module: str) -> None:
    result = _python(
        "import sys\n"
        f"sys.modules[{module!r}] = None\n"
        "try:\n"
        "    import aiohttp_otel.waterfall\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc.name, exc, sep='|')\n"
    )
    assert result.returncode == 0, result.stderr
    kind, name, message = result.stdout.strip().split("|")
    assert kind in ("ImportError", "ModuleNotFoundError")
    assert name.startswith(module)
    assert CLI_EXTRA_HINT in message
    assert "aiohttp_otel.waterfall" in message


def test_the_waterfall_keeps_its_public_import_path() -> None:
    from aiohttp_otel import waterfall
    from aiohttp_otel.console import waterfall as drawing

    assert waterfall.WaterfallSpanExporter is drawing.WaterfallSpanExporter
    assert waterfall.TraceWaterfall is drawing.TraceWaterfall


async def test_tracing_requests_imports_neither_the_console_nor_rich(
    http_server: Server,
) -> None:
    # In a thread: the loopback server answers from this test's event loop meanwhile.
    result = await asyncio.to_thread(
        _python,
        "import asyncio, sys\n"
        "import aiohttp\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from aiohttp_otel import AioHttpClientInstrumentor, create_trace_config\n"
        "async def go():\n"
        "    config = create_trace_config(tracer_provider=TracerProvider())\n"
        "    async with aiohttp.ClientSession(trace_configs=[config]) as session:\n"
        f"        async with session.get({http_server.url()!r}) as response:\n"
        "            await response.read()\n"
        "AioHttpClientInstrumentor().instrument(tracer_provider=TracerProvider())\n"
        "asyncio.run(go())\n"
        "AioHttpClientInstrumentor().uninstrument()\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith(('rich.',"
        " 'aiohttp_otel.console'))))\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_only_the_console_imports_rich_or_the_console() -> None:
    """Read from the source: outside ``console/``, only the public re-export and the
    ``python -m`` entry import it, and nothing but ``console/`` imports rich."""
    import ast

    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE).as_posix()
        if relative.startswith("console/"):
            continue
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add("." * node.level + (node.module or ""))
        assert not any(name == "rich" or name.startswith("rich.") for name in imported), relative
        if relative not in ("waterfall.py", "__main__.py"):
            assert not any("console" in name.split(".") for name in imported), relative


def test_the_script_runs_the_console_tool() -> None:
    from importlib.metadata import entry_points

    scripts = [ep for ep in entry_points(group="console_scripts") if ep.name == "aiohttp-otel"]
    assert [ep.value for ep in scripts] == ["aiohttp_otel.console.cli:main"]
    assert scripts[0].load() is main
