"""Issue 4 end to end: one patient from a real evaluation to unconscious competence on a movement pattern.

The evaluation is posted to the real evaluation service; the plan is drafted from its event over the real
broker, reviewed and activated through the plan API; sessions and 24-hour symptom responses arrive as
``session.logged.v1`` / ``session.symptoms-recorded.v1`` on the sessions topic (shaped like the sessions
service's ``outbound.py``). Each CarePlan version is checked the way an EHR reads it: ``_history``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, KafkaProducer
from sqlmodel import Session

from relearn.devtools.apps import make_issuer, service_app, wait_for
from relearn.devtools.broker import TansuBroker
from relearn.devtools.journey.course import dual_task_trial
from relearn.evaluation.config import Settings as EvaluationSettings
from relearn.evaluation.main import create_app as create_evaluation
from relearn.plan.config import Settings as PlanSettings
from relearn.plan.main import create_app as create_plan
from relearn.shared.events import (
    PLAN_EVENTS,
    SESSIONS_EVENTS,
    CloudEvent,
    ProcessedEvent,
    consumer_config,
    producer_config,
)
from relearn.shared.fhir import CANONICAL_URL

PATTERN = "knee-extension"
EXT_PROGRESSION = f"{CANONICAL_URL}/StructureDefinition/exercise-progression"
EXT_PLAN_CHANGE = f"{CANONICAL_URL}/StructureDefinition/plan-change"
STAGE_CS = f"{CANONICAL_URL}/CodeSystem/competence-stage"


@pytest.fixture(scope="module")
def platform(
    broker: TansuBroker, pg_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    issuer = make_issuer(tmp_path_factory.mktemp("keys"))
    jwks = issuer.publish()
    evaluation = service_app(
        "relearn.evaluation",
        EvaluationSettings,
        create_evaluation,
        database_url=pg_database("course_evaluation"),
        bootstrap=broker.bootstrap,
        jwks=jwks,
    )
    plan = service_app(
        "relearn.plan",
        PlanSettings,
        create_plan,
        database_url=pg_database("course_plan"),
        bootstrap=broker.bootstrap,
        jwks=jwks,
    )
    producer = KafkaProducer(**producer_config(broker.bootstrap, "test-course"))
    with TestClient(evaluation) as ev_client, TestClient(plan) as plan_client:
        assert plan.state.workers.consumers[0].wait_until_assigned(30), "plan consumer never joined"
        token = issuer.mint("relearn-dev", "system/*.read system/*.write")
        yield {
            "evaluation": ev_client,
            "plan": plan_client,
            "engine": plan.state.engine,
            "producer": producer,
            "bootstrap": broker.bootstrap,
            "auth": {"Authorization": f"Bearer {token}"},
        }
    producer.close()


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


class Course:
    """One patient: evaluation, plan, and a clinic that logs sessions against the plan's current level."""

    def __init__(self, platform: dict[str, Any], patient: str) -> None:
        self.p = platform
        self.patient = patient
        self.start = datetime.now(UTC).replace(microsecond=0)
        self.count = 0
        resp = platform["evaluation"].post(
            "/evaluations", json=_evaluation(patient), headers=platform["auth"]
        )
        assert resp.status_code == 201, resp.text
        plans = wait_for(
            lambda: platform["plan"].get(f"/plans?patient={patient}", headers=platform["auth"]).json(),
            what=f"a plan drafted for {patient}",
        )
        self.plan_id: str = plans[0]["id"]

    @property
    def api(self) -> TestClient:
        client: TestClient = self.p["plan"]
        return client

    def plan(self) -> dict[str, Any]:
        resp = self.api.get(f"/plans/{self.plan_id}", headers=self.p["auth"])
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def activity(self) -> dict[str, Any]:
        return next(a for a in self.plan()["state"]["activities"] if a["pattern"] == PATTERN)

    def _publish(self, event_type: str, data: dict[str, Any]) -> CloudEvent:
        event = CloudEvent.new("/relearn/sessions", event_type, self.patient, data)
        self.send(event)
        return event

    def send(self, event: CloudEvent) -> None:
        self.p["producer"].send(SESSIONS_EVENTS, key=event.key, value=event.to_bytes()).get(timeout=15)

        def processed() -> bool:
            with Session(self.p["engine"]) as s:
                return s.get(ProcessedEvent, ("plan", event.id)) is not None

        wait_for(processed, what=f"the plan service to process {event.type}")

    def day(
        self,
        *,
        feedback: bool = True,
        pain_after: int = 1,
        pain24h: int = 1,
        dual_task_cost: float | None = None,
        retention: bool = False,
    ) -> tuple[CloudEvent, CloudEvent]:
        """A session (at the plan's current level and dose) and, a day later, its 24-hour response."""
        self.count += 1
        activity = self.activity()
        dose = activity["dose"]
        start = self.start + timedelta(days=2 * self.count)
        session = f"Encounter/{self.patient}-s{self.count}"
        logged = self._publish(
            "session.logged.v1",
            {
                "session": session,
                "patient": self.patient,
                "setting": "clinic",
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=45)).isoformat(),
                "carePlan": f"CarePlan/{self.plan_id}",
                "exercises": [
                    {
                        "procedure": f"Procedure/{self.patient}-p{self.count}",
                        "activity": activity["id"],
                        "pattern": PATTERN,
                        "level": activity["levels"],
                        "sets": dose["sets"],
                        "reps": [dose["reps"]] * dose["sets"],
                        "targetReps": dose["reps"],
                        "loadKg": 0.0,
                        "assistance": "none",
                        "cues": ["tactile-cueing"] if feedback else [],
                        "withFeedback": feedback,
                        "dualTask": dual_task_cost is not None,
                        # As the sessions service publishes it: the trial and the cost it computed.
                        "dualTaskTrial": dual_task_trial(dual_task_cost)
                        if dual_task_cost is not None
                        else None,
                        "dualTaskCostPct": dual_task_cost,
                        "retentionAttempt": retention,
                        "rom": {"valueDeg": 95, "method": "goniometer"},
                        "quality": 3,
                        "selfRating": 3,
                        "painBefore": 1,
                        "painAfter": pain_after,
                        "deviceStreams": [],
                    }
                ],
            },
        )
        symptoms = self._publish(
            "session.symptoms-recorded.v1",
            {
                "session": session,
                "patient": self.patient,
                "recordedAt": (start + timedelta(days=1)).isoformat(),
                "pain24h": pain24h,
                "flare": False,
                "notes": None,
            },
        )
        return logged, symptoms

    def waive_emg(self, reason: str = "no EMG in this clinic") -> None:
        """The therapist waives the knee's EMG criteria for this plan (nothing measures them here)."""
        resp = self.api.put(
            f"/plans/{self.plan_id}/waivers",
            json={
                "waivers": [
                    {"pattern": PATTERN, "criterion": "emg-onset-latency", "reason": reason},
                    {"pattern": PATTERN, "criterion": "co-contraction", "reason": reason},
                ],
                "reason": "device criteria cannot be measured here",
            },
            headers=self.p["auth"],
        )
        assert resp.status_code == 200, resp.text

    def history(self) -> dict[int, dict[str, Any]]:
        """Every CarePlan version an EHR can read, by versionId."""
        resp = self.api.get(f"/fhir/CarePlan/{self.plan_id}/_history?_count=100", headers=self.p["auth"])
        assert resp.status_code == 200, resp.text
        return {int(e["resource"]["meta"]["versionId"]): e["resource"] for e in resp.json()["entry"]}


def _exercise(care_plan: dict[str, Any]) -> dict[str, Any]:
    return next(
        a
        for a in care_plan["activity"]
        if any(
            p.get("valueCoding", {}).get("code") == PATTERN
            for ext in a["extension"]
            if ext["url"] == EXT_PROGRESSION
            for p in ext["extension"]
        )
    )


def _levels(care_plan: dict[str, Any]) -> dict[str, int]:
    [progression] = [e for e in _exercise(care_plan)["extension"] if e["url"] == EXT_PROGRESSION]
    levels = {}
    for part in progression["extension"]:
        if part["url"] == "level":
            sub = {p["url"]: p for p in part["extension"]}
            levels[sub["dimension"]["valueCoding"]["code"]] = sub["step"]["valueInteger"]
    return levels


def _stage(care_plan: dict[str, Any]) -> str:
    [coding] = _exercise(care_plan)["outcomeCodeableConcept"][0]["coding"]
    assert coding["system"] == STAGE_CS
    return str(coding["code"])


def _change(care_plan: dict[str, Any]) -> dict[str, Any]:
    [ext] = [e for e in care_plan["extension"] if e["url"] == EXT_PLAN_CHANGE]
    parts: dict[str, Any] = {"evidence": [], "criterion": []}
    for p in ext["extension"]:
        if p["url"] == "evidence":
            parts["evidence"].append(p["valueReference"]["reference"])
        elif p["url"] == "criterion":
            parts["criterion"].append(
                {c["url"]: next(v for k, v in c.items() if k.startswith("value")) for c in p["extension"]}
            )
        else:
            parts[p["url"]] = next(v for k, v in p.items() if k.startswith("value"))
    return parts


def _plan_events(bootstrap: str, patient: str, count: int) -> list[CloudEvent]:
    consumer = KafkaConsumer(PLAN_EVENTS, **consumer_config(bootstrap, f"test-{uuid.uuid4().hex[:6]}"))
    found: list[CloudEvent] = []

    def enough() -> bool:
        for records in consumer.poll(timeout_ms=200).values():
            found.extend(e for r in records if (e := CloudEvent.from_bytes(r.value)).subject == patient)
        return len(found) >= count

    try:
        wait_for(enough, what=f"{count} plan events for {patient}")
    finally:
        consumer.close()
    return found


def test_one_patient_reaches_unconscious_competence_with_a_regression_on_the_way(
    platform: dict[str, Any],
) -> None:
    course = Course(platform, f"course-{uuid.uuid4().hex[:8]}")
    auth = platform["auth"]
    draft = course.plan()
    assert draft["status"] == "draft"
    assert {a["pattern"] for a in draft["state"]["activities"]} == {"knee-flexion", PATTERN}
    assert all(set(a["levels"].values()) == {0} for a in draft["state"]["activities"])

    # Review: advance the dimensions in turn, then activate.
    resp = course.api.put(
        f"/plans/{course.plan_id}/rules",
        json={"rules": {"advance": {"strategy": "round-robin"}}, "reason": "vary the progression"},
        headers=auth,
    )
    assert resp.status_code == 200, resp.text
    # No EMG in this clinic: the therapist waives the knee's EMG criteria, with a reason, before activating.
    course.waive_emg()
    resp = course.api.post(f"/plans/{course.plan_id}/activate", json={"reason": "reviewed"}, headers=auth)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "active"

    s1, _ = course.day()  # self-rating agrees: conscious incompetence
    course.day()
    _, sym3 = course.day()  # third clean session: conscious competence, then joints 0 -> 1
    s4, _ = course.day(pain_after=7)  # symptomatic: regression on joints
    for _ in range(3):
        course.day()  # joints 0 -> 1 again
    s8, _ = course.day(feedback=False, retention=True)  # a retention attempt, 2 days after the last practice
    s9, _ = course.day(feedback=False, dual_task_cost=5.0)
    course.day(feedback=False)  # unconscious competence, then motion 0 -> 1 re-entering conscious competence
    for _ in range(3):
        course.day(feedback=False)  # load bearing 0 -> 1

    history = course.history()
    kinds = {v: _change(cp)["kind"] for v, cp in history.items()}
    assert kinds == {
        1: "drafted",
        2: "rules",
        3: "waiver",
        4: "activated",
        5: "progressed",
        6: "progressed",
        7: "progressed",
        8: "symptoms",
        9: "progressed",
        10: "progressed",
        11: "progressed",
        12: "progressed",
        13: "progressed",
    }
    assert history[1]["status"] == "draft" and history[4]["status"] == "active"

    expected = {
        # version: (stage, joints, motion, loadBearing)
        1: ("unconscious-incompetence", 0, 0, 0),
        4: ("unconscious-incompetence", 0, 0, 0),
        5: ("conscious-incompetence", 0, 0, 0),
        6: ("conscious-competence", 0, 0, 0),
        7: ("conscious-competence", 1, 0, 0),
        8: ("conscious-competence", 0, 0, 0),
        9: ("conscious-competence", 1, 0, 0),
        10: ("unconscious-competence", 1, 0, 0),
        11: ("unconscious-competence", 1, 1, 0),
        12: ("conscious-competence", 1, 1, 0),  # a stage belongs to the level it was earned at
        13: ("conscious-competence", 1, 1, 1),
    }
    for version, (stage, joints, motion, load_bearing) in expected.items():
        cp = history[version]
        levels = _levels(cp)
        assert (_stage(cp), levels["joints"], levels["motion"], levels["loadBearing"]) == (
            stage,
            joints,
            motion,
            load_bearing,
        ), f"version {version}"

    change = {v: _change(history[v]) for v in range(2, 14)}
    assert "no EMG in this clinic" in change[3]["reason"]
    assert "self-rating 3/4 agrees" in change[5]["reason"] and change[5]["evidence"] == [s1.data["session"]]
    assert "conscious competence" in change[6]["reason"]
    assert "advancing joints 0 -> 1" in change[7]["reason"]
    assert len(change[7]["evidence"]) == 3
    # The advance lists each criterion it used: ROM measured and met, the EMG criteria waived with the reason.
    criteria = {(c["criterion"], c["status"]) for c in change[7]["criterion"]}
    assert {("rom", "pass"), ("emg-onset-latency", "waived"), ("co-contraction", "waived")} <= criteria
    assert "pain 7/10 after the session" in change[8]["reason"] and "joints 1 -> 0" in change[8]["reason"]
    assert change[8]["evidence"] == [s4.data["session"]]
    assert "without feedback" in change[10]["reason"] and "retention attempt" in change[10]["reason"]
    assert {s8.data["session"], s9.data["session"]} <= set(change[10]["evidence"])
    assert "advancing motion 0 -> 1" in change[11]["reason"]
    assert "re-enters at conscious competence" in change[12]["reason"]
    assert "advancing load bearing 0 -> 1" in change[13]["reason"]
    # Each version's exercise says why it changed, in the words an EHR displays.
    assert "Competence stage: unconscious competence" in _exercise(history[11])["progress"][0]["text"]

    # The ServiceRequest an EHR reads for the exercise carries the current level and stage too.
    activity = course.activity()
    sr = course.api.get(f"/fhir/ServiceRequest/{activity['id']}", headers=auth).json()
    assert sr["basedOn"] == [{"reference": f"CarePlan/{course.plan_id}"}]
    assert sr["status"] == "active"
    assert any(d["coding"][0]["code"] == "conscious-competence" for d in sr["orderDetail"])

    # One event per version, in order, each carrying the version it produced and every activity.
    events = _plan_events(platform["bootstrap"], course.patient, 13)
    assert [e.data["versionId"] for e in events] == list(range(1, 14))
    assert [e.type for e in events][:4] == [
        "plan.drafted.v1",
        "plan.updated.v1",
        "plan.updated.v1",
        "plan.activated.v1",
    ]
    assert [e.type for e in events][4:] == [
        "plan.stage-changed.v1",
        "plan.stage-changed.v1",
        "plan.progressed.v1",
        "plan.progressed.v1",
        "plan.progressed.v1",
        "plan.stage-changed.v1",
        "plan.progressed.v1",
        "plan.stage-changed.v1",
        "plan.progressed.v1",
    ]
    assert any(c["status"] == "waived" for c in events[6].data["criteria"])
    assert all(len(e.data["activities"]) == 2 for e in events)

    # Issue 14: each of the 13 versions has its Provenance: the engine's decisions (progressed, symptoms) by
    # the engine alone (performer, no client: they came from events), the therapist's edits (rules, waiver,
    # activation) authored by the therapist through a client, the engine assembling on their behalf.
    found = course.api.get(
        "/fhir/Provenance", params={"patient": course.patient, "_count": 100}, headers=auth
    ).json()
    provenance: dict[int, dict[str, Any]] = {}
    for entry in found["entry"]:
        for target in entry["resource"]["target"]:
            ref = target["reference"]
            if ref.startswith(f"CarePlan/{course.plan_id}/_history/"):
                assert int(ref.rsplit("/", 1)[1]) not in provenance, f"two Provenances of {ref}"
                provenance[int(ref.rsplit("/", 1)[1])] = entry["resource"]
    assert sorted(provenance) == list(range(1, 14))
    for version, kind in kinds.items():
        agents = {a["type"]["coding"][0]["code"]: a for a in provenance[version]["agent"]}
        if kind in ("progressed", "symptoms"):
            assert set(agents) == {"performer"}, f"version {version}"
            assert agents["performer"]["who"]["display"] == "Relearn progression engine"
        elif kind in ("rules", "waiver", "activated"):
            assert set(agents) == {"author", "assembler", "enterer"}, f"version {version}"
            assert agents["enterer"]["who"]["identifier"]["value"] == "relearn-dev"
        assert kind in provenance[version]["reason"][0]["text"]
    # The symptomatic regression links the session that caused it.
    assert {"role": "source", "what": {"reference": s4.data["session"]}} in provenance[8]["entity"]

    # A replayed event changes nothing: the same envelope again, and the same session under a new id.
    course.send(sym3)
    course.send(CloudEvent.new("/relearn/sessions", "session.logged.v1", course.patient, s4.data))
    assert max(course.history()) == 13


def test_rules_edited_through_the_api_change_when_a_pattern_advances(platform: dict[str, Any]) -> None:
    auth = platform["auth"]
    default = Course(platform, f"rules-a-{uuid.uuid4().hex[:8]}")
    edited = Course(platform, f"rules-b-{uuid.uuid4().hex[:8]}")
    bad = edited.api.put(
        f"/plans/{edited.plan_id}/rules/patterns/{PATTERN}",
        json={"rules": {"mastery": {"consecutiveSessions": 0}}},
        headers=auth,
    )
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["expression"] == ["rules.mastery.consecutiveSessions"]
    resp = edited.api.put(
        f"/plans/{edited.plan_id}/rules/patterns/{PATTERN}",
        json={"rules": {"mastery": {"consecutiveSessions": 2}}, "reason": "quick learner"},
        headers=auth,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["effective"][PATTERN]["mastery"]["consecutiveSessions"] == 2
    assert resp.json()["effective"]["knee-flexion"]["mastery"]["consecutiveSessions"] == 3
    for course in (default, edited):
        course.waive_emg()
        assert course.api.post(f"/plans/{course.plan_id}/activate", headers=auth).status_code == 200

    for _ in range(2):
        default.day()
        edited.day()
    assert default.activity()["levels"]["joints"] == 0
    assert edited.activity()["levels"]["joints"] == 1
    default.day()
    assert default.activity()["levels"]["joints"] == 1
