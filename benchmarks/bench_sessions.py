"""Session logging on PostgreSQL: start -> record 3 exercises -> close, over HTTP.

The sessions service runs as its own process (`relearn-sessions serve`, one uvicorn worker, its
outbox relay and plan-event consumer in-process) on a migrated PostgreSQL database. The plan read
model is seeded through the consumer's own handler (200 patients, one active plan each); then an
async client with 8 connections logs whole clinic sessions (every call writes the session row, the
Encounter and its Procedures; close also stages session.logged.v1) and, separately, home practice.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from relearn.devtools.apps import ISSUER, make_issuer
from relearn.devtools.bench import BenchContext, report, service_process
from relearn.sessions.handlers import on_plan_event
from relearn.shared.events import CloudEvent, OutboxEvent
from relearn.shared.migrations import upgrade
from relearn.shared.service import make_engine, transaction

PATIENTS = 200
ACTIVITIES = [
    {
        "id": "knee-ext",
        "pattern": "knee-extension-seated",
        "level": {"motion": 1},
        "dose": {"sets": 3, "reps": 10, "frequencyPerWeek": 3},
    },
    {"id": "hip-abd", "pattern": "hip-abduction-side-lying", "dose": {"sets": 2, "reps": 12}},
    {"id": "sts", "pattern": "sit-to-stand", "dose": {"sets": 3, "reps": 8, "loadKg": 0}},
]


def exercise(activity: str, i: int) -> dict[str, Any]:
    return {
        "activity": activity,
        "sets": 3,
        "reps": [10, 10, 8 + i % 3],
        "loadKg": 2.0,
        "assistance": "minimal",
        "cues": ["tactile-cueing", "emg-biofeedback"],
        "level": {"motion": 1 + i % 2},
        "quality": 3,
        "selfRating": 2,
        "painBefore": 2,
        "painAfter": 3,
        "withFeedback": True,
        "deviceStreams": [f"emg-{i}"],
    }


def seed_plans(url: str) -> None:
    """One active plan per patient, applied by the read model's own event handler."""
    engine = make_engine(url)
    with transaction(engine) as session:
        for p in range(PATIENTS):
            data = {
                "carePlan": f"CarePlan/cp{p}",
                "versionId": 2,
                "patient": f"p{p}",
                "activities": ACTIVITIES,
            }
            on_plan_event(session, CloudEvent.new("/relearn/plan", "plan.activated.v1", f"p{p}", data))
    engine.dispose()


async def load(base: str, token: str, scale: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    calls: dict[str, list[float]] = {"start": [], "exercise": [], "close": []}
    per_session: list[float] = []

    async def call(client: httpx.AsyncClient, kind: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        t = time.perf_counter()
        resp = await client.post(path, json=body)
        calls[kind].append(time.perf_counter() - t)
        if resp.status_code >= 400:
            raise RuntimeError(f"{kind}: {resp.status_code} {resp.text[:300]}")
        return dict(resp.json())

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        n = max(50, int(500 * scale))
        queue = list(range(n))

        async def clinic_worker() -> None:
            while queue:
                i = queue.pop()
                p = i % PATIENTS
                t = time.perf_counter()
                sid = (
                    await call(
                        client, "start", "/sessions", {"patient": f"p{p}", "carePlan": f"CarePlan/cp{p}"}
                    )
                )["id"]
                for activity in ("knee-ext", "hip-abd", "sts"):
                    await call(client, "exercise", f"/sessions/{sid}/exercises", exercise(activity, i))
                await call(client, "close", f"/sessions/{sid}/close", {})
                per_session.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(clinic_worker() for _ in range(8)))
        seconds = time.perf_counter() - t0
        report(
            "clinic session (start, 3 exercises, close)",
            count=n,
            seconds=seconds,
            latencies_s=per_session,
            unit="sessions",
        )
        report("  POST /sessions (start)", count=n, seconds=seconds, latencies_s=calls["start"], unit="req")
        report(
            "  POST /sessions/{id}/exercises",
            count=3 * n,
            seconds=seconds,
            latencies_s=calls["exercise"],
            unit="req",
        )
        report(
            "  POST /sessions/{id}/close", count=n, seconds=seconds, latencies_s=calls["close"], unit="req"
        )

        home: list[float] = []
        queue = list(range(n))

        async def home_worker() -> None:
            while queue:
                i = queue.pop()
                p = i % PATIENTS
                body = {
                    "patient": f"p{p}",
                    "carePlan": f"CarePlan/cp{p}",
                    "activity": "knee-ext",
                    "sets": 2,
                    "reps": [10, 9],
                    "painAfter": 2,
                }
                t = time.perf_counter()
                resp = await client.post("/sessions/home-practice", json=body)
                home.append(time.perf_counter() - t)
                if resp.status_code >= 400:
                    raise RuntimeError(f"home practice: {resp.status_code} {resp.text[:300]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(home_worker() for _ in range(8)))
        report(
            "POST /sessions/home-practice",
            count=n,
            seconds=time.perf_counter() - t0,
            latencies_s=home,
            unit="req",
        )


def wait_published(url: str, timeout_s: float = 60) -> tuple[int, float]:
    """How many session events were staged, and how long the relay took to publish the rest."""
    engine = make_engine(url)
    t0 = time.perf_counter()
    try:
        while True:
            with engine.connect() as conn:
                total = conn.execute(select(func.count()).select_from(OutboxEvent)).scalar_one()
                pending = conn.execute(
                    select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))  # type: ignore[union-attr]
                ).scalar_one()
            if pending == 0 or time.perf_counter() - t0 > timeout_s:
                return int(total), time.perf_counter() - t0
            time.sleep(0.1)
    finally:
        engine.dispose()


def run(ctx: BenchContext) -> None:
    url = ctx.pg_database("bench_sessions")
    upgrade("relearn.sessions", url)
    seed_plans(url)

    with tempfile.TemporaryDirectory() as tmp:
        issuer = make_issuer(Path(tmp))
        jwks = issuer.publish()
        token = issuer.mint("relearn-dev", "user/Encounter.write")
        with service_process(ctx, "sessions", "SESSIONS_", url, jwks, ISSUER) as base:
            asyncio.run(load(base, token, ctx.scale))
            events, lag = wait_published(url)
            print(
                f"  {events} session events staged; outbox drained {lag:.2f} s after the last request",
                flush=True,
            )
