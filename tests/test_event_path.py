"""The foundation's promise: a state change in one service reaches a consumer in another over the
real broker, and an outage of the broker during the write loses nothing and doubles nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from relearn.devtools.apps import make_issuer, service_app, wait_for
from relearn.devtools.broker import TansuBroker
from relearn.evaluation.config import Settings as EvaluationSettings
from relearn.evaluation.main import create_app as create_evaluation
from relearn.plan.config import Settings as PlanSettings
from relearn.plan.main import create_app as create_plan
from relearn.plan.measurements import RecordedMeasurement
from relearn.shared.events import OutboxEvent, ProcessedEvent


def _observation(patient: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3", "display": "Pain severity"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-11-20T10:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
    }


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker of this test's own: the test stops it, which must not disturb other tests."""
    b = TansuBroker(log_dir=tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def platform(
    own_broker: TansuBroker, pg_database: Callable[[str], str], tmp_path: Path
) -> Iterator[dict[str, Any]]:
    issuer = make_issuer(tmp_path / "keys")
    jwks = issuer.publish()
    evaluation = service_app(
        "relearn.evaluation",
        EvaluationSettings,
        create_evaluation,
        database_url=pg_database("evaluation"),
        bootstrap=own_broker.bootstrap,
        jwks=jwks,
    )
    plan = service_app(
        "relearn.plan",
        PlanSettings,
        create_plan,
        database_url=pg_database("plan"),
        bootstrap=own_broker.bootstrap,
        jwks=jwks,
    )
    with TestClient(evaluation) as ev_client, TestClient(plan) as plan_client:
        consumer = plan.state.workers.consumers[0]
        assert consumer.wait_until_assigned(30), "plan consumer never joined its group"
        token = issuer.mint("relearn-dev", "system/*.read system/*.write")
        yield {
            "evaluation": ev_client,
            "plan": plan_client,
            "plan_engine": plan.state.engine,
            "evaluation_engine": evaluation.state.engine,
            "auth": {"Authorization": f"Bearer {token}"},
        }


def _measurement(engine: Any, observation_id: str) -> RecordedMeasurement | None:
    with Session(engine) as s:
        return s.get(RecordedMeasurement, observation_id)


def test_observation_recorded_in_evaluation_reaches_the_plan_service(platform: dict[str, Any]) -> None:
    resp = platform["evaluation"].post(
        "/fhir/Observation", json=_observation("p1", 4), headers=platform["auth"]
    )
    assert resp.status_code == 201, resp.text
    obs_id = resp.json()["id"]

    row = wait_for(lambda: _measurement(platform["plan_engine"], obs_id), what="the plan service to see it")
    assert row.patient_id == "p1"
    assert row.code == "http://loinc.org|72514-3"
    assert row.value == 4


def test_event_written_while_the_broker_is_down_is_delivered_once_after_it_returns(
    platform: dict[str, Any], own_broker: TansuBroker
) -> None:
    own_broker.stop()
    resp = platform["evaluation"].post(
        "/fhir/Observation", json=_observation("p2", 7), headers=platform["auth"]
    )
    assert resp.status_code == 201, "the write must not depend on the broker"
    obs_id = resp.json()["id"]
    with Session(platform["evaluation_engine"]) as s:
        pending = s.exec(select(OutboxEvent).where(OutboxEvent.published_at.is_(None))).all()  # type: ignore[union-attr]
    assert [e.type for e in pending] == ["observation.recorded.v1"]
    event_id = pending[0].event_id

    own_broker.start()
    row = wait_for(
        lambda: _measurement(platform["plan_engine"], obs_id),
        timeout_s=60,
        what="delivery after the broker came back",
    )
    assert row.value == 7
    with Session(platform["plan_engine"]) as s:
        processed = s.exec(
            select(func.count()).select_from(ProcessedEvent).where(ProcessedEvent.event_id == event_id)
        ).one()
        rows = s.exec(select(func.count()).select_from(RecordedMeasurement)).one()
    assert processed == 1
    assert rows == 1
