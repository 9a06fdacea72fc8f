"""An aiohttp client app with no tracing code in it, traced by ``opentelemetry-instrument``.

Install the package, the agent and an exporter, configure them with the standard environment
variables (README.md beside this file explains each one; ``otel.env`` holds them), and run the
app under the agent::

    python -m pip install -e . opentelemetry-distro opentelemetry-exporter-otlp  # in a clone
    set -a; . ./otel.env; set +a      # OTLP over HTTP to localhost:4318
    opentelemetry-instrument python app.py

No collector at hand? Print the spans instead::

    OTEL_TRACES_EXPORTER=console OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none \\
        opentelemetry-instrument python app.py

The app starts its own HTTP server on 127.0.0.1 (a free port) and calls it: a request on a new
connection, one that reuses it, a redirect and a 404. ``--rounds N`` repeats that N times
(``0``: until stopped), ``--interval`` seconds apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket

import aiohttp
from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=f"hello {request.query.get('name', 'world')}")


async def moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/hello?name=redirected")


async def start_server() -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/moved", moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # port 0: the OS picks a free one
    await web.SockSite(runner, sock).start()
    return runner, sock.getsockname()[1]


async def one_round(base_url: str) -> None:
    # A plain session: the agent has already made every ClientSession traced.
    async with aiohttp.ClientSession() as session:
        for path in ("/hello", "/hello", "/moved", "/missing"):
            async with session.get(base_url + path) as response:
                print(f"GET {path} -> {response.status} {await response.text()!r}", flush=True)


async def main(rounds: int, interval: float) -> None:
    stop = asyncio.Event()
    # Under docker the app is process 1, which ignores SIGTERM unless it handles it; and a
    # process killed by a signal skips the exit hooks where the agent flushes its last spans.
    with contextlib.suppress(NotImplementedError):  # no add_signal_handler on Windows
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    runner, port = await start_server()
    try:
        done = 0
        while not stop.is_set() and (rounds == 0 or done < rounds):
            await one_round(f"http://localhost:{port}")
            done += 1
            if rounds == 0 or done < rounds:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="0: until stopped (default: 1)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between rounds")
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(arguments.rounds, arguments.interval))
