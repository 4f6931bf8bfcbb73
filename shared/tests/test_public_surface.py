"""Shared's public surface (docs/development.md, "Shared's public surface"): the few modules services
import from resolve every name they export, each imports on its own, and shared has no import cycle."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PUBLIC = [
    "relearn.shared.service",
    "relearn.shared.fhir",
    "relearn.shared.auth",
    "relearn.shared.events",
    "relearn.shared.migrations",
    "relearn.shared.plumbing_schema",
    "relearn.shared.tables",
]
LAZY = ["relearn.shared.fhir", "relearn.shared.auth"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, int]]:
    """Every import the module runs, at module level or inside a function (a deferred import is still an
    arrow), except under ``if TYPE_CHECKING``."""
    found: list[tuple[str, int]] = []
    package = module if is_package else module.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                test = node.test
                if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                    visit(node.orelse)
                    continue
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.With, ast.For)):
                visit(node.body)
            elif isinstance(node, ast.Import):
                found.extend((alias.name, node.lineno) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.append((base, node.lineno))
                found.extend((f"{base}.{alias.name}", node.lineno) for alias in node.names)

    visit(tree.body)
    return found


@pytest.mark.parametrize("module", PUBLIC)
def test_each_public_module_imports_first_and_alone(module: str) -> None:
    code = f"import {module} as m\nfor n in getattr(m, '__all__', []): getattr(m, n)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", LAZY)
def test_a_lazy_facade_declares_for_the_type_checker_exactly_what_it_resolves(module: str) -> None:
    facade = importlib.import_module(module)
    tree = ast.parse(Path(str(facade.__file__)).read_text())
    typed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                typed |= {alias.asname or alias.name for alias in stmt.names}
    assert typed == set(facade.__all__)
    for name in facade.__all__:
        assert getattr(facade, name) is not None


def test_shared_has_no_import_cycle() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target, _ in _imports(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            if target in modules and target != name:
                edges.add(target)
        graph[name] = edges
    # Tarjan-free: depth-first search reporting the first cycle found.
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := dfs(start)):
            pytest.fail("import cycle: " + " -> ".join(cycle))
