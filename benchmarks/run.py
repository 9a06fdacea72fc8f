"""What tracing costs per request: aiohttp-otel against the bare client and the official
instrumentation, on the same workloads, in one run.

    python -m pip install -e . opentelemetry-sdk opentelemetry-instrumentation-aiohttp-client
    python benchmarks/run.py            # every workload, 7 rounds
    python benchmarks/run.py --quick    # fewer requests and rounds, for a smoke check
    python benchmarks/run.py --workload keepalive --rounds 11

The server runs in a child process on 127.0.0.1, so the client's numbers are its own. Each
round runs every mode once, in turn (A B C ... A B C ...), so that a machine getting faster or
slower affects all modes alike; the table gives the median over rounds and the spread (the
interquartile range). Two clocks are kept: wall time, and the client process's CPU time, which
other load on the machine disturbs much less. Peak memory is measured in a separate pass with
tracemalloc (which slows everything down, so it is never mixed with the timings).

Modes: ``bare`` (no TraceConfig), ``official`` (opentelemetry-instrumentation-aiohttp-client,
when installed), ``ours`` (default options), ``ours-events`` (``phases="events"``),
``ours-off`` (``phases="off"``) — all with the SDK, a null span exporter and an in-memory
metric reader — and ``ours-nosdk`` (no SDK: the API's no-op tracer and meter), compared with
``official-nosdk``. ``floor`` and ``floor-nosdk`` are the least any instrumentation can do (one
span, its traceparent, one duration measurement; see ``floor.py``): what the OpenTelemetry API
and SDK cost by themselves. Every row shows the floor's overhead in the same workload beside
its own, and its ratio to it.

Workloads: keep-alive, ``sampled-out`` (the keep-alive GET under a ``ParentBased(ALWAYS_OFF)``
sampler: spans are not recorded, metrics are), ``refused`` (every request to a closed loopback
port: the cost of a failed request, as in an outage), a new connection per request, a 10 MB
streamed body, 1,000 concurrent requests through ``limit=100`` and 1,000 short-lived sessions.
The no-SDK modes are left out of ``sampled-out``, where they would repeat the keep-alive rows.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import socket
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

BIG_BODY = 10 * 1024 * 1024


# -- the server (child process) ----------------------------------------------------------------


def serve(port: int) -> None:
    from aiohttp import web

    small = b"x" * 256
    chunk = b"y" * 65536

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=small)

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = BIG_BODY
        await response.prepare(request)
        for _ in range(BIG_BODY // len(chunk)):
            await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/big", big)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server() -> tuple[int, multiprocessing.Process]:
    """The benchmark server in a child process, once it accepts connections."""
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port,), daemon=True)
    server.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return port, server
        except OSError:
            if time.monotonic() > deadline:
                server.terminate()
                raise SystemExit("the benchmark server did not start") from None
            time.sleep(0.05)


# -- modes -------------------------------------------------------------------------------------


def sdk_providers(sampled_out: bool = False) -> dict[str, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

    class NullExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    # ParentBased(ALWAYS_OFF): a request whose trace is not sampled, as most are in production.
    tracer_provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF if sampled_out else ALWAYS_ON))
    tracer_provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return {"tracer_provider": tracer_provider, "meter_provider": meter_provider}


Modes = dict[str, Callable[[], list[aiohttp.TraceConfig]]]


def make_modes(sampled_out: bool = False) -> Modes:
    """Every mode, with an SDK that samples every trace or none; the no-SDK modes only beside
    the sampling one (without an SDK nothing is sampled anyway)."""
    from floor import floor_trace_config

    from aiohttp_otel import create_trace_config

    sdk = sdk_providers(sampled_out)
    modes: dict[str, Callable[[], list[aiohttp.TraceConfig]]] = {"bare": list}
    try:
        from opentelemetry.instrumentation.aiohttp_client import (
            create_trace_config as official,
        )
    except ImportError:
        print("(official instrumentation not installed: its rows are skipped)", file=sys.stderr)
        official = None
    # One trace config per mode, built once, as an application does. No provider given and
    # none set globally means the API's no-ops: the "-nosdk" modes.
    if official is not None:
        official_sdk = official(**sdk)
        modes["official"] = lambda: [official_sdk]
    floor = floor_trace_config(**sdk)
    ours = create_trace_config(**sdk)
    events = create_trace_config(phases="events", **sdk)
    off = create_trace_config(phases="off", **sdk)
    modes["floor"] = lambda: [floor]
    modes["ours"] = lambda: [ours]
    modes["ours-events"] = lambda: [events]
    modes["ours-off"] = lambda: [off]
    if sampled_out:
        return modes
    if official is not None:
        official_nosdk = official()
        modes["official-nosdk"] = lambda: [official_nosdk]
    floor_nosdk = floor_trace_config()
    nosdk = create_trace_config()
    modes["floor-nosdk"] = lambda: [floor_nosdk]
    modes["ours-nosdk"] = lambda: [nosdk]
    return modes


# -- workloads: each returns the number of requests it made ------------------------------------

Workload = Callable[[str, Callable[[], list[aiohttp.TraceConfig]], int], Awaitable[int]]

#: A loopback port nothing listens on (bound once, then released), for the refused workload.
REFUSED_PORT = 0


async def keepalive(base: str, configs: Callable[[], list[aiohttp.TraceConfig]], n: int) -> int:
    async with aiohttp.ClientSession(trace_configs=configs()) as session:
        for _ in range(n):
            async with session.get(f"{base}/hello") as response:
                await response.read()
    return n


async def refused(base: str, configs: Callable[[], list[aiohttp.TraceConfig]], n: int) -> int:
    url = f"http://127.0.0.1:{REFUSED_PORT}/hello"
    async with aiohttp.ClientSession(trace_configs=configs()) as session:
        for _ in range(n):
            try:
                async with session.get(url) as response:
                    await response.read()
            except aiohttp.ClientConnectorError:
                continue
            raise SystemExit(f"port {REFUSED_PORT} answered: the refused workload needs it closed")
    return n


async def new_connection(
    base: str, configs: Callable[[], list[aiohttp.TraceConfig]], n: int
) -> int:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, trace_configs=configs()) as session:
        for _ in range(n):
            async with session.get(f"{base}/hello") as response:
                await response.read()
    return n


async def streamed(base: str, configs: Callable[[], list[aiohttp.TraceConfig]], n: int) -> int:
    async with aiohttp.ClientSession(trace_configs=configs()) as session:
        for _ in range(n):
            async with session.get(f"{base}/big") as response:
                async for _chunk in response.content.iter_chunked(65536):
                    pass
    return n


async def concurrent(base: str, configs: Callable[[], list[aiohttp.TraceConfig]], n: int) -> int:
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector, trace_configs=configs()) as session:

        async def one() -> None:
            async with session.get(f"{base}/hello") as response:
                await response.read()

        await asyncio.gather(*(one() for _ in range(n)))
    return n


async def sessions(base: str, configs: Callable[[], list[aiohttp.TraceConfig]], n: int) -> int:
    for _ in range(n):
        session = aiohttp.ClientSession(trace_configs=configs())
        async with session, session.get(f"{base}/hello") as response:
            await response.read()
    return n


@dataclass
class Spec:
    run: Workload
    requests: int
    quick: int
    note: str
    sampled_out: bool = False


WORKLOADS: dict[str, Spec] = {
    "keepalive": Spec(keepalive, 1000, 200, "keep-alive GET, 256 B body"),
    "sampled-out": Spec(
        keepalive, 1000, 200, "keep-alive GET, trace not sampled (ParentBased(ALWAYS_OFF))", True
    ),
    "refused": Spec(refused, 1000, 200, "every request refused (a closed loopback port)"),
    "new-connection": Spec(new_connection, 500, 100, "a new connection per GET (force_close)"),
    "streamed-10MB": Spec(streamed, 4, 2, "10 MB body read in 64 KiB chunks (events capped)"),
    "concurrent": Spec(concurrent, 1000, 300, "1,000 concurrent GETs through limit=100"),
    "sessions": Spec(sessions, 1000, 200, "1,000 short-lived sessions, one GET each"),
}


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)  # seconds per request
    cpu: list[float] = field(default_factory=list)
    peak: int = 0  # bytes


def timed(spec: Spec, base: str, configs: Any, n: int) -> tuple[float, float]:
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    done = asyncio.run(spec.run(base, configs, n))
    return (time.perf_counter() - wall0) / done, (time.process_time() - cpu0) / done


def peak_memory(spec: Spec, base: str, configs: Any, n: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        asyncio.run(spec.run(base, configs, n))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def spread(values: list[float]) -> float:
    if len(values) < 4:
        return max(values) - min(values)
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def report(name: str, spec: Spec, results: dict[str, Samples], clock: str) -> None:
    def median(mode: str) -> float:
        return statistics.median(getattr(results[mode], clock))

    bare = median("bare")
    # Each mode is compared with the official package and the floor under the same SDK setting.
    official = {
        suffix: median(f"official{suffix}") - bare
        for suffix in ("", "-nosdk")
        if f"official{suffix}" in results
    }
    floor = {
        suffix: median(f"floor{suffix}") - bare
        for suffix in ("", "-nosdk")
        if f"floor{suffix}" in results
    }
    print(
        f"\n{name}: {spec.note}  [{clock} time per request; median of "
        f"{len(results['bare'].wall)} rounds, ± interquartile range]"
    )
    print(
        f"  {'mode':12s} {'µs/request':>12s} {'± IQR':>8s} {'overhead µs':>12s} "
        f"{'x bare':>7s} {'x official':>11s} {'floor µs':>9s} {'x floor':>8s} {'peak MiB':>9s}"
    )
    for mode, samples in results.items():
        values = getattr(samples, clock)
        med = statistics.median(values)
        overhead = med - bare
        suffix = "-nosdk" if mode.endswith("-nosdk") else ""
        theirs = official.get(suffix)
        vs_official = f"{overhead / theirs:11.2f}" if theirs and mode != "bare" else f"{'':>11s}"
        least = floor.get(suffix)
        floor_us = f"{least * 1e6:9.1f}" if least is not None else f"{'':>9s}"
        vs_floor = f"{overhead / least:8.2f}" if least and mode != "bare" else f"{'':>8s}"
        print(
            f"  {mode:12s} {med * 1e6:12.1f} {spread(values) * 1e6:8.1f} {overhead * 1e6:12.1f} "
            f"{med / bare:7.3f} {vs_official} {floor_us} {vs_floor} {samples.peak / 2**20:9.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", choices=sorted(WORKLOADS), action="append")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer requests and 3 rounds")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    chosen = args.workload or list(WORKLOADS)

    port, server = start_server()
    base = f"http://localhost:{port}"
    global REFUSED_PORT
    REFUSED_PORT = free_port()
    print(
        f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, "
        f"{os.cpu_count()} CPUs; rounds={rounds}"
    )
    all_modes = {False: make_modes(), True: make_modes(sampled_out=True)}
    try:
        for name in chosen:
            spec = WORKLOADS[name]
            modes = all_modes[spec.sampled_out]
            n = spec.quick if args.quick else spec.requests
            results = {mode: Samples() for mode in modes}
            for configs in modes.values():  # warm-up: caches, pools, imports
                timed(spec, base, configs, max(1, n // 10))
            for _ in range(rounds):
                for mode, configs in modes.items():
                    wall, cpu = timed(spec, base, configs, n)
                    results[mode].wall.append(wall)
                    results[mode].cpu.append(cpu)
            if not args.no_memory:
                for mode, configs in modes.items():
                    results[mode].peak = peak_memory(spec, base, configs, n)
            report(name, spec, results, "cpu")
            report(name, spec, results, "wall")
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
