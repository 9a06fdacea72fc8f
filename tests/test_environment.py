"""The tox env is what it says it is: the loop, the parser and the dependency floors.

A matrix env that silently ran on the default loop or parser, or on newer packages than the
floors it names, would prove nothing; these tests fail such an env.
"""

from __future__ import annotations

import asyncio
import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import http_parser
from packaging.version import Version

from .conftest import LOOP, installed

ROOT = Path(__file__).parent.parent


async def test_the_loop_is_the_one_the_env_asks_for() -> None:
    module = type(asyncio.get_running_loop()).__module__
    assert module.split(".")[0] == LOOP


@pytest.mark.skipif(not os.environ.get("AIOHTTP_NO_EXTENSIONS"), reason="only without extensions")
def test_the_pure_python_parser_is_used_without_extensions() -> None:
    assert http_parser.HttpResponseParser is http_parser.HttpResponseParserPy


def lower_bounds() -> dict[str, Version]:
    """``{distribution: lower bound}`` of pyproject.toml's ``dependencies`` (Python 3.10 has
    no TOML reader, and this list is one string per line)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = text[text.index("\ndependencies = [") : text.index("\n]", text.index("\ndependencies"))]
    bounds = {}
    for name, bound in re.findall(r'^    "([\w.-]+)>=([\w.]+)[",]', block, re.MULTILINE):
        bounds[name] = Version(bound)
    return bounds


def floor_pins() -> dict[str, Version]:
    """``{distribution: version}`` pinned by the floor env of tox.ini."""
    config = configparser.ConfigParser()
    config.read(ROOT / "tox.ini")
    pins = {}
    for line in config["testenv:floor"]["deps"].split():
        name, version = line.split("==")
        pins[name] = Version(version)
    return pins


def test_pyproject_and_tox_agree_on_every_floor() -> None:
    """The floor env pins exactly the lower bounds (the SDK too: it is the test extra's)."""
    pins = floor_pins()
    assert pins.pop("opentelemetry-sdk") == lower_bounds()["opentelemetry-api"]
    assert pins == lower_bounds()


@pytest.mark.skipif(not os.environ.get("AIOHTTP_OTEL_FLOOR"), reason="only in the floor env")
@pytest.mark.parametrize("distribution", sorted(lower_bounds()))
def test_the_floor_env_runs_on_the_lower_bounds(distribution: str) -> None:
    assert installed(distribution) == lower_bounds()[distribution]


def test_importing_the_package_needs_no_pkg_resources() -> None:
    """setuptools 82 removed ``pkg_resources``; a fresh venv may have no setuptools at all."""
    blocked = "import sys; sys.modules['pkg_resources'] = None; import aiohttp_otel"
    result = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
