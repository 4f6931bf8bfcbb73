"""Rewrite code written before issue 19's shared changes (``python -m relearn.devtools.rewrite_imports``).

Arguments: files or folders; every ``.py`` file under them (default: services/, tools/, benchmarks/, tests/).
Idempotent; prints the files it changed. For branches written before the change: run it after
merging, then ``ruff check --fix`` (import order, unused imports) and ``ruff format``.

- ``relearn.shared.auth.dev_issuer`` is ``relearn.dev_issuer`` (tools/dev-issuer).
- ``from relearn.shared.<internal module> import names`` becomes an import from shared's public surface
  (:data:`FACADES`) for every name that surface exports; names it does not export stay where they were
  (tests/test_layers.py names them).
- ``import relearn.shared.events.consumer`` / ``.events.outbox`` / ``.fhir.tables`` / ``.idempotency`` (a
  ``tables.py`` registering the plumbing tables) is one ``import relearn.shared.tables``.
- A local ``Handler = Callable[[Session, CloudEvent], None]`` is ``relearn.shared.events.Handler``.
- A string literal spelling the canonical base ``https://relearn.health/fhir`` uses
  ``relearn.shared.fhir.CANONICAL_URL`` (docstrings and comments keep the text).
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
import tokenize
from io import StringIO
from pathlib import Path

# Old dotted module -> new dotted module (whole module paths only).
MODULES: dict[str, str] = {
    "relearn.shared.auth.dev_issuer": "relearn.dev_issuer",
}

# Shared's public modules (docs/development.md, "Shared's public surface") and the internal modules
# whose names they re-export.
FACADES: dict[str, tuple[str, ...]] = {
    "relearn.shared.fhir": ("relearn.shared.fhir.",),
    "relearn.shared.auth": ("relearn.shared.auth.",),
    "relearn.shared.events": ("relearn.shared.events.",),
    "relearn.shared.service": (
        "relearn.shared.app",
        "relearn.shared.cli",
        "relearn.shared.db",
        "relearn.shared.deps",
        "relearn.shared.guard",
        "relearn.shared.logging",
        "relearn.shared.openapi",
        "relearn.shared.settings",
        "relearn.shared.workers",
    ),
}

CANONICAL = "https://relearn.health/fhir"
PLUMBING_TABLES = re.compile(
    r"^import relearn\.shared\.(?:events\.consumer|events\.outbox|fhir\.tables|idempotency)\b.*\n",
    re.MULTILINE,
)
TABLES_IMPORT = "import relearn.shared.tables  # noqa: F401  (the plumbing tables, for the metadata)\n"
_HANDLER = re.compile(r"^Handler = Callable\[\[Session, CloudEvent\], None\]\n", re.MULTILINE)


def _facade_for(module: str) -> str | None:
    for facade, sources in FACADES.items():
        for source in sources:
            if (source.endswith(".") and module.startswith(source)) or module == source:
                return facade
    return None


def _exported(facade: str) -> set[str]:
    return set(importlib.import_module(facade).__all__)


def _import_line(indent: str, module: str, names: list[str]) -> str:
    return f"{indent}from {module} import {', '.join(names)}\n"


def _rewrite_facades(text: str) -> str:
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        facade = _facade_for(node.module)
        if facade is None or node.module == facade:
            continue
        exported = _exported(facade)
        moved = [a for a in node.names if a.name in exported]
        if not moved:
            continue
        kept = [a for a in node.names if a.name not in exported]

        def spell(aliases: list[ast.alias]) -> list[str]:
            return [a.name if a.asname is None else f"{a.name} as {a.asname}" for a in aliases]

        indent = " " * node.col_offset
        new = _import_line(indent, facade, spell(moved))
        if kept:
            new += _import_line(indent, node.module, spell(kept))
        assert node.end_lineno is not None
        edits.append((node.lineno - 1, node.end_lineno, new))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = [new]
    return "".join(lines)


def _insert_import(text: str, line: str) -> str:
    """``line`` after the module's last top-level import (before its first other statement)."""
    if line in text:
        return text
    tree = ast.parse(text)
    last = 0
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            assert node.end_lineno is not None
            last = node.end_lineno
        elif last or not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            break
    lines = text.splitlines(keepends=True)
    lines.insert(last, line)
    return "".join(lines)


def _docstring_lines(tree: ast.Module) -> set[int]:
    out: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                assert first.end_lineno is not None
                out |= set(range(first.lineno, first.end_lineno + 1))
    return out


def _rewrite_canonical(text: str) -> str:
    if CANONICAL not in text:
        return text
    skip = _docstring_lines(ast.parse(text))
    lines = text.splitlines(keepends=True)
    changed = False
    for tok in tokenize.generate_tokens(StringIO(text).readline):
        if tok.type != tokenize.STRING or tok.start[0] in skip or tok.start[0] != tok.end[0]:
            continue
        m = re.fullmatch(r'(f?)(["\'])' + re.escape(CANONICAL) + r"(.*)", tok.string, flags=re.DOTALL)
        if not m:
            continue
        prefix, quote, rest = m.groups()
        body = rest[:-1]
        if not prefix and ("{" in body or "}" in body):
            continue
        new = "CANONICAL_URL" if body == "" else f"f{quote}{{CANONICAL_URL}}{body}{quote}"
        row, col = tok.start[0] - 1, tok.start[1]
        line = lines[row]
        lines[row] = line[:col] + new + line[col + len(tok.string) :]
        changed = True
        break  # positions shift: rescan
    if not changed:
        return text
    text = _insert_import("".join(lines), "from relearn.shared.fhir import CANONICAL_URL\n")
    return _rewrite_canonical(text)


def rewrite(text: str) -> str:
    for old, new in MODULES.items():
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    if _HANDLER.search(text):
        text = _insert_import(_HANDLER.sub("", text), "from relearn.shared.events import Handler\n")
    if PLUMBING_TABLES.search(text):
        first = PLUMBING_TABLES.search(text)
        assert first is not None
        text = text[: first.start()] + TABLES_IMPORT + PLUMBING_TABLES.sub("", text[first.start() :])
    text = _rewrite_facades(text)
    return _rewrite_canonical(text)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    roots = [Path(a) for a in args] or [Path(p) for p in ("services", "tools", "benchmarks", "tests")]
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            if ".venv" in path.parts or path.name == "rewrite_imports.py":
                continue
            before = path.read_text(encoding="utf-8")
            after = rewrite(before)
            if after != before:
                path.write_text(after, encoding="utf-8")
                print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
