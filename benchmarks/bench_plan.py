"""Progression engine on PostgreSQL and the real broker: events/s and event -> new CarePlan version.

The plan service runs as its own process (`relearn-plan serve`, its consumer and outbox relay in-process) on
a migrated PostgreSQL database. Plans are drafted from `evaluation.completed.v1` events and activated through
the API, with rules that advance on every clean session (`mastery.consecutiveSessions` 1, no wait for the
24-hour response), so each `session.logged.v1` writes at least one new CarePlan version (FHIR store write,
Goals/ServiceRequests as changed, plan row, one outbox event per version).

1. Backlog: sessions for every patient produced at once; events/s from the first send to the last one
   recorded as processed (consumer transaction committed).
2. Latency: one session at a time; send -> `meta.lastUpdated` of the first CarePlan version it produced.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaProducer
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import col

from relearn.devtools.apps import ISSUER, make_issuer
from relearn.devtools.bench import BenchContext, report, service_process
from relearn.shared.events import (
    EVALUATION_EVENTS,
    SESSIONS_EVENTS,
    CloudEvent,
    ProcessedEvent,
    producer_config,
)
from relearn.shared.events.kafka import close_producer
from relearn.shared.fhir import CANONICAL_URL
from relearn.shared.migrations import upgrade
from relearn.shared.service import make_engine

EVAL_CS = f"{CANONICAL_URL}/CodeSystem/neuromuscular-evaluation"
START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def evaluation(patient: str) -> dict[str, Any]:
    return {
        "evaluationId": f"ev-{patient}",
        "patient": patient,
        "kind": "initial",
        "effective": "2026-11-20T10:15:00+01:00",
        "deficits": [
            {
                "observationId": f"ev-{patient}-mmt",
                "measure": "mmt-grade",
                "code": {"system": EVAL_CS, "code": "mmt-grade"},
                "kind": "strength",
                "side": "right",
                "muscleGroup": "knee-extensors",
                "measured": 3,
                "unit": "{score}",
                "norm": {"value": 5, "limit": 4, "direction": "below"},
                "severity": "moderate",
            }
        ],
        "goals": [{"observationId": f"ev-{patient}-goal", "text": "Climb the stairs", "target": None}],
    }


def session(patient: str, plan: str, activity: str, n: int) -> dict[str, Any]:
    start = START + timedelta(days=2 * n)
    return {
        "session": f"Encounter/{patient}-s{n}",
        "patient": patient,
        "setting": "clinic",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=45)).isoformat(),
        "carePlan": f"CarePlan/{plan}",
        "exercises": [
            {
                "procedure": f"Procedure/{patient}-p{n}",
                "activity": activity,
                "pattern": "knee-extension",
                "level": {d: 9 for d in ("joints", "motion", "loadBearing", "proprioception")},
                "sets": 3,
                "reps": [10, 10, 10],
                "targetReps": 10,
                "loadKg": 0.0,
                "assistance": "none",
                "cues": [],
                "withFeedback": n % 2 == 0,
                "dualTask": False,
                "dualTaskCostPct": None,
                "rom": {"valueDeg": 95, "method": "goniometer"},
                "quality": 3,
                "selfRating": 3,
                "painBefore": 1,
                "painAfter": 1,
                "deviceStreams": [],
            }
        ],
    }


def processed(engine: Engine, ids: list[str]) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(ProcessedEvent)
                .where(col(ProcessedEvent.consumer) == "plan", col(ProcessedEvent.event_id).in_(ids))
            ).scalar_one()
        )


def wait_processed(engine: Engine, ids: list[str], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while processed(engine, ids) < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError("the plan service did not process the events in time")
        time.sleep(0.005)


def first_version_after(engine: Engine, plan: str, version: int) -> datetime | None:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT last_updated FROM fhir_resource_version "
                "WHERE resource_type = 'CarePlan' AND id = :id AND version_id = :v"
            ),
            {"id": plan, "v": version + 1},
        ).first()
    return None if row is None else row[0]


def send(producer: KafkaProducer, topic: str, event: CloudEvent) -> None:
    producer.send(topic, key=event.key, value=event.to_bytes())


def run(ctx: BenchContext) -> None:
    url = ctx.pg_database("bench_plan")
    upgrade("relearn.plan", url)
    engine = make_engine(url)
    patients = max(4, int(40 * ctx.scale))
    rounds = 6  # sessions per patient in the backlog (every one advances a dimension)
    with tempfile.TemporaryDirectory() as tmp:
        issuer = make_issuer(Path(tmp))
        jwks = issuer.publish()
        auth = {"Authorization": f"Bearer {issuer.mint('relearn-dev', 'system/*.read system/*.write')}"}
        producer = KafkaProducer(**producer_config(ctx.broker.bootstrap, "bench-plan"))
        with (
            service_process(ctx, "plan", "PLAN_", url, jwks, ISSUER) as base,
            httpx.Client(base_url=base, headers=auth, timeout=30) as http,
        ):
            names = [f"bench-{i}" for i in range(patients)]
            drafts = [CloudEvent.new("/bench", "evaluation.completed.v1", p, evaluation(p)) for p in names]
            for e in drafts:
                send(producer, EVALUATION_EVENTS, e)
            producer.flush()
            wait_processed(engine, [e.id for e in drafts])
            plans: dict[str, tuple[str, str]] = {}
            for p in names:
                [summary] = http.get("/plans", params={"patient": p}).json()
                plan = http.get(f"/plans/{summary['id']}").json()
                rules = {"rules": {"mastery": {"consecutiveSessions": 1, "require24HResponse": False}}}
                http.put(f"/plans/{plan['id']}/rules", json=rules).raise_for_status()
                # No EMG in this benchmark: the knee's EMG criteria are waived, so every session is judged on
                # sets, reps, quality, pain and the ROM it records.
                waivers = {
                    "waivers": [
                        {"pattern": "knee-extension", "criterion": c, "reason": "no EMG in the benchmark"}
                        for c in ("emg-onset-latency", "co-contraction")
                    ],
                    "reason": "benchmark",
                }
                http.put(f"/plans/{plan['id']}/waivers", json=waivers).raise_for_status()
                http.post(f"/plans/{plan['id']}/activate").raise_for_status()
                plans[p] = (plan["id"], plan["state"]["activities"][0]["id"])

            events = [
                CloudEvent.new("/bench", "session.logged.v1", p, session(p, *plans[p], n))
                for n in range(1, rounds + 1)
                for p in names
            ]
            t0 = time.perf_counter()
            for e in events:
                send(producer, SESSIONS_EVENTS, e)
            producer.flush()
            wait_processed(engine, [e.id for e in events])
            report(
                "session.logged.v1 backlog -> CarePlan versions",
                count=len(events),
                seconds=time.perf_counter() - t0,
                unit="events",
            )

            latencies: list[float] = []
            samples = max(20, int(200 * ctx.scale))
            t0 = time.perf_counter()
            for i in range(samples):
                p = names[i % len(names)]
                plan_id, activity = plans[p]
                version = http.get(f"/plans/{plan_id}").json()["version"]
                event = CloudEvent.new(
                    "/bench", "session.logged.v1", p, session(p, plan_id, activity, rounds + 1 + i)
                )
                sent = datetime.now(UTC)
                send(producer, SESSIONS_EVENTS, event)
                producer.flush()
                wait_processed(engine, [event.id])
                written = first_version_after(engine, plan_id, version)
                if written is not None:  # at the top of every ladder a session changes nothing
                    latencies.append((written.replace(tzinfo=written.tzinfo or UTC) - sent).total_seconds())
            report(
                "event -> new CarePlan version (one at a time)",
                count=len(latencies),
                seconds=time.perf_counter() - t0,
                latencies_s=latencies,
                unit="versions",
            )
        close_producer(producer)
    engine.dispose()
