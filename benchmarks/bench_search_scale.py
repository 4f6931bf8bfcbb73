"""Observation search at scale on PostgreSQL (issue 16): patient + code + date, ``_sort=-date``.

1 000 000 Observations over 10 000 patients at scale 1 (``make bench``; ``RELEARN_BENCH_SCALE`` or the first
argument of ``python -m relearn.devtools.bench`` scales both). They are loaded straight into the FHIR store's
tables with PostgreSQL ``COPY`` (not through HTTP): the index rows are the ones the store's own ``Indexer``
makes for each code's template, with each row's patient, date and value put in. Then:

- the plan of the search (``EXPLAIN``): which indexes it uses, and no sequential scan of a big table;
- p50/p99 of that search over HTTP (one client, straight to the evaluation service) and inside the store;
- a broad search (``category=exam``, a third of a million matches) with the default ``_total`` and with
  ``_total=estimate``: neither counts every match; ``_total=accurate`` does, for comparison.

Goal: p50 <= 10 ms, p99 <= 50 ms for the patient + code + date search.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from relearn.dev_issuer import ClientRegistry, DevIssuer, default_clients_file
from relearn.devtools.bench import BenchContext, percentile, report, service_process
from relearn.evaluation.resources import OBSERVATION
from relearn.shared.fhir import CANONICAL_URL, FhirStore
from relearn.shared.fhir.indexing import Indexer
from relearn.shared.fhir.search_sql import match_statement, ordered
from relearn.shared.migrations import upgrade
from relearn.shared.service import make_engine, transaction

ISSUER = "http://127.0.0.1:8080/auth"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CODES = [
    ("http://loinc.org", "72514-3", "{score}"),
    ("http://loinc.org", "89423-8", "s"),
    (f"{CANONICAL_URL}/CodeSystem/neuromuscular-evaluation", "rom-knee-flexion", "deg"),
]
START = datetime(2024, 1, 1, tzinfo=UTC)


def template(code: int) -> dict[str, Any]:
    system, value, unit = CODES[code]
    return {
        "resourceType": "Observation",
        "id": "ID",
        "meta": {"versionId": "1", "lastUpdated": "2026-01-01T00:00:00.000Z"},
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "exam"}]}],
        "code": {"coding": [{"system": system, "code": value}]},
        "subject": {"reference": "Patient/PATIENT"},
        "effectiveDateTime": "2024-01-01T00:00:00Z",  # replaced per row (a date, so it is indexed)
        "valueQuantity": {"value": 1.5, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def _copy_rows(start: int, n: int, patients: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows for Observations ``start`` .. ``start + n`` (index rows as the store's Indexer
    makes them)."""
    indexer = Indexer()
    templates = []
    for code in range(len(CODES)):
        rows = indexer.rows(OBSERVATION, template(code))
        body = json.dumps(template(code), separators=(",", ":"))
        templates.append((rows, body))
    out: dict[str, list[tuple[Any, ...]]] = {
        k: [] for k in ("resource", "version", "token", "reference", "date", "number")
    }
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(start, start + n):
        rid = f"s{i}"
        patient = f"p{i % patients}"
        rows, body = templates[i % len(CODES)]
        at = START + timedelta(minutes=(i * 7919) % (2 * 365 * 24 * 60))  # spread over two years
        when = at.strftime("%Y-%m-%dT%H:%M:00Z")
        resource_text = (
            body.replace('"ID"', f'"{rid}"').replace("PATIENT", patient).replace("2024-01-01T00:00:00Z", when)
        )
        out["resource"].append(("Observation", rid, 1, stamp, False, resource_text))
        out["version"].append(("Observation", rid, 1, stamp, "POST", resource_text))
        for r in rows.token:
            out["token"].append(("Observation", rid, r["param"], r["system"], r["code"]))
        for r in rows.reference:
            out["reference"].append(("Observation", rid, r["param"], "Patient", patient, None))
        for r in rows.date:
            out["date"].append(("Observation", rid, r["param"], at, at + timedelta(seconds=59.999999)))
        for r in rows.number:
            out["number"].append(("Observation", rid, r["param"], r["value"], r["system"], r["code"]))
    return out


COLUMNS = {
    "resource": ("fhir_resource", "resource_type, id, version_id, last_updated, deleted, text"),
    "version": ("fhir_resource_version", "resource_type, id, version_id, last_updated, method, text"),
    "token": ("fhir_search_token", "resource_type, resource_id, param, system, code"),
    "reference": ("fhir_search_reference", "resource_type, resource_id, param, target_type, target_id, url"),
    "date": ("fhir_search_date", "resource_type, resource_id, param, low, high"),
    "number": ("fhir_search_number", "resource_type, resource_id, param, value, system, code"),
}


def seed(url: str, total: int, patients: int, chunk: int = 50_000) -> None:
    engine = make_engine(url)
    raw: Any = engine.raw_connection()
    try:
        driver = raw.driver_connection  # psycopg 3
        for start in range(0, total, chunk):
            rows = _copy_rows(start, min(chunk, total - start), patients)
            with driver.cursor() as cur:
                for kind, (table, cols) in COLUMNS.items():
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        for row in rows[kind]:
                            copy.write_row(row)
            driver.commit()
    finally:
        raw.close()
        engine.dispose()


def run(ctx: BenchContext) -> None:
    total = max(10_000, int(1_000_000 * ctx.scale))
    patients = max(100, int(10_000 * ctx.scale))
    url = ctx.pg_database("bench_search_scale")
    upgrade("relearn.evaluation", url)
    t0 = time.perf_counter()
    seed(url, total, patients)
    report(
        f"COPY {total} Observations over {patients} patients", count=total, seconds=time.perf_counter() - t0
    )
    engine = make_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()

    system, code, _ = CODES[0]
    params = [
        ("patient", "p1"),
        ("code", f"{system}|{code}"),
        ("date", "ge2024-06-01"),
        ("_sort", "-date"),
        ("_count", "20"),
    ]
    store = FhirStore()
    store.register(OBSERVATION)
    engine = make_engine(url)
    with transaction(engine) as session:
        query = store.parse(OBSERVATION, params)
        stmt = ordered(OBSERVATION, match_statement(OBSERVATION, query, None), query.sort).limit(20)
        conn = session.connection()
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        plan = conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params).scalars().all()
    print("  EXPLAIN Observation?patient&code&date&_sort=-date:", flush=True)
    for line in plan:
        print(f"    {line}", flush=True)
    seq = [line for line in plan if "Seq Scan" in line]
    print(f"  sequential scans in the plan: {len(seq)}", flush=True)

    # Inside the store (SQL and the store's Python, no HTTP).
    n = 200
    latencies = []
    with transaction(engine) as session:
        for i in range(n):
            p = [("patient", f"p{(i * 37) % patients}"), *params[1:]]
            t = time.perf_counter()
            store.search(session, OBSERVATION, p)
            latencies.append(time.perf_counter() - t)
    report(
        "store.search patient&code&date&_sort=-date", count=n, seconds=sum(latencies), latencies_s=latencies
    )
    engine.dispose()

    with tempfile.TemporaryDirectory() as tmp:
        issuer = DevIssuer(Path(tmp), ISSUER, "relearn", ClientRegistry.from_file(default_clients_file()))
        jwks = issuer.publish()
        token = issuer.mint("relearn-dev", "system/*.read system/*.write")
        with (
            service_process(ctx, "evaluation", "EVALUATION_", url, jwks, ISSUER) as base,
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client,
        ):
            latencies = []
            for i in range(n + 20):
                p = [("patient", f"p{(i * 37) % patients}"), *params[1:]]
                t = time.perf_counter()
                resp = client.get("/fhir/Observation", params=p)
                if i >= 20:  # the first ones warm the connection pool and caches
                    latencies.append(time.perf_counter() - t)
                resp.raise_for_status()
            report(
                "GET /Observation?patient&code&date&_sort=-date (1 client)",
                count=n,
                seconds=sum(latencies),
                latencies_s=latencies,
                unit="req",
            )
            print(
                f"  goal p50 <= 10 ms, p99 <= 50 ms: p50 {percentile(latencies, 50) * 1000:.1f} ms, "
                f"p99 {percentile(latencies, 99) * 1000:.1f} ms",
                flush=True,
            )
            for label, extra in (
                ("default _total", []),
                ("_total=estimate", [("_total", "estimate")]),
                ("_total=accurate", [("_total", "accurate")]),
            ):
                times, totals = [], []
                for _ in range(5):
                    t = time.perf_counter()
                    resp = client.get(
                        "/fhir/Observation", params=[("category", "exam"), ("_count", "20"), *extra]
                    )
                    times.append(time.perf_counter() - t)
                    resp.raise_for_status()
                    totals.append(resp.json().get("total"))
                print(
                    f"  GET /Observation?category=exam ({label:<16})"
                    f" p50 {percentile(times, 50) * 1000:8.1f} ms"
                    f"   total {totals[-1]}",
                    flush=True,
                )
