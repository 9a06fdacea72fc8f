"""``python -m aiohttp_otel``: the console tool, as the ``aiohttp-otel`` script."""

from .console.cli import main

raise SystemExit(main())
