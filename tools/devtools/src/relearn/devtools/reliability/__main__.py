"""``make reliability``: every reliability case of issue 15, then the table.

``python -m relearn.devtools.reliability [R1 R5 ...] [--scale 0.3] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from relearn.devtools.reliability import cases
from relearn.devtools.reliability.ledger import CaseResult, notes, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make reliability", description=__doc__)
    parser.add_argument("cases", nargs="*", help="case names (R1 .. R10); default all")
    parser.add_argument("--scale", type=float, default=1.0, help="stretch every duration (1.0 = full)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    every = [c for c in cases.CASES if c[1:].isdigit()]  # R4-netns is R4's inside, not a case
    names = {c.upper(): c for c in cases.CASES}
    wanted = [names[c.upper()] for c in args.cases] or sorted(every, key=lambda c: int(c[1:]))
    results: list[CaseResult] = []
    for name in wanted:
        run = cases.CASES[name]
        t0 = time.monotonic()
        print(f"{name}: running ...", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"relearn-{name.lower()}-") as tmp:
            try:
                result = run(Path(tmp), args.scale)
            except Exception as exc:
                traceback.print_exc()
                result = CaseResult(name, "(crashed)", error=f"{type(exc).__name__}: {exc}"[:300])
        results.append(result)
        verdict = "pass" if result.passed else "FAIL"
        print(f"{name}: {verdict} in {time.monotonic() - t0:.0f} s", flush=True)
        print(table([result]).splitlines()[-1], flush=True)
        if notes([result]):
            print(notes([result]), flush=True)
    print()
    print(table(results))
    extra = notes(results)
    if extra:
        print()
        print(extra)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
