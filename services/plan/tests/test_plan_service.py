"""The plan service over real PostgreSQL and the real broker: drafting from an evaluation event, the review
API (edit, activate, override, rules), re-assessment proposals, the read-only FHIR API and patient tokens."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer
from sqlmodel import Session, select

from relearn.dev_issuer import DevIssuer
from relearn.devtools.apps import make_issuer, service_app, wait_for
from relearn.devtools.broker import TansuBroker
from relearn.plan.config import Settings
from relearn.plan.main import create_app
from relearn.shared.events import EVALUATION_EVENTS, CloudEvent, OutboxEvent, ProcessedEvent, producer_config
from relearn.shared.fhir import CANONICAL_URL

EVAL_CS = f"{CANONICAL_URL}/CodeSystem/neuromuscular-evaluation"


@pytest.fixture(scope="module")
def service(
    broker: TansuBroker, pg_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    issuer = make_issuer(tmp_path_factory.mktemp("keys"))
    app = service_app(
        "relearn.plan",
        Settings,
        create_app,
        database_url=pg_database("plan_service"),
        bootstrap=broker.bootstrap,
        jwks=issuer.publish(),
    )
    producer = KafkaProducer(**producer_config(broker.bootstrap, "test-plan"))
    with TestClient(app) as client:
        assert app.state.workers.consumers[0].wait_until_assigned(30)
        yield {"client": client, "issuer": issuer, "engine": app.state.engine, "producer": producer}
    producer.close()


def _auth(
    issuer: DevIssuer, scope: str = "system/*.read system/*.write", patient: str | None = None
) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint('relearn-dev', scope, patient=patient)}"}


def _deficit(obs: str, measure: str, kind: str, measured: float, norm: dict[str, Any], **extra: Any) -> Any:
    return {
        "item": obs,
        "observationId": obs,
        "measure": measure,
        "code": {"system": EVAL_CS, "code": measure, "display": measure},
        "kind": kind,
        "side": "right",
        "joint": None,
        "motion": None,
        "muscleGroup": None,
        "conditions": {},
        "measured": measured,
        "unit": "deg" if kind == "range-of-motion" else "{score}",
        "norm": norm,
        "severity": "moderate",
    } | extra


def _evaluation(patient: str, evaluation: str, *, kind: str = "initial", knee: float = 90) -> dict[str, Any]:
    """``evaluation.completed.v1`` data as the evaluation service sends it: right knee ROM and strength."""
    deficits = [
        _deficit(
            f"{evaluation}-mmt",
            "mmt-grade",
            "strength",
            3,
            {"value": 5, "limit": 4, "direction": "below"},
            muscleGroup="knee-extensors",
        )
    ]
    if knee < 121.5:
        deficits.append(
            _deficit(
                f"{evaluation}-rom",
                "rom-knee-flexion",
                "range-of-motion",
                knee,
                {"value": 135, "limit": 121.5, "direction": "below"},
                joint="knee",
                motion="flexion",
            )
        )
    return {
        "evaluationId": evaluation,
        "patient": patient,
        "kind": kind,
        "effective": "2026-11-20T10:15:00+01:00",
        "performer": "Practitioner/pt-7",
        "referralConditions": [],
        "deficits": deficits,
        "goals": [{"observationId": f"{evaluation}-goal", "text": "Climb the stairs", "target": None}],
    }


def _send(service: dict[str, Any], event_type: str, patient: str, data: dict[str, Any]) -> None:
    event = CloudEvent.new("/relearn/evaluation", event_type, patient, data)
    service["producer"].send(EVALUATION_EVENTS, key=event.key, value=event.to_bytes()).get(timeout=15)

    def processed() -> bool:
        with Session(service["engine"]) as s:
            return s.get(ProcessedEvent, ("plan", event.id)) is not None

    wait_for(processed, what=f"{event_type} processed")


def _drafted(service: dict[str, Any]) -> tuple[str, str]:
    patient = f"p-{uuid.uuid4().hex[:8]}"
    _send(service, "evaluation.completed.v1", patient, _evaluation(patient, f"ev-{patient}"))
    plans = service["client"].get(f"/plans?patient={patient}", headers=_auth(service["issuer"])).json()
    assert len(plans) == 1
    return patient, plans[0]["id"]


def _activity(plan: dict[str, Any], pattern: str) -> dict[str, Any]:
    return next(a for a in plan["state"]["activities"] if a["pattern"] == pattern)


def test_an_evaluation_drafts_a_plan_an_ehr_can_read(service: dict[str, Any]) -> None:
    client, auth = service["client"], _auth(service["issuer"])
    patient, plan_id = _drafted(service)
    plan = client.get(f"/plans/{plan_id}", headers=auth).json()
    assert plan["status"] == "draft" and plan["version"] == 1
    assert {a["pattern"] for a in plan["state"]["activities"]} == {"knee-flexion", "knee-extension"}

    bundle = client.get(
        f"/fhir/CarePlan?patient={patient}&status=draft&_include=CarePlan:goal&_include=CarePlan:activity-reference",
        headers=auth,
    ).json()
    modes = [(e["search"]["mode"], e["resource"]["resourceType"]) for e in bundle["entry"]]
    assert modes.count(("match", "CarePlan")) == 1
    assert modes.count(("include", "ServiceRequest")) == 2
    assert ("include", "Goal") in modes
    cp = client.get(f"/fhir/CarePlan/{plan_id}", headers=auth)
    assert cp.headers["etag"] == 'W/"1"'
    assert client.get(f"/fhir/CarePlan?patient={patient}&status=active", headers=auth).json()["total"] == 0
    # Written by the engine and the API only: FHIR writes would bypass the plan's state.
    assert client.put(f"/fhir/CarePlan/{plan_id}", json=cp.json(), headers=auth).status_code == 405
    # The codes it uses resolve.
    stage_cs = client.get("/fhir/CodeSystem/competence-stage", headers=auth).json()
    assert [c["code"] for c in stage_cs["concept"]][-1] == "unconscious-competence"
    patterns = client.get("/fhir/CodeSystem/movement-pattern", headers=auth).json()
    assert patterns["count"] == len(client.get("/catalogue", headers=auth).json()["patterns"])
    # The catalogue is published as ActivityDefinitions and the ladder as a PlanDefinition, read-only, and
    # the plan's resources name them by instantiatesCanonical (url|catalogue version).
    cp_json = cp.json()
    (plan_canonical,) = cp_json["instantiatesCanonical"]
    url, version = plan_canonical.split("|")
    found = client.get(f"/fhir/PlanDefinition?url={url}&version={version}", headers=auth).json()
    assert found["total"] == 1
    plan_def = found["entry"][0]["resource"]
    named = [a["definitionCanonical"] for region in plan_def["action"] for a in region["action"]]
    assert len(named) == patterns["count"]
    requests = client.get(f"/fhir/ServiceRequest?patient={patient}", headers=auth).json()["entry"]
    for entry in requests:
        (canonical,) = entry["resource"]["instantiatesCanonical"]
        assert canonical in named
        ad_url, ad_version = canonical.split("|")
        ad = client.get(f"/fhir/ActivityDefinition?url={ad_url}", headers=auth).json()["entry"][0]["resource"]
        assert (ad["version"], ad["kind"], ad["status"]) == (ad_version, "ServiceRequest", "active")
        assert ad["code"]["coding"][-1]["code"] == entry["resource"]["code"]["coding"][-1]["code"]
    ad = client.get("/fhir/ActivityDefinition/knee-extension", headers=auth)
    assert ad.status_code == 200
    refused = client.put("/fhir/ActivityDefinition/knee-extension", json=ad.json(), headers=auth)
    assert refused.status_code == 405
    # The catalogue view shows what each criterion is measured on and what a step waits for.
    knee = client.get("/catalogue/knee-extension", headers=auth).json()
    onset = next(c for c in knee["criteria"] if c["metric"] == "emg-onset-latency")
    assert (onset["muscle"], onset["reference"], onset["max"], onset["source"]) == (
        "vastus-medialis",
        {"kind": "synergist", "muscle": "vastus-lateralis"},
        10,
        "device",
    )
    assert knee["muscles"]["antagonists"] == ["biceps-femoris", "semitendinosus"]
    assert knee["ladders"]["joints"][2]["requires"] == {"loadBearing": "full-weight-bearing"}

    # A replay of the evaluation drafts nothing new.
    _send(service, "evaluation.completed.v1", patient, _evaluation(patient, f"ev-{patient}"))
    assert len(client.get(f"/plans?patient={patient}", headers=auth).json()) == 1


def test_a_therapist_edits_activates_and_overrides_a_plan(service: dict[str, Any]) -> None:
    client, auth = service["client"], _auth(service["issuer"])
    _, plan_id = _drafted(service)
    plan = client.get(f"/plans/{plan_id}", headers=auth).json()
    flexion = _activity(plan, "knee-flexion")["id"]

    resp = client.request(
        "DELETE", f"/plans/{plan_id}/activities/{flexion}", json={"reason": "ROM first"}, headers=auth
    )
    assert resp.status_code == 200, resp.text
    resp = client.post(
        f"/plans/{plan_id}/activities",
        json={"pattern": "hip-abduction", "side": "right", "reason": "gait"},
        headers=auth,
    )
    assert resp.status_code == 200, resp.text
    assert {a["pattern"] for a in resp.json()["state"]["activities"]} == {"knee-extension", "hip-abduction"}
    assert client.get(f"/fhir/ServiceRequest/{flexion}", headers=auth).status_code == 410
    extension = _activity(resp.json(), "knee-extension")["id"]
    resp = client.post(
        f"/plans/{plan_id}/activities/{extension}/override",
        json={"dose": {"sets": 2, "reps": 8}, "reason": "tires quickly"},
        headers=auth,
    )
    assert resp.status_code == 200, resp.text
    assert client.post(f"/plans/{plan_id}/activate", headers=auth).json()["status"] == "active"
    again = client.post(f"/plans/{plan_id}/activate", headers=auth)
    assert again.status_code == 422 and "only a draft" in again.json()["issue"][0]["diagnostics"]

    resp = client.post(
        f"/plans/{plan_id}/activities/{extension}/override",
        json={
            "levels": {"joints": 1},
            "stage": "conscious-incompetence",
            "reason": "already sits and extends",
        },
        headers=auth,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["version"] == 7  # drafted, removed, added, dose, activated, joints, stage
    overrides = [c for c in body["state"]["history"] if c["kind"] == "override"]
    assert [c["decisions"][0]["override"]["reason"] for c in overrides] == ["tires quickly"] + [
        "already sits and extends"
    ] * 2
    cp = client.get(f"/fhir/CarePlan/{plan_id}/_history/7", headers=auth).json()
    assert "set by relearn-dev: already sits and extends" in cp["note"][0]["text"]
    sr = client.get(f"/fhir/ServiceRequest/{extension}", headers=auth).json()
    assert sr["status"] == "active" and sr["quantityQuantity"]["value"] == 16


def test_bad_input_names_the_field_and_writes_nothing(service: dict[str, Any]) -> None:
    client, auth = service["client"], _auth(service["issuer"])
    _, plan_id = _drafted(service)
    extension = _activity(client.get(f"/plans/{plan_id}", headers=auth).json(), "knee-extension")["id"]
    cases = [
        (
            f"/plans/{plan_id}/activities/{extension}/override",
            {"levels": {"joints": 9}, "reason": "x"},
            "levels.joints",
        ),
        (
            f"/plans/{plan_id}/activities/{extension}/override",
            {"dose": {"sets": 0}, "reason": "x"},
            "dose.sets",
        ),
        (f"/plans/{plan_id}/activities/{extension}/override", {"levels": {"joints": 1}}, "reason"),
        (f"/plans/{plan_id}/activities", {"pattern": "no-such", "reason": "x"}, "pattern"),
    ]
    for url, body, field in cases:
        resp = client.post(url, json=body, headers=auth)
        assert resp.status_code == 400, (body, resp.text)
        assert field in resp.json()["issue"][0]["expression"], resp.json()
    resp = client.put(f"/plans/{plan_id}/rules", json={"rules": {"mastery": {"maxPian": 2}}}, headers=auth)
    assert resp.status_code == 400
    assert resp.json()["issue"][0]["expression"] == ["rules.mastery.maxPian"]
    resp = client.put(
        f"/plans/{plan_id}/rules", json={"rules": {"symptoms": {"acceptablePainMax": 1}}}, headers=auth
    )
    assert resp.status_code == 400 and "below mastery.maxPain" in resp.text
    assert client.get(f"/plans/{plan_id}", headers=auth).json()["version"] == 1
    assert client.get(f"/fhir/CarePlan/{plan_id}", headers=auth).headers["etag"] == 'W/"1"'


def test_a_reassessment_proposes_changes_the_therapist_applies(service: dict[str, Any]) -> None:
    client, auth = service["client"], _auth(service["issuer"])
    patient, plan_id = _drafted(service)
    assert client.post(f"/plans/{plan_id}/activate", headers=auth).status_code == 200
    _send(service, "evaluation.reassessed.v1", patient, _evaluation(patient, f"re-{patient}", knee=130))
    [proposal] = client.get(f"/plans/{plan_id}/proposals", headers=auth).json()
    assert proposal["status"] == "open"
    assert [u["achievement"] for u in proposal["proposal"]["goalUpdates"]] != []
    resp = client.post(f"/plans/{plan_id}/proposals/{proposal['id']}/apply", headers=auth)
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"]["history"][-1]["kind"] == "reassessed"
    assert client.post(f"/plans/{plan_id}/proposals/{proposal['id']}/apply", headers=auth).status_code == 409


def test_goals_a_reassessment_marks_achieved_are_in_the_plan_event(service: dict[str, Any]) -> None:
    """The plan event names the Goals it marked achieved, with the Goal version it wrote (structured data,
    what the subscriptions service's goal-achieved topic reads)."""
    client, auth = service["client"], _auth(service["issuer"])
    patient, plan_id = _drafted(service)
    assert client.post(f"/plans/{plan_id}/activate", headers=auth).status_code == 200
    recovered = _evaluation(patient, f"re-{patient}", knee=130) | {"deficits": []}
    _send(service, "evaluation.reassessed.v1", patient, recovered)
    [proposal] = client.get(f"/plans/{plan_id}/proposals", headers=auth).json()
    resp = client.post(f"/plans/{plan_id}/proposals/{proposal['id']}/apply", headers=auth)
    assert resp.status_code == 200, resp.text

    achieved_ids = {g["id"] for g in resp.json()["state"]["goals"] if g["achievement"] == "achieved"}
    assert achieved_ids
    with Session(service["engine"]) as s:
        rows = s.exec(select(OutboxEvent).where(OutboxEvent.key == patient)).all()
    events = [CloudEvent.from_bytes(r.payload) for r in rows]
    drafted = next(e for e in events if e.type == "plan.drafted.v1")
    assert {g["goal"] for g in drafted.data["goals"]} >= {f"Goal/{i}" for i in achieved_ids}
    assert not any(g["achieved"] for g in drafted.data["goals"])
    [updated] = [
        e for e in events if e.type == "plan.updated.v1" and any(g["achieved"] for g in e.data["goals"])
    ]
    marked = {g["goal"]: g for g in updated.data["goals"] if g["achieved"]}
    assert set(marked) == {f"Goal/{i}" for i in achieved_ids}
    for ref, g in marked.items():
        assert g["achievementStatus"] == "achieved" and g["lifecycleStatus"] == "completed"
        goal = client.get(f"/fhir/{ref}", headers=auth)
        assert goal.headers["etag"] == f'W/"{g["versionId"]}"'


def test_discharge_completes_the_plan_and_closes_each_goal(service: dict[str, Any]) -> None:
    client, auth = service["client"], _auth(service["issuer"])
    _, plan_id = _drafted(service)
    assert client.post(f"/plans/{plan_id}/discharge", headers=auth).status_code == 422  # a draft
    assert client.post(f"/plans/{plan_id}/activate", headers=auth).status_code == 200
    goals = client.get(f"/plans/{plan_id}", headers=auth).json()["state"]["goals"]
    first = goals[0]["id"]
    bad = client.post(f"/plans/{plan_id}/discharge", headers=auth, json={"achieved": {"nope": True}})
    assert bad.status_code == 422, bad.text
    body = {"reason": "goals reviewed", "achieved": {first: True}}
    resp = client.post(f"/plans/{plan_id}/discharge", headers=auth, json=body)
    assert resp.status_code == 200, resp.text
    state = resp.json()["state"]
    assert state["status"] == "completed"
    assert state["history"][-1]["kind"] == "discharged"
    care_plan = client.get(f"/fhir/CarePlan/{plan_id}", headers=auth).json()
    assert care_plan["status"] == "completed"
    for goal in goals:
        fhir_goal = client.get(f"/fhir/Goal/{goal['id']}", headers=auth).json()
        assert fhir_goal["lifecycleStatus"] == "completed"
        code = fhir_goal["achievementStatus"]["coding"][0]["code"]
        assert code == ("achieved" if goal["id"] == first else "not-achieved")
    again = client.post(f"/plans/{plan_id}/discharge", headers=auth)
    assert again.status_code == 422  # completed already


def test_patient_tokens_read_only_their_own_plans(service: dict[str, Any]) -> None:
    client, issuer = service["client"], service["issuer"]
    patient, plan_id = _drafted(service)
    _, other = _drafted(service)
    mine = _auth(issuer, "patient/*.read", patient=patient)
    assert client.get(f"/plans/{plan_id}", headers=mine).status_code == 200
    assert [p["id"] for p in client.get("/plans", headers=mine).json()] == [plan_id]
    assert client.get(f"/plans/{other}", headers=mine).status_code == 404
    assert client.get(f"/fhir/CarePlan/{other}", headers=mine).status_code == 404
    assert client.post(f"/plans/{plan_id}/activate", headers=mine).status_code == 403
    writer = _auth(issuer, "patient/*.read patient/*.write", patient=patient)
    assert client.post(f"/plans/{plan_id}/activate", headers=writer).status_code == 403
    assert client.get(f"/plans/{plan_id}").status_code == 401
