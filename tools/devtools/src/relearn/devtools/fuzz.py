"""``make fuzz``: schemathesis against every service and the front door, with a valid token; totals printed.

The platform starts as ``make run`` starts it (own broker, SQLite, free ports, a scratch ``var/``).
Schemathesis is not a workspace dependency: it runs from PyPI in its own environment (``uvx``), pinned
here. Checks: no server error, responses as the OpenAPI document says. Each target's JSON report is kept
in ``<var>/fuzz/`` and the run ends with one line per target and the totals; it exits non-zero when any
check failed.

    make fuzz                       # FUZZ_EXAMPLES=50 per operation
    FUZZ_EXAMPLES=200 make fuzz
    FUZZ_MAX_TIME=300 make fuzz     # at most 300 s per target (a third of it statefully)
    FUZZ_TARGETS=front-door,plan make fuzz   # only these targets (names as printed)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relearn.devtools.platform import Platform, PlatformSettings

SCHEMATHESIS = "schemathesis==4.32.5"
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"
PHASES = ("examples", "coverage", "fuzzing", "stateful")


def _uvx() -> list[str]:
    uvx = shutil.which("uvx")
    if uvx is None:
        raise SystemExit("make fuzz needs uv's uvx on PATH (make sync installs uv)")
    return [uvx, "--from", SCHEMATHESIS, "schemathesis"]


def _totals(report: Path) -> dict[str, int]:
    """Requests sent (in all and per phase) and failures found, from a schemathesis ndjson event stream."""
    requests = failures = 0
    phases = dict.fromkeys(PHASES, 0)
    if not report.exists():
        return {"requests": 0, "failures": 0, **phases}
    for line in report.read_text(encoding="utf-8").splitlines():
        try:
            event: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        for name, body in event.items():
            if name == "ScenarioFinished" and isinstance(body, dict):
                recorder = body.get("recorder", {})
                interactions = recorder.get("interactions", {})
                requests += len(interactions)
                phase = str(body.get("phase", ""))
                phases[phase] = phases.get(phase, 0) + len(interactions)
                for checks in recorder.get("checks", {}).values():
                    failures += sum(1 for c in checks if str(c.get("status", "")).lower() == "failure")
    return {"requests": requests, "failures": failures, **phases}


def fuzz_target(
    name: str,
    base: str,
    token: str,
    out: Path,
    examples: int,
    *,
    phases: Sequence[str] = PHASES,
    include_path_regex: str | None = None,
    max_time_s: int | None = None,
) -> dict[str, int]:
    """One schemathesis run against ``base`` (its ``/openapi.json``); the totals of its report."""
    report = out / f"{name}.ndjson"
    command = [
        *_uvx(),
        "run",
        f"{base}/openapi.json",
        "--url",
        base,
        "-H",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(examples),
        "--workers",
        "1",
        "--seed",
        "1",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        "--phases",
        ",".join(phases),
        # FHIR resource schemas are large: generating a case can be slow on a busy machine, not wrong.
        "--suppress-health-check",
        "too_slow",
    ]
    if include_path_regex is not None:
        command += ["--include-path-regex", include_path_regex]
    if max_time_s is not None:
        command += ["--max-time", str(max_time_s)]
    with (out / f"{name}.log").open("w", encoding="utf-8") as log:
        # In the report directory: schemathesis keeps its cache (.schemathesis/) in the working directory.
        run = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=out, check=False)
        code = run.returncode
    totals = _totals(report)
    totals["exit"] = code
    return totals


def _fuzz_service(
    name: str, base: str, token: str, out: Path, examples: int, max_time: int | None
) -> dict[str, int]:
    """All phases in one run; with a time budget (seconds per target), the stateful phase gets a third of it
    in a run of its own (the coverage phase alone could spend it all), the other phases the rest."""
    if max_time is None:
        return fuzz_target(name, base, token, out, examples)
    stateful = fuzz_target(
        f"{name}.stateful", base, token, out, examples, phases=("stateful",), max_time_s=max(1, max_time // 3)
    )
    rest = fuzz_target(
        name, base, token, out, examples, phases=PHASES[:3], max_time_s=max(1, max_time - max_time // 3)
    )
    totals = {k: stateful.get(k, 0) + rest.get(k, 0) for k in {*stateful, *rest} if k != "exit"}
    totals["exit"] = stateful["exit"] or rest["exit"]
    return totals


def _stop_on_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C: the platform is stopped (not left running)."""

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def main() -> int:
    _stop_on_sigterm()
    examples = int(os.environ.get("FUZZ_EXAMPLES", "50"))
    max_time = int(os.environ["FUZZ_MAX_TIME"]) if os.environ.get("FUZZ_MAX_TIME") else None
    var = Path(tempfile.mkdtemp(prefix="relearn-fuzz-")) / "var"
    platform = Platform(PlatformSettings.on_free_ports(var))
    out = var / "fuzz"
    only = {n.strip() for n in os.environ.get("FUZZ_TARGETS", "").split(",") if n.strip()}
    results: dict[str, dict[str, int]] = {}
    try:
        platform.start(ready_timeout_s=120)
        out.mkdir(parents=True, exist_ok=True)
        token = platform.token()
        for name, base in platform.urls().items():
            if only and name not in only:
                continue
            results[name] = _fuzz_service(name, base, token, out, examples, max_time)
            r = results[name]
            print(
                f"{name:16} {r['requests']:7} requests  {r['failures']:4} failures  "
                f"(stateful {r['stateful']}, exit {r['exit']})"
            )
    finally:
        platform.stop()
    requests = sum(r["requests"] for r in results.values())
    failures = sum(r["failures"] for r in results.values())
    stateful = sum(r["stateful"] for r in results.values())
    print(
        f"{'total':16} {requests:7} requests  {failures:4} failures  (stateful {stateful}; reports in {out})"
    )
    return 1 if failures or any(r["exit"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
