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
from relearn.devtools.us_core import US_CORE, check
from relearn.evaluation.config import Settings as EvaluationSettings
from relearn.evaluation.main import create_app as create_evaluation
from relearn.plan.config import Settings as PlanSettings
from relearn.plan.main import create_app as create_plan
from relearn.shared.events import OutboxEvent, ProcessedEvent


def _evaluation(patient: str) -> dict[str, Any]:
    """Right knee: flexion 90 deg and knee extensors graded 3; the patient wants to climb stairs."""
    return {
        "patient": patient,
        "performer": "Practitioner/pt-7",
        "effective": "2026-11-20T10:15:00+01:00",
        "kind": "initial",
        "ageYears": 64,
        "referralConditions": [{"kind": "stroke", "text": "Left MCA ischaemic stroke", "onset": "2026-08"}],
        "rom": [{"joint": "knee", "motion": "flexion", "side": "right", "mode": "active", "degrees": 90}],
        "strength": [{"muscleGroup": "knee-extensors", "side": "right", "grade": "3"}],
        "goals": [
            {
                "text": "Climb the stairs at home",
                "target": {"measure": "rom-knee-flexion", "side": "right", "value": 120},
            }
        ],
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


def _plans(platform: dict[str, Any], patient: str) -> list[dict[str, Any]]:
    """The patient's plans as a clinician lists them (``GET /plans``)."""
    resp = platform["plan"].get("/plans", params={"patient": patient}, headers=platform["auth"])
    assert resp.status_code == 200, resp.text
    plans: list[dict[str, Any]] = resp.json()
    return plans


def _care_plan(platform: dict[str, Any], plan_id: str) -> dict[str, Any]:
    """The plan as an EHR reads it (``GET /fhir/CarePlan/<id>``)."""
    resp = platform["plan"].get(f"/fhir/CarePlan/{plan_id}", headers=platform["auth"])
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_evaluation_recorded_in_evaluation_reaches_the_plan_service(platform: dict[str, Any]) -> None:
    resp = platform["evaluation"].post("/evaluations", json=_evaluation("p1"), headers=platform["auth"])
    assert resp.status_code == 201, resp.text
    evaluation = resp.json()["evaluation"]

    [plan] = wait_for(lambda: _plans(platform, "p1"), what="the plan service to draft a plan from it")
    assert plan["status"] == "draft"
    assert plan["evaluation"] == evaluation
    care_plan = _care_plan(platform, plan["id"])
    assert care_plan["status"] == "draft"
    assert care_plan["subject"]["reference"] == "Patient/p1"


def test_event_written_while_the_broker_is_down_is_delivered_once_after_it_returns(
    platform: dict[str, Any], own_broker: TansuBroker
) -> None:
    own_broker.stop()
    resp = platform["evaluation"].post("/evaluations", json=_evaluation("p2"), headers=platform["auth"])
    assert resp.status_code == 201, "the write must not depend on the broker"
    with Session(platform["evaluation_engine"]) as s:
        pending = s.exec(select(OutboxEvent).where(OutboxEvent.published_at.is_(None))).all()  # type: ignore[union-attr]
    completed = [e for e in pending if e.type == "evaluation.completed.v1"]
    assert len(completed) == 1, [e.type for e in pending]
    event_id = completed[0].event_id
    assert _plans(platform, "p2") == []

    own_broker.start()
    [plan] = wait_for(
        lambda: _plans(platform, "p2"), timeout_s=60, what="delivery after the broker came back"
    )
    assert plan["status"] == "draft"
    with Session(platform["plan_engine"]) as s:
        processed = s.exec(
            select(func.count()).select_from(ProcessedEvent).where(ProcessedEvent.event_id == event_id)
        ).one()
    assert processed == 1
    assert len(_plans(platform, "p2")) == 1, "drafted once"
    assert _care_plan(platform, plan["id"])["meta"]["versionId"] == "1", "one CarePlan version, not two"


def test_referral_conditions_recorded_in_evaluation_are_what_the_care_plan_addresses(
    platform: dict[str, Any],
) -> None:
    body = _evaluation("p-ref")
    body["referralConditions"].append(
        {
            "kind": "other",
            "text": "Peripheral neuropathy",
            "snomed": "302226006",
            "icd10cm": "G62.9",
            "category": "encounter-diagnosis",
        }
    )
    resp = platform["evaluation"].post("/evaluations", json=body, headers=platform["auth"])
    assert resp.status_code == 201, resp.text
    conditions = resp.json()["conditions"]
    assert len(conditions) == 2 and all(c.startswith("Condition/") for c in conditions)

    [plan] = wait_for(lambda: _plans(platform, "p-ref"), what="the plan service to draft a plan from it")
    care_plan = _care_plan(platform, plan["id"])
    # The Conditions the evaluation service stored are what the plan addresses, in order, each resolvable
    # over FHIR as the US Core Condition it claims; none is left as an Observation in supportingInfo.
    assert [a["reference"] for a in care_plan["addresses"]] == conditions
    assert not any(s["reference"].startswith("Condition/") for s in care_plan.get("supportingInfo", []))
    for ref, profile in zip(
        conditions,
        ["us-core-condition-problems-health-concerns", "us-core-condition-encounter-diagnosis"],
        strict=True,
    ):
        condition = platform["evaluation"].get(f"/fhir/{ref}", headers=platform["auth"])
        assert condition.status_code == 200, condition.text
        assert condition.json()["subject"] == {"reference": "Patient/p-ref"}
        assert condition.json()["meta"]["profile"] == [f"{US_CORE}{profile}"]
    # The plan itself is a US Core CarePlan (assess-plan) instantiating the published PlanDefinition.
    assert check(care_plan, "us-core-careplan") == []
    (canonical,) = care_plan["instantiatesCanonical"]
    assert canonical.startswith("https://relearn.health/fhir/PlanDefinition/neuromuscular-re-education|")
