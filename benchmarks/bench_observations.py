"""Observations on PostgreSQL: create and search throughput over HTTP with ≥ 100 000 stored.

The evaluation service runs as its own process (`relearn-evaluation serve`, one uvicorn
worker) on a migrated PostgreSQL database; the database is seeded through the FHIR store
(same validation and indexing as the API) with 100 000 Observations over 1 000 patients;
then an async client with 8 connections measures create, read and search.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from relearn.dev_issuer import ClientRegistry, DevIssuer, default_clients_file
from relearn.devtools.bench import BenchContext, report, service_process
from relearn.evaluation.resources import OBSERVATION
from relearn.shared.fhir import CANONICAL_URL, FhirStore
from relearn.shared.migrations import upgrade
from relearn.shared.service import make_engine, transaction

CODES = [
    ("http://loinc.org", "72514-3", "{score}"),
    ("http://loinc.org", "89423-8", "s"),
    (f"{CANONICAL_URL}/CodeSystem/neuromuscular-evaluation", "rom-knee-flexion", "deg"),
]
ISSUER = "http://127.0.0.1:8080/auth"


def observation(patient: int, i: int) -> dict[str, Any]:
    system, code, unit = CODES[i % len(CODES)]
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "exam"}
                ]
            }
        ],
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/p{patient}"},
        "effectiveDateTime": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
        "valueQuantity": {
            "value": round(random.uniform(0, 150), 2),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def _seed_range(url: str, start: int, stop: int, patients: int) -> None:
    engine = make_engine(url)
    store = FhirStore()
    store.register(OBSERVATION)
    for chunk in range(start, stop, 1000):
        with transaction(engine) as session:
            for i in range(chunk, min(stop, chunk + 1000)):
                store.create(session, OBSERVATION, observation(i % patients, i))
    engine.dispose()


def seed(url: str, total: int, patients: int, workers: int = 2) -> float:
    """Seed in parallel processes (one per core): the store path, not raw SQL, so indexes are real."""
    t0 = time.perf_counter()
    step = -(-total // workers)
    with ProcessPoolExecutor(workers) as pool:
        futures = [
            pool.submit(_seed_range, url, s, min(total, s + step), patients) for s in range(0, total, step)
        ]
        for f in futures:
            f.result()
    return time.perf_counter() - t0


async def measure(
    name: str, client: httpx.AsyncClient, make_request: Any, n: int, concurrency: int = 8
) -> None:
    latencies: list[float] = []
    queue = list(range(n))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            t = time.perf_counter()
            resp = await make_request(client, i)
            latencies.append(time.perf_counter() - t)
            if resp.status_code >= 400:
                raise RuntimeError(f"{name}: {resp.status_code} {resp.text[:200]}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    report(name, count=n, seconds=time.perf_counter() - t0, latencies_s=latencies, unit="req")


async def load(base: str, token: str, patients: int, scale: float) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        ids: list[str] = []

        async def create(c: httpx.AsyncClient, i: int) -> httpx.Response:
            resp = await c.post("/fhir/Observation", content=json.dumps(observation(i % patients, i)))
            ids.append(resp.json()["id"])
            return resp

        async def read(c: httpx.AsyncClient, i: int) -> httpx.Response:
            return await c.get(f"/fhir/Observation/{ids[i % len(ids)]}")

        async def search(c: httpx.AsyncClient, i: int) -> httpx.Response:
            system, code, _ = CODES[i % len(CODES)]
            return await c.get(
                "/fhir/Observation",
                params={
                    "patient": f"p{i % patients}",
                    "code": f"{system}|{code}",
                    "date": "ge2026-03-01",
                    "_sort": "-date",
                    "_count": "20",
                },
            )

        async def search_page(c: httpx.AsyncClient, i: int) -> httpx.Response:
            return await c.get(
                "/fhir/Observation",
                params={"category": "exam", "_count": "50", "_getpagesoffset": str((i * 50) % 5000)},
            )

        n = max(100, int(2000 * scale))
        await measure("POST /Observation (create)", client, create, n)
        await measure("GET /Observation/{id} (read)", client, read, n)
        await measure("GET /Observation?patient&code&date&_sort=-date", client, search, n)
        await measure(
            "GET /Observation?category&_count=50 (paged, total)", client, search_page, max(50, n // 4)
        )


def run(ctx: BenchContext) -> None:
    total = int(100_000 * ctx.scale)  # scale 1 (make bench): the issue's 100 000
    patients = 1000
    url = ctx.pg_database("bench_observations")
    upgrade("relearn.evaluation", url)
    seconds = seed(url, total, patients)
    report(f"seed {total} Observations through the FHIR store", count=total, seconds=seconds, unit="obs")
    # A database that has been live has planner statistics; autovacuum would not have caught up
    # with a bulk seed yet, and without them the planner starts a search from the least selective index.
    engine = make_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()

    with tempfile.TemporaryDirectory() as tmp:
        issuer = DevIssuer(Path(tmp), ISSUER, "relearn", ClientRegistry.from_file(default_clients_file()))
        jwks = issuer.publish()
        token = issuer.mint("relearn-dev", "system/*.read system/*.write")
        with service_process(ctx, "evaluation", "EVALUATION_", url, jwks, ISSUER) as base:
            asyncio.run(load(base, token, patients, ctx.scale))
