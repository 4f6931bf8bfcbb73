"""The plan keeps the shape of docs/development.md: imports run one way, queries stay in the repository."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2] / "src/relearn/plan"

# module -> the modules of the service it may import (docs/development.md, "Shape of a service").
ALLOWED: dict[str, set[str]] = {
    "domain": {"domain", "config"},
    "tables": {"domain", "config"},
    "schemas": {"domain", "config"},
    "resources": {"domain", "config"},
    "repository": {"tables", "resources", "domain", "config"},
    "mapper": {"schemas", "resources", "domain", "config"},
    "events": {"mapper", "schemas", "domain", "config"},
    "service": {"repository", "mapper", "events", "tables", "schemas", "resources", "domain", "config"},
    "api": {"service", "schemas", "mapper", "domain", "config"},
    "handlers": {"service", "schemas", "events", "mapper", "domain", "config"},
}
ORM_CALLS = {"exec", "get", "add", "delete", "execute", "merge", "flush", "scalars"}
IMPURE = {"fastapi", "sqlmodel", "sqlalchemy", "kafka", "httpx"}


def _modules() -> list[Path]:
    return [p for p in sorted(ROOT.rglob("*.py")) if "migrations" not in p.relative_to(ROOT).parts]


def _role(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            if node.module == "relearn.plan":
                names += [f"relearn.plan.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path: Path) -> None:
    role = _role(path)
    wrong = []
    for name in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        parts = name.split(".")
        if parts[0] == "relearn" and len(parts) > 1 and parts[1] not in ("plan", "shared"):
            wrong.append(f"imports another service: {name}")
        if name.startswith("relearn.plan.") and role in ALLOWED:
            target = parts[2]
            if target != role and target not in ALLOWED[role]:
                wrong.append(f"{role} -> {target} runs back")
        if role == "domain" and parts[0] in IMPURE:
            wrong.append(f"domain imports {name}")
    assert wrong == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_queries_only_in_the_repository(path: Path) -> None:
    if _role(path) == "repository":
        return
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        session_call = (
            isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "session"
        )
        if session_call and isinstance(f, ast.Attribute) and f.attr in ORM_CALLS:
            calls.append(f"line {node.lineno}: session.{f.attr}")
        if isinstance(f, ast.Name) and f.id == "select":
            calls.append(f"line {node.lineno}: select(...)")
    assert calls == []
