"""The console tool: the ``aiohttp-otel`` command, its waterfall drawing and OTLP/JSON output.

Kept apart from the instrumentation, which never imports it; only this subpackage imports
rich. The drawing needs the ``cli`` extra (``pip install "aiohttp-otel[cli]"``);
:mod:`aiohttp_otel.console.cli` itself imports without it, to say so in one line.
"""
