"""The package's shape: imports form a line (no cycle), and the probes of aiohttp's internals
are all present on the installed aiohttp."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import aiohttp_otel
from aiohttp_otel import _diagnostics, _probes

PACKAGE = Path(aiohttp_otel.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """The package modules a module imports when it runs (``TYPE_CHECKING`` blocks aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                if target.split(".")[0] == "aiohttp_otel":
                    if node.module:  # `from . import _semconv` imports that module only
                        found.add(target)
                    for alias in node.names:  # a name may be a submodule
                        found.add(f"{target}.{alias.name}")
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("aiohttp_otel"))
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and not isinstance(node, ast.FunctionDef):
                    visit([n for n in inner if isinstance(n, ast.stmt)])

    visit(tree.body)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {t for t in runtime_imports(path) if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = walk(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = walk(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert "aiohttp_otel._request" in graph  # the graph was read
    assert find_cycle(graph) is None


def test_the_cycle_check_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_probes_depend_on_their_protocol_only() -> None:
    """Code that patches aiohttp must not import the code that records."""
    graph = import_graph()
    allowed = {"aiohttp_otel._diagnostics", "aiohttp_otel._semconv"}
    for name, targets in graph.items():
        if name.startswith("aiohttp_otel._probes"):
            outside = {t for t in targets if not t.startswith("aiohttp_otel._probes")}
            assert outside <= allowed, (name, outside)


def test_every_probed_internal_is_present_on_this_aiohttp() -> None:
    assert _probes.missing_internals() == []


def test_a_missing_internal_is_named_in_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        _probes,
        "PROBED",
        (
            *_probes.PROBED,
            ("aiohttp.connector", "BaseConnector._no_such_method"),
            ("aiohttp.no_such_module", "Thing"),
        ),
    )
    _diagnostics.reset_for_tests()
    with caplog.at_level(logging.WARNING, logger="aiohttp_otel"):
        _probes.check_internals()
        _probes.check_internals()
    warnings = [r for r in caplog.records if r.name == "aiohttp_otel"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "aiohttp.connector.BaseConnector._no_such_method" in message
    assert "aiohttp.no_such_module.Thing" in message


def imports_of(path: Path) -> set[str]:
    """Every top-level module a file imports, anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_console_imports_rich_and_the_instrumentation_never_imports_the_console() -> None:
    graph = import_graph()
    console = "aiohttp_otel.console"
    # The public waterfall path re-exports the console's exporter: it is part of the console.
    console_side = {name for name in graph if name.startswith(console)} | {
        "aiohttp_otel.waterfall",
        "aiohttp_otel.__main__",
    }
    assert console in graph
    for name, targets in graph.items():
        if name not in console_side:
            assert not {t for t in targets if t.startswith(console)}, name
    for path in PACKAGE.rglob("*.py"):
        if module_name(path) not in console_side:
            assert "rich" not in imports_of(path), path.name
