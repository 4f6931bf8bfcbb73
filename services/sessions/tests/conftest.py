"""The sessions service as it runs: migrated PostgreSQL, the session's real broker, real tokens.

One app per test module (its consumer joins the ``sessions`` group once, which takes seconds);
tests keep apart by using their own patient and care-plan ids. Plan events are published on the
real broker as the plan service would, and the read model is awaited, not seeded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from relearn.dev_issuer import DevIssuer
from relearn.devtools.apps import make_issuer, service_app, wait_for
from relearn.devtools.broker import TansuBroker
from relearn.sessions.config import Settings
from relearn.sessions.main import create_app
from relearn.sessions.tables import PlanRecord
from relearn.shared.events import PLAN_EVENTS, CloudEvent, producer_config
from relearn.shared.events.kafka import close_producer


def plan_event(
    event_type: str,
    care_plan: str,
    patient: str,
    version: int,
    *,
    activities: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> CloudEvent:
    """A plan event as the plan service publishes it (docs/events.md)."""
    data: dict[str, Any] = {
        "carePlan": f"CarePlan/{care_plan}",
        "versionId": version,
        "patient": patient,
        "reason": "test",
        "evidence": [],
        **extra,
    }
    if activities is not None:
        data["activities"] = activities
    return CloudEvent.new("/relearn/plan", event_type, patient, data)


def activities() -> list[dict[str, Any]]:
    """Two prescribed exercises: 3 and 2 bouts a week."""
    return [
        {
            "id": "knee-ext",
            "pattern": "knee-extension-seated",
            "level": {"joints": 0, "motion": 1},
            "dose": {"sets": 3, "reps": 10, "loadKg": 1.5, "frequencyPerWeek": 3},
        },
        {
            "id": "hip-abd",
            "pattern": "hip-abduction-side-lying",
            "level": {"loadBearing": 1},
            "dose": {"sets": 2, "reps": 12, "frequencyPerWeek": 2},
        },
    ]


@dataclass
class SessionsService:
    client: TestClient
    engine: Engine
    issuer: DevIssuer
    producer: KafkaProducer
    bootstrap: str
    headers: dict[str, str] = field(default_factory=dict)

    def token(self, scope: str, patient: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.mint('relearn-dev', scope, patient=patient)}"}

    def publish(self, *events: CloudEvent) -> None:
        for event in events:
            self.producer.send(PLAN_EVENTS, key=event.key, value=event.to_bytes()).get(timeout=15)

    def plan_row(self, care_plan: str) -> PlanRecord | None:
        with Session(self.engine) as s:
            return s.get(PlanRecord, care_plan)

    def active_plan(self, patient: str | None = None, care_plan: str | None = None) -> tuple[str, str]:
        """Publish drafted + activated for a fresh plan and wait until the read model has it."""
        patient = patient or f"p-{uuid.uuid4().hex[:8]}"
        care_plan = care_plan or f"cp-{uuid.uuid4().hex[:8]}"
        self.publish(
            plan_event("plan.drafted.v1", care_plan, patient, 1, activities=activities()),
            plan_event("plan.activated.v1", care_plan, patient, 2, activities=activities()),
        )
        wait_for(
            lambda: (row := self.plan_row(care_plan)) is not None and row.status == "active",
            what=f"CarePlan/{care_plan} to be active in the read model",
        )
        return patient, care_plan


@pytest.fixture(scope="module")
def service(
    pg_database: Callable[[str], str], broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SessionsService]:
    issuer = make_issuer(tmp_path_factory.mktemp("keys"))
    app = service_app(
        "relearn.sessions",
        Settings,
        create_app,
        database_url=pg_database("sessions"),
        bootstrap=broker.bootstrap,
        jwks=issuer.publish(),
    )
    producer = KafkaProducer(**producer_config(broker.bootstrap, "test-plan-service"))
    try:
        with TestClient(app) as client:
            consumer = app.state.workers.consumers[0]
            assert consumer.wait_until_assigned(30), "the sessions consumer never joined its group"
            svc = SessionsService(client, app.state.engine, issuer, producer, broker.bootstrap)
            svc.headers = svc.token("user/Encounter.* user/Procedure.read")
            yield svc
    finally:
        close_producer(producer)


@pytest.fixture
def make_plan_event() -> Callable[..., CloudEvent]:
    """``make_plan_event(type, care_plan, patient, version, activities=..., **data)``."""
    return plan_event


@pytest.fixture
def plan_activities() -> list[dict[str, Any]]:
    return activities()
