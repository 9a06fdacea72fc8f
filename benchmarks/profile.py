"""Where a traced request's time goes: aiohttp, the OpenTelemetry SDK, or this package's code.

    python -m pip install -e . opentelemetry-sdk opentelemetry-instrumentation-aiohttp-client py-spy
    python benchmarks/profile.py --workload keepalive
    python benchmarks/profile.py --workload concurrent --mode ours-events --top 20
    python benchmarks/profile.py --workload sampled-out --mode floor

One workload of ``run.py`` runs in a loop under the sampling profiler py-spy (which pauses the
process to read a consistent stack, and needs no change to the code it profiles). Every sample is
given to one owner, by walking its stack from the innermost frame outwards:

* **the instrumentation's own code**: the first frame of a package (aiohttp or the
  instrumentation) is the instrumentation's, and nothing between it and the innermost frame is
  the SDK's (yarl, the standard library and the like count for the code that called them);
* **OpenTelemetry, called by the instrumentation**: the first package frame is the
  instrumentation's and an ``opentelemetry`` frame (the API, the SDK, the official package's
  helpers) is below it; the row is named after the function it called;
* **aiohttp and the event loop**: the first package frame is aiohttp's (with aiosignal,
  aiohappyeyeballs and the event loop), or there is none (the benchmark's own loop).

The instrumentation is this package for the ``ours`` modes, ``benchmarks/floor.py`` for
``floor`` and ``opentelemetry-instrumentation-aiohttp-client`` for ``official``, so the three
can be set side by side. The shares come from the profile; the microseconds from the same loop
run again without the profiler (the median of ``--rounds`` runs, in turns with bare), so that
its slowdown does not count. ``bare`` is the same loop with no TraceConfig.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # the workloads, modes and server of the benchmark

# Packages whose frames own a sample; anything else counts for the code that called it.
_AIOHTTP = ("/aiohttp/", "/aiosignal/", "/aiohappyeyeballs/", "/asyncio/")
_SDK = "/opentelemetry/"
#: Whose code is "ours" in each kind of mode: this package's, the floor's, the official one's.
_INSTRUMENTATION = {
    "ours": "/aiohttp_otel/",
    "floor": os.path.join("benchmarks", "floor.py"),
    "official": "/opentelemetry/instrumentation/",
}


def instrumentation_of(mode: str) -> str:
    """The path that marks the frames of the instrumentation a mode runs."""
    return _INSTRUMENTATION[mode.split("-")[0]] if mode != "bare" else _INSTRUMENTATION["ours"]


_RESULT = "µs per request: "
#: Samples of the workload are inside ``asyncio.run``; the others are the process starting
#: (imports, the trace configs being made).
_WORKLOADS = os.path.join("asyncio", "runners.py")
_FRAME = re.compile(r"(?P<function>\S+) \((?P<file>[^:]*):\d+\)")


def child(workload: str, mode: str, requests: int, port: int) -> None:
    """Run the loop and print its CPU time per request (the profiled process)."""
    spec = run.WORKLOADS[workload]
    run.REFUSED_PORT = run.free_port()
    modes = run.make_modes(sampled_out=spec.sampled_out)
    configs = modes[mode]
    base = f"http://localhost:{port}"
    asyncio.run(spec.run(base, configs, max(1, requests // 10)))  # warm-up
    cpu0 = time.process_time()
    done = 0
    while done < requests:
        done += asyncio.run(spec.run(base, configs, min(spec.requests, requests - done)))
    print(f"{_RESULT}{(time.process_time() - cpu0) / done * 1e6:.2f}")


def _owner(frames: list[str], ours: str) -> tuple[str, str]:
    """``(owner, row)`` of one sample's stack (outermost frame first); ``ours`` marks the
    instrumentation's frames."""
    sdk_callee = None
    for frame in reversed(frames):
        match = _FRAME.match(frame)
        if match is None:
            continue
        path = match["file"]
        if ours in path:
            if sdk_callee is not None:
                return "sdk", sdk_callee
            return "ours", match["function"]
        if _SDK in path:
            sdk_callee = match["function"]  # the outermost SDK frame below ours wins
        elif any(package in path for package in _AIOHTTP):
            return "aiohttp", ""
    return "aiohttp", ""


def attribute(raw_path: str, ours: str) -> tuple[int, dict[str, collections.Counter[str]]]:
    """Samples per owner and row, from py-spy's raw (collapsed stack) output."""
    owners: dict[str, collections.Counter[str]] = {
        "aiohttp": collections.Counter(),
        "sdk": collections.Counter(),
        "ours": collections.Counter(),
    }
    total = 0
    with open(raw_path) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            if not any(_WORKLOADS in frame for frame in frames):
                continue  # start-up
            samples = int(count)
            total += samples
            owner, row = _owner(frames, ours)
            owners[owner][row] += samples
    return total, owners


def loop_time(args: argparse.Namespace, port: int, mode: str, profiler: list[str]) -> float:
    command = [
        *profiler,
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--workload",
        args.workload,
        "--mode",
        mode,
        "--requests",
        str(args.requests),
        "--port",
        str(port),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
    # py-spy prints its own lines on the same stdout.
    results = [line for line in done.stdout.splitlines() if line.startswith(_RESULT)]
    return float(results[-1][len(_RESULT) :])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", choices=sorted(run.WORKLOADS), default="keepalive")
    parser.add_argument("--mode", default="ours", help="a mode of run.py (default: ours)")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=1000, help="samples per second")
    parser.add_argument("--top", type=int, default=12, help="rows per owner")
    parser.add_argument(
        "--rounds", type=int, default=3, help="unprofiled runs of the mode and of bare, in turns"
    )
    parser.add_argument("--raw", help="also keep py-spy's samples in this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.workload, args.mode, args.requests, args.port)
        return
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("profile.py needs py-spy: python -m pip install py-spy")

    port, server = run.start_server()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            raw = os.path.join(scratch, "samples.txt")
            record = [py_spy, "record", "--full-filenames", "-r", str(args.rate)]
            loop_time(args, port, args.mode, [*record, "-f", "raw", "-o", raw, "--"])
            total, owners = attribute(raw, instrumentation_of(args.mode))
            if args.raw:
                shutil.copyfile(raw, args.raw)
        # In turns, so that a machine getting faster or slower moves both alike.
        times: dict[str, list[float]] = {args.mode: [], "bare": []}
        for _ in range(args.rounds):
            for mode, spent in times.items():
                spent.append(loop_time(args, port, mode, []))
        per_request = statistics.median(times[args.mode])
        bare = statistics.median(times["bare"])
    finally:
        server.terminate()
        server.join(5)

    def us(samples: int) -> float:
        return samples / total * per_request if total else 0.0

    spec = run.WORKLOADS[args.workload]
    print(
        f"{args.workload} ({spec.note}), mode {args.mode}: {per_request:.1f} µs of CPU per "
        f"request, bare {bare:.1f} µs, overhead {per_request - bare:.1f} µs; {total} samples"
    )
    titles = {
        "aiohttp": "aiohttp and the event loop",
        "sdk": "OpenTelemetry, called by the instrumentation",
        "ours": "the instrumentation's own code",
    }
    for owner, rows in owners.items():
        spent = us(sum(rows.values()))
        if owner == "aiohttp":
            # Of the overhead, this part is aiohttp dispatching the signals, and every line
            # of it running slower for the caches the telemetry evicts.
            print(f"  {titles[owner]:44s} {spent:7.1f} µs  ({spent - bare:+.1f} over bare)")
            continue
        print(f"  {titles[owner]:44s} {spent:7.1f} µs")
        for row, samples in rows.most_common(args.top):
            print(f"      {row:40s} {us(samples):7.1f}")


if __name__ == "__main__":
    main()
