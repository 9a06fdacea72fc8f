"""Smoke-test the built wheel and sdist, each installed in a clean virtualenv.

Usage::

    python -m build --outdir DIST_DIR .
    python tests/packaging/smoke.py DIST_DIR

For each artifact: check what the archive holds, create a fresh virtualenv (with ``uv`` when it
is on PATH, else ``python -m venv``), install the artifact and the OpenTelemetry SDK, then run
``installed_check.py`` with that virtualenv's Python: it imports the package from there, checks
its version against the file name and the installed metadata, finds ``py.typed`` and the
``opentelemetry_instrumentor`` entry point, and makes one real traced request to an aiohttp
server it starts on 127.0.0.1. The wheel is installed with the ``cli`` extra, and its
``aiohttp-otel --help`` must work.

Every subprocess has a time limit. Any failure ends the run with a message and exit status 1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PROJECT = "aiohttp-otel"
IMPORT_NAME = "aiohttp_otel"
VENV_TIMEOUT_S = 300
# Installing the sdist builds it first, which fetches the build backend.
INSTALL_TIMEOUT_S = 900
RUN_TIMEOUT_S = 120

_WHEEL_NAME = re.compile(rf"^{IMPORT_NAME}-(?P<version>[^-]+)-.+\.whl$")
_SDIST_NAME = re.compile(rf"^{IMPORT_NAME}-(?P<version>.+)\.tar\.gz$")

#: Run by the virtualenv's Python, with ``-I`` so that nothing of this checkout is importable.
IN_VENV_SCRIPT = Path(__file__).with_name("installed_check.py")


class SmokeFailure(Exception):
    """A check failed; the message says which and why."""


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: python {argv[0]} DIST_DIR", file=sys.stderr)
        return 2
    try:
        wheel, sdist, version = find_artifacts(Path(argv[1]))
        check_sdist_contents(sdist, version)
        check_wheel_contents(wheel, version)
        with tempfile.TemporaryDirectory(prefix="aiohttp-otel-smoke-") as scratch:
            workdir = Path(scratch)
            smoke_install(wheel, version, workdir / "wheel", extras="[cli]")
            smoke_install(sdist, version, workdir / "sdist", extras="")
    except SmokeFailure as failure:
        print(f"smoke: FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"smoke: OK: {wheel.name} and {sdist.name}")
    return 0


def find_artifacts(dist_dir: Path) -> tuple[Path, Path, str]:
    """The one wheel and the one sdist in ``dist_dir``, and the version they both carry."""
    if not dist_dir.is_dir():
        raise SmokeFailure(f"{dist_dir} is not a directory")
    wheels = [p for p in dist_dir.iterdir() if _WHEEL_NAME.match(p.name)]
    sdists = [p for p in dist_dir.iterdir() if _SDIST_NAME.match(p.name)]
    if len(wheels) != 1 or len(sdists) != 1:
        raise SmokeFailure(
            f"expected one wheel and one sdist in {dist_dir}, found "
            f"{sorted(p.name for p in wheels + sdists)}"
        )
    wheel, sdist = wheels[0], sdists[0]
    wheel_version = _version_of(_WHEEL_NAME, wheel)
    sdist_version = _version_of(_SDIST_NAME, sdist)
    if wheel_version != sdist_version:
        raise SmokeFailure(f"the wheel is version {wheel_version}, the sdist {sdist_version}")
    print(f"smoke: found {wheel.name} and {sdist.name}")
    return wheel, sdist, wheel_version


def _version_of(pattern: re.Pattern[str], artifact: Path) -> str:
    match = pattern.match(artifact.name)
    assert match is not None
    return match["version"]


def check_sdist_contents(sdist: Path, version: str) -> None:
    """The sdist must hold what is needed to rebuild, test and redistribute the package."""
    root = f"{IMPORT_NAME}-{version}/"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
        pkg_info = archive.extractfile(root + "PKG-INFO")
        metadata = pkg_info.read().decode() if pkg_info is not None else ""
    required_files = [
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "pyproject.toml",
        f"src/{IMPORT_NAME}/__init__.py",
        f"src/{IMPORT_NAME}/_version.py",
        f"src/{IMPORT_NAME}/py.typed",
        "tests/conftest.py",
    ]
    missing = [name for name in required_files if root + name not in names]
    for folder in ("src/", "tests/", "docs/"):
        if not any(name.startswith(root + folder) for name in names):
            missing.append(folder)
    if missing:
        raise SmokeFailure(f"{sdist.name} lacks {', '.join(missing)}")
    if f"\nVersion: {version}\n" not in metadata:
        raise SmokeFailure(f"{sdist.name}: PKG-INFO does not say Version: {version}")
    print(f"smoke: {sdist.name} holds LICENSE, README.md, CHANGELOG.md, src/, tests/ and docs/")


def check_wheel_contents(wheel: Path, version: str) -> None:
    """The wheel must carry the license, the typing marker and the entry point."""
    dist_info = f"{IMPORT_NAME}-{version}.dist-info/"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = (
            archive.read(dist_info + "entry_points.txt").decode()
            if dist_info + "entry_points.txt" in names
            else ""
        )
    problems = []
    if f"{IMPORT_NAME}/py.typed" not in names:
        problems.append("py.typed")
    if not any(name.startswith(dist_info + "licenses/LICENSE") for name in names):
        problems.append("the LICENSE file (in .dist-info/licenses/)")
    if "[opentelemetry_instrumentor]" not in entry_points:
        problems.append("the opentelemetry_instrumentor entry point")
    if "[console_scripts]" not in entry_points:
        problems.append("the aiohttp-otel console script")
    if problems:
        raise SmokeFailure(f"{wheel.name} lacks {', '.join(problems)}")
    print(f"smoke: {wheel.name} holds py.typed, LICENSE and its entry points")


def smoke_install(artifact: Path, version: str, venv_dir: Path, extras: str) -> None:
    """Install ``artifact`` in a new virtualenv and run the smoke script there."""
    uv = shutil.which("uv")
    python = make_venv(venv_dir, uv)
    requirement = f"{PROJECT}{extras} @ {artifact.resolve().as_uri()}"
    install(python, [requirement, "opentelemetry-sdk"], uv, f"installing {artifact.name}")
    print(f"smoke: installed {artifact.name}{extras} in a clean venv")

    done = run(
        [str(python), "-I", str(IN_VENV_SCRIPT), version, str(venv_dir)],
        RUN_TIMEOUT_S,
        f"the smoke script for {artifact.name}",
        cwd=venv_dir.parent,
    )
    print(f"smoke: {done.stdout.strip()}")

    if extras == "[cli]":
        console_script = python.parent / ("aiohttp-otel.exe" if os.name == "nt" else "aiohttp-otel")
        helped = run(
            [str(console_script), "--help"],
            RUN_TIMEOUT_S,
            f"aiohttp-otel --help (from {artifact.name}[cli])",
            cwd=venv_dir.parent,
        )
        if "usage" not in helped.stdout.lower():
            raise SmokeFailure(f"aiohttp-otel --help printed no usage:\n{helped.stdout}")
        print("smoke: aiohttp-otel --help works")
        # The README's demo, from the installed package: servers, TLS and the whole tour.
        toured = run(
            [str(console_script), "demo"],
            RUN_TIMEOUT_S,
            f"aiohttp-otel demo (from {artifact.name}[cli])",
            cwd=venv_dir.parent,
            # Wide enough for the phases' full names (at 80 columns they take short ones).
            env={"COLUMNS": "120"},
        )
        for needed in ("TLS client handshake", "HTTP wait_for_connection", "connection refused"):
            if needed not in toured.stdout:
                raise SmokeFailure(f"aiohttp-otel demo printed no {needed!r}:\n{toured.stdout}")
        print("smoke: aiohttp-otel demo draws its tour")


def make_venv(venv_dir: Path, uv: str | None) -> Path:
    """A new, empty virtualenv for the Python running this script; its interpreter's path."""
    if uv is not None:
        command = [uv, "venv", "--quiet", "--python", sys.executable, str(venv_dir)]
    else:
        command = [sys.executable, "-m", "venv", str(venv_dir)]
    run(command, VENV_TIMEOUT_S, f"creating the venv {venv_dir.name}")
    scripts = venv_dir / ("Scripts" if os.name == "nt" else "bin")
    return scripts / ("python.exe" if os.name == "nt" else "python")


def install(python: Path, requirements: list[str], uv: str | None, what: str) -> None:
    if uv is not None:
        command = [uv, "pip", "install", "--quiet", "--python", str(python), *requirements]
    else:
        command = [str(python), "-m", "pip", "install", "--quiet", *requirements]
    run(command, INSTALL_TIMEOUT_S, what)


def run(
    command: list[str],
    timeout_s: float,
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with a time limit, outside any active virtualenv; fail loudly."""
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**_clean_environment(), **(env or {})},
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SmokeFailure(f"{what}: no answer after {timeout_s:g} s") from exc
    except OSError as exc:
        raise SmokeFailure(f"{what}: could not run {command[0]}: {exc}") from exc
    if done.returncode != 0:
        raise SmokeFailure(
            f"{what} exited with status {done.returncode}\n"
            f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
        )
    return done


def _clean_environment() -> dict[str, str]:
    # The calling environment's venv, import path and OpenTelemetry settings must not leak in.
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PYTHON")
    return {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith("OTEL_")
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv))
