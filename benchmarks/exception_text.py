"""What the exception event's text costs per failed request: formatted every time, or cached.

    python benchmarks/exception_text.py             # 2,000 failures per variant, 5 rounds
    python benchmarks/exception_text.py --n 500

One real failure is made first: a GET to a closed loopback port, so the exception is aiohttp's
``ClientConnectorError`` with its ``ConnectionRefusedError`` cause and their real tracebacks,
the shape every request fails with in an outage. Then, on that exception, in a tight loop:

* ``format+scrub``: what the request did before the cache, ``traceback.format_exception``
  and the redaction of the message and of the whole text;
* ``cached (hit)``: ``Instrumentation.describe_exception``, the thousandth identical failure;
* ``cached (miss)``: the same with an empty cache each time, the first failure at a site.

CPU time per call (µs), median over rounds. Then the cache's memory: what it holds (measured
with tracemalloc) after 256, 1,000 and 10,000 failures at distinct code locations, on one
trace config; it keeps the 256 most recent sites, so it stops growing at the 256th.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import statistics
import time
import traceback
import tracemalloc

import aiohttp

from aiohttp_otel import create_trace_config


async def a_refused_failure() -> BaseException:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    url = f"http://127.0.0.1:{port}/orders?sig=s3cr3t"
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(url) as response:
                await response.read()
        except aiohttp.ClientConnectorError as exc:
            return exc
    raise SystemExit("the closed port answered")


def distinct_failures(count: int) -> list[BaseException]:
    """``count`` failures, each raised at its own code location (a file name of its own)."""
    failures: list[BaseException] = []
    for i in range(count):
        code = compile("def fail():\n    raise ValueError('x')\n", f"<site-{i}>", "exec")
        namespace: dict[str, object] = {}
        exec(code, namespace)
        try:
            namespace["fail"]()  # type: ignore[operator]
        except ValueError as exc:
            failures.append(exc)
    return failures


def cache_memory(counts: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """``(failures so far, sites cached, bytes the cache holds)`` after each of ``counts``
    failures at distinct code locations, on one trace config."""
    inst = create_trace_config().instrumentation  # type: ignore[attr-defined]
    failures = distinct_failures(max(counts))
    out = []
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        done = 0
        for count in counts:
            for exc in failures[done:count]:
                inst.describe_exception(exc, ())
            done = count
            gc.collect()  # what is garbage is not held
            held = tracemalloc.get_traced_memory()[0] - before
            out.append((count, len(inst._exception_text), held))
    finally:
        tracemalloc.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    exc = asyncio.run(a_refused_failure())
    inst = create_trace_config().instrumentation  # type: ignore[attr-defined]
    urls = ["http://127.0.0.1/orders?sig=s3cr3t"]

    def format_and_scrub() -> None:
        inst.scrub(str(exc), urls)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        inst.scrub(text, urls)

    def cached_hit() -> None:
        inst.describe_exception(exc, urls)

    def cached_miss() -> None:
        inst._exception_text._cache.clear()
        inst.describe_exception(exc, urls)

    variants = {
        "format+scrub": format_and_scrub,
        "cached (hit)": cached_hit,
        "cached (miss)": cached_miss,
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            step()  # warm: linecache, the cache itself
            start = time.process_time()
            for _ in range(args.n):
                step()
            results[name].append((time.process_time() - start) / args.n)
    frames = len(traceback.extract_tb(exc.__traceback__))
    print(f"{type(exc).__name__} with its cause; {frames} frames in its own traceback")
    for name, values in results.items():
        print(f"  {name:14s} {statistics.median(values) * 1e6:8.1f} µs per failure")
    print("the cache after failures at distinct code locations")
    for count, sites, held in cache_memory((256, 1_000, 10_000)):
        print(f"  {count:6d} distinct: {sites:4d} sites cached, {held / 1024:7.1f} KiB held")


if __name__ == "__main__":
    main()
