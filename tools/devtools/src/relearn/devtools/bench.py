"""``make bench``: run every benchmark under ``benchmarks/`` and print its figures.

``python -m relearn.devtools.bench [SCALE] [NAME ...]``: SCALE multiplies the workloads (1 by
default, or ``RELEARN_BENCH_SCALE``; 0.05 for a quick look), NAMEs pick benchmarks (``events`` for
``bench_events.py``).

A benchmark is a module ``benchmarks/bench_<what>.py`` with ``run(ctx: BenchContext) -> None``
that prints its own figures (use :func:`report`). They share one real broker and create
their own PostgreSQL databases; nothing here asserts on time — figures are for reading.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from relearn.devtools.broker import TansuBroker, free_port
from relearn.devtools.pg import ScratchDatabases


@dataclass
class BenchContext:
    broker: TansuBroker
    databases: ScratchDatabases
    scale: float = 1.0  # RELEARN_BENCH_SCALE-like knob: 0.1 for a quick look

    def pg_database(self, name: str) -> str:
        return self.databases.create(name)


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def report(
    name: str, *, count: int, seconds: float, latencies_s: Sequence[float] = (), unit: str = "ops"
) -> None:
    """Print one figure line: throughput and, if given, p50/p99 latency in ms."""
    line = f"  {name:<52} {count / seconds:>10.1f} {unit}/s   ({count} in {seconds:.2f} s)"
    if latencies_s:
        p50, p99 = percentile(latencies_s, 50) * 1000, percentile(latencies_s, 99) * 1000
        mean = statistics.fmean(latencies_s) * 1000
        line += f"   p50 {p50:.2f} ms   p99 {p99:.2f} ms   mean {mean:.2f} ms"
    print(line, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every process below it (uvicorn workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            raw = (entry / "stat").read_text()
            fields = raw[raw.rindex(")") + 2 :].split()
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += (int(stats[p][11]) + int(stats[p][12])) / tick
        todo.extend(children.get(p, []))
    return total


@contextmanager
def service_process(
    ctx: BenchContext, service: str, env_prefix: str, database_url: str, jwks: Path, issuer: str
) -> Iterator[str]:
    """Run ``relearn-<service> serve`` as its own process on a free port; yields its base URL once ready."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            f"{env_prefix}DATABASE_URL": database_url,
            f"{env_prefix}PORT": str(port),
            f"{env_prefix}AUTH_JWKS": str(jwks),
            f"{env_prefix}AUTH_ISSUER": issuer,
            f"{env_prefix}KAFKA_BOOTSTRAP": ctx.broker.bootstrap,
            f"{env_prefix}LOG_LEVEL": "WARNING",
        }
    )
    script = str(Path(sys.executable).parent / f"relearn-{service}")
    proc = subprocess.Popen([script, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{service} did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def _load(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # so worker processes can find its functions
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    scale = float(os.environ.get("RELEARN_BENCH_SCALE", "1"))
    if argv and argv[0].replace(".", "", 1).isdigit():
        scale, argv = float(argv[0]), argv[1:]
    only = set(argv)  # e.g. `events observations` runs bench_events.py and bench_observations.py
    benches = [p for p in sorted(Path("benchmarks").glob("bench_*.py")) if not only or p.stem[6:] in only]
    with tempfile.TemporaryDirectory() as tmp:
        broker = TansuBroker(log_dir=Path(tmp))
        broker.start()
        databases = ScratchDatabases()
        ctx = BenchContext(broker, databases, scale)
        try:
            for path in benches:
                print(f"\n== {path.stem} ==", flush=True)
                started = time.perf_counter()
                _load(path).run(ctx)  # type: ignore[attr-defined]
                print(f"  ({time.perf_counter() - started:.1f} s)", flush=True)
        finally:
            databases.drop_all()
            broker.stop()


if __name__ == "__main__":
    main()
