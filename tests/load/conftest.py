"""Load and leak tests: bounded in requests and in time, and self-stopping.

The heavy variants carry the ``soak`` marker (registered in ``pyproject.toml``). They are
skipped unless asked for: ``pytest -m soak`` (or any ``-m``
expression naming ``soak``), or ``AIOHTTP_OTEL_SOAK=1`` in the environment, which the py313
tox env sets, so that the README's test command (and CI) runs them once.
"""

from __future__ import annotations

import os

import pytest

SOAK_ENV = "AIOHTTP_OTEL_SOAK"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked = "soak" in (config.option.markexpr or "") or os.environ.get(SOAK_ENV) == "1"
    if asked:
        return
    skip = pytest.mark.skip(reason=f"soak variant: run with -m soak or {SOAK_ENV}=1")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)
