"""Rewrite imports after issue 19 moved modules: ``python -m relearn.devtools.rewrite_imports PATH...``.

Applied to every ``.py`` file under the given paths (default: the repository's services/, tools/,
benchmarks/, tests/). Idempotent; prints the files it changed. For branches written before the move:
run it after merging, then ``ruff check --fix`` (import order) and ``ruff format``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Old dotted module -> new dotted module (whole module paths only).
MODULES: dict[str, str] = {
    "relearn.shared.auth.dev_issuer": "relearn.dev_issuer",
}


def rewrite(text: str) -> str:
    for old, new in MODULES.items():
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    return text


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
