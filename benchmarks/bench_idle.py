"""Idle means idle (issue 16): the platform with no traffic, CPU per process over 60 s.

Starts the platform as ``make run`` does (embedded SQLite, its own broker, free ports), waits for it to settle
(every service ready, consumers joined, start-up publishing done), then samples each process's CPU time
(``/proc``, the process and its children) at the start and end of a 60 s window (scaled, at least 15 s).
Goal: under 1 % of a core per process.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from relearn.devtools.bench import BenchContext, cpu_seconds
from relearn.devtools.platform import Platform, PlatformSettings

GOAL_PERCENT = 1.0


def run(ctx: BenchContext) -> None:
    window = max(15.0, 60.0 * ctx.scale)
    settle = max(10.0, 20.0 * ctx.scale)
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        platform = Platform(PlatformSettings.on_free_ports(Path(tmp)))
        try:
            platform.start()
            time.sleep(settle)
            pids = {name: proc.pid for name, proc in platform.processes.items()}
            if platform.broker is not None and getattr(platform.broker, "_proc", None) is not None:
                pids["broker (tansu)"] = platform.broker._proc.pid  # type: ignore[union-attr]
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            t0 = time.monotonic()
            time.sleep(window)
            elapsed = time.monotonic() - t0
            after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        finally:
            platform.stop()
    load = os.getloadavg()
    print(
        f"  idle platform, {elapsed:.0f} s window after {settle:.0f} s settling; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; goal < {GOAL_PERCENT:g} % of a core per process",
        flush=True,
    )
    for name in pids:
        percent = 100 * (after[name] - before[name]) / elapsed
        mark = "ok" if percent < GOAL_PERCENT else "OVER"
        print(f"  {name:<28} {percent:6.2f} % of a core   {mark}", flush=True)
