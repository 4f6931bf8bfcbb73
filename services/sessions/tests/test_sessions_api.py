"""The session log over HTTP on PostgreSQL: the clinic workflow, home practice, refusals that store
nothing, the FHIR view of sessions, adherence and what a patient's token may see."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from sqlmodel import Session, col, func, select

from relearn.sessions.domain.session import SessionState
from relearn.sessions.tables import SessionRecord
from relearn.shared.events import AUDIT_EVENTS, CloudEvent, OutboxEvent
from relearn.shared.fhir import CANONICAL_URL
from relearn.shared.fhir.tables import RESOURCE

if TYPE_CHECKING:  # conftest is pytest's to import; its class is only named here for the types
    from conftest import SessionsService


def exercise(**overrides: Any) -> dict[str, Any]:
    """A clinic exercise body as a therapist's app sends it."""
    body: dict[str, Any] = {
        "activity": "knee-ext",
        "sets": 3,
        "reps": [10, 10, 8],
        "loadKg": 2.0,
        "assistance": "minimal",
        "cues": ["tactile-cueing", "emg-biofeedback"],
        "level": {"motion": 2},
        "quality": 3,
        "selfRating": 2,
        "painBefore": 2,
        "painAfter": 3,
        "withFeedback": True,
        "dualTask": False,
        "deviceStreams": ["emg-7f3a"],
    }
    body.update(overrides)
    return body


def _start(svc: SessionsService, patient: str, care_plan: str, **extra: Any) -> dict[str, Any]:
    body = {"patient": patient, "carePlan": f"CarePlan/{care_plan}", **extra}
    resp = svc.client.post("/sessions", json=body, headers=svc.headers)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _issue(resp: Any) -> dict[str, Any]:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    return dict(body["issue"][0])


def _stored(svc: SessionsService, session_id: str) -> dict[str, Any]:
    """What the database holds for one session: its row, its FHIR resources, its staged events."""
    with Session(svc.engine) as s:
        row = s.get(SessionRecord, session_id)
        resources = s.exec(
            select(RESOURCE.c.resource_type, RESOURCE.c.text).where(col(RESOURCE.c.text).contains(session_id))
        ).all()
        events = s.exec(
            select(OutboxEvent.type)
            .where(col(OutboxEvent.payload).contains(session_id.encode()))
            .where(col(OutboxEvent.topic) != AUDIT_EVENTS)  # domain events, not the requests' audit
            .order_by(col(OutboxEvent.seq))
        ).all()
    return {
        "row": row,
        "exercises": len(SessionState.model_validate_json(row.state).exercises) if row else None,
        "procedures": sum(1 for t, _ in resources if t == "Procedure"),
        "encounters": sum(1 for t, _ in resources if t == "Encounter"),
        "events": list(events),
    }


def _sessions_of(svc: SessionsService, patient: str) -> int:
    with Session(svc.engine) as s:
        return s.exec(select(func.count()).where(SessionRecord.patient_id == patient)).one()


# -- the clinic workflow ----------------------------------------------------------------------------


def test_a_clinic_session_from_start_to_close(service: SessionsService) -> None:
    patient, care_plan = service.active_plan()
    started = _start(
        service, patient, care_plan, practitioner="Practitioner/t1", start="2026-01-05T09:00:00+01:00"
    )
    sid = started["id"]
    assert started["status"] == "in-progress"
    assert started["encounter"] == f"Encounter/{sid}"
    assert started["planVersion"] == 2

    resp = service.client.post(f"/sessions/{sid}/exercises", json=exercise(), headers=service.headers)
    assert resp.status_code == 201, resp.text
    knee = resp.json()["exercises"][0]
    # Resolved against the plan: its pattern, its level with the client's change, its target.
    assert knee["pattern"] == "knee-extension-seated"
    assert knee["level"] == {
        "joints": 0,
        "motion": 2,
        "loadBearing": 0,
        "proprioception": 0,
        "resistance": 0,
        "tempo": 0,
    }
    assert (knee["targetReps"], knee["targetMet"]) == (10, False)

    trial = {"measure": "reps", "single": 12, "dual": 10.5, "lowerIsBetter": False}
    hip = exercise(activity="hip-abd", sets=2, reps=[12, 12], cues=[], dualTask=True, dualTaskTrial=trial)
    resp = service.client.post(f"/sessions/{sid}/exercises", json=hip, headers=service.headers)
    assert resp.status_code == 201, resp.text
    assert [e["activity"] for e in resp.json()["exercises"]] == ["knee-ext", "hip-abd"]
    hip_view = resp.json()["exercises"][1]
    assert hip_view["dualTaskTrial"] == {**trial, "single": 12.0, "unit": None}
    assert hip_view["dualTaskCostPct"] == 12.5, "the service computes the cost: 1.5 reps fewer of 12"
    stored = _stored(service, sid)
    assert stored["exercises"] == 2
    assert (stored["events"], stored["procedures"]) == ([], 0), "nothing is final before the session closes"

    resp = service.client.post(
        f"/sessions/{sid}/close", json={"end": "2026-01-05T09:45:00+01:00"}, headers=service.headers
    )
    assert resp.status_code == 200, resp.text
    closed = resp.json()
    assert closed["status"] == "finished"
    assert closed["summary"]["exercises"] == 2
    assert closed["summary"]["durationMinutes"] == 45.0
    assert closed["summary"]["painAfterMax"] == 3

    got = service.client.get(f"/sessions/{sid}", headers=service.headers)
    assert got.status_code == 200
    assert got.json() == closed
    stored = _stored(service, sid)
    assert stored["events"] == ["session.logged.v1"]
    assert (stored["encounters"], stored["procedures"]) == (1, 2)


def test_the_session_is_an_encounter_and_its_exercises_are_procedures(service: SessionsService) -> None:
    patient, care_plan = service.active_plan()
    sid = _start(service, patient, care_plan, start="2026-02-02T10:00:00Z")["id"]
    service.client.post(f"/sessions/{sid}/exercises", json=exercise(), headers=service.headers)
    service.client.post(
        f"/sessions/{sid}/exercises", json=exercise(activity="hip-abd"), headers=service.headers
    )
    open_encounter = service.client.get(f"/fhir/Encounter/{sid}", headers=service.headers).json()
    assert open_encounter["status"] == "in-progress"
    service.client.post(
        f"/sessions/{sid}/close", json={"end": "2026-02-02T10:40:00Z"}, headers=service.headers
    )

    resp = service.client.get(f"/fhir/Encounter/{sid}", headers=service.headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/fhir+json")
    encounter = resp.json()
    assert encounter["status"] == "finished"
    assert encounter["class"]["code"] == "AMB"
    assert encounter["subject"] == {"reference": f"Patient/{patient}"}
    assert encounter["period"] == {"start": "2026-02-02T10:00:00+00:00", "end": "2026-02-02T10:40:00+00:00"}
    assert encounter["basedOn"] == [
        {"reference": "ServiceRequest/knee-ext"},
        {"reference": "ServiceRequest/hip-abd"},
    ]
    # Two versions: in-progress from the start, finished on close.
    assert encounter["meta"]["versionId"] == "2"

    def search(path: str, **params: str) -> dict[str, Any]:
        r = service.client.get(path, params=params, headers=service.headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
        return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]

    assert ids(search("/fhir/Encounter", patient=patient)) == [sid]
    assert ids(search("/fhir/Encounter", patient=patient, status="finished", date="2026-02-02")) == [sid]
    assert ids(search("/fhir/Encounter", patient=patient, status="in-progress")) == []
    assert ids(search("/fhir/Encounter", patient=patient, date="ge2026-03-01")) == []
    assert ids(search("/fhir/Encounter", **{"based-on": "ServiceRequest/hip-abd", "patient": patient})) == [
        sid
    ]

    bundle = search("/fhir/Procedure", encounter=f"Encounter/{sid}", _include="Procedure:encounter")
    procedures = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert sorted(p["code"]["text"] for p in procedures) == [
        "hip-abduction-side-lying",
        "knee-extension-seated",
    ]
    assert ids(bundle, "include") == [sid]
    knee = next(p for p in procedures if p["code"]["text"] == "knee-extension-seated")
    assert knee["encounter"] == {"reference": f"Encounter/{sid}"}
    assert knee["basedOn"] == [
        {"reference": "ServiceRequest/knee-ext"},
        {"reference": f"CarePlan/{care_plan}"},
    ]
    assert knee["status"] == "completed"
    assert knee["performer"][0]["actor"] == {"reference": f"Patient/{patient}"}
    assert knee["outcome"]["coding"][0]["code"] == "below-target"
    assert knee["performedPeriod"] == {
        "start": "2026-02-02T10:00:00+00:00",
        "end": "2026-02-02T10:40:00+00:00",
    }
    assert [c["coding"][0]["code"] for c in knee["usedCode"]] == ["tactile-cueing", "emg-biofeedback"]

    by_plan = search("/fhir/Procedure", **{"based-on": f"CarePlan/{care_plan}", "patient": patient})
    assert len(ids(by_plan)) == 2
    by_activity = search("/fhir/Procedure", **{"based-on": "ServiceRequest/knee-ext", "patient": patient})
    assert ids(by_activity) == [knee["id"]]


def test_an_activity_not_in_the_active_plan_is_refused_naming_the_field(service: SessionsService) -> None:
    patient, care_plan = service.active_plan()
    sid = _start(service, patient, care_plan)["id"]
    resp = service.client.post(
        f"/sessions/{sid}/exercises", json=exercise(activity="shoulder-flexion"), headers=service.headers
    )
    assert resp.status_code == 422
    issue = _issue(resp)
    assert issue["expression"] == ["activity"]
    assert "'shoulder-flexion' is not an activity of the active plan" in issue["diagnostics"]
    assert "hip-abd, knee-ext" in issue["diagnostics"]
    assert _stored(service, sid)["exercises"] == 0


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"painAfter": 11}, "painAfter", "less than or equal to 10"),
        ({"painBefore": -1}, "painBefore", "greater than or equal to 0"),
        ({"reps": [10, 10]}, "reps", "give one repetition count per set"),
        ({"cues": ["hypnosis"]}, "cues[0]", "not a known cue"),
        ({"painAfterr": 3}, "painAfterr", "is not a known field"),
        ({"assistance": None}, "assistance", "Input should be"),
        ({"rom": {"valueDeg": 400, "method": "goniometer"}}, "rom.valueDeg", "less than or equal to 360"),
        ({"rom": {"valueDeg": 90, "method": "protractor"}}, "rom.method", "'goniometer', 'inclinometer' or"),
        (
            {
                "dualTask": True,
                "dualTaskTrial": {"measure": "reps", "single": 0, "dual": 8, "lowerIsBetter": False},
            },
            "dualTaskTrial.single",
            "must not be 0",
        ),
    ],
)
def test_bad_exercise_fields_are_400_naming_the_field_and_store_nothing(
    service: SessionsService, change: dict[str, Any], field: str, message: str
) -> None:
    patient, care_plan = service.active_plan()
    sid = _start(service, patient, care_plan)["id"]
    resp = service.client.post(f"/sessions/{sid}/exercises", json=exercise(**change), headers=service.headers)
    assert resp.status_code == 400
    issue = _issue(resp)
    assert issue["expression"] == [field]
    assert issue["diagnostics"].startswith(f"{field}: ")
    assert message in issue["diagnostics"]
    assert _stored(service, sid)["exercises"] == 0


def test_rom_and_a_retention_attempt_are_kept_shown_and_on_the_procedure(service: SessionsService) -> None:
    patient, care_plan = service.active_plan()
    sid = _start(service, patient, care_plan)["id"]
    body = exercise(
        withFeedback=False,
        cues=[],
        retentionAttempt=True,
        rom={"valueDeg": 87.5, "method": "goniometer", "motion": "knee-extension"},
    )
    resp = service.client.post(f"/sessions/{sid}/exercises", json=body, headers=service.headers)
    assert resp.status_code == 201, resp.text
    (knee,) = resp.json()["exercises"]
    assert knee["retentionAttempt"] is True
    rom = knee["rom"]
    assert (rom["valueDeg"], rom["method"], rom["motion"]) == (87.5, "goniometer", "knee-extension")
    assert rom["observation"].startswith("Observation/") and rom["observation"] != "Observation/"

    service.client.post(f"/sessions/{sid}/close", headers=service.headers)
    got = service.client.get(f"/sessions/{sid}", headers=service.headers).json()
    assert got["exercises"][0]["rom"] == rom, "the session log keeps the ROM and its Observation id"

    procedure = service.client.get(f"/fhir/{knee['procedure']}", headers=service.headers).json()
    (perf,) = [e for e in procedure["extension"] if e["url"].endswith("/exercise-performance")]
    parts = {p["url"]: p for p in perf["extension"]}
    assert parts["rom"]["valueQuantity"]["value"] == 87.5
    assert parts["romMethod"]["valueCode"] == "goniometer"
    assert parts["romObservation"]["valueReference"] == {"reference": rom["observation"]}
    assert parts["retentionAttempt"]["valueBoolean"] is True
    assert "active ROM knee-extension 87.5 deg (goniometer)" in procedure["note"][0]["text"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"dualTask": True, "dualTaskCostPct": 20.0}, "dualTaskCostPct", "send dualTaskTrial"),
        ({"retentionAttempt": True, "withFeedback": True}, "retentionAttempt", "feedback-free"),
        (
            {
                "dualTask": False,
                "dualTaskTrial": {"measure": "reps", "single": 10, "dual": 8, "lowerIsBetter": False},
            },
            "dualTaskTrial",
            "only recorded when dualTask is true",
        ),
    ],
)
def test_broken_rules_between_exercise_fields_are_422_naming_the_field_and_store_nothing(
    service: SessionsService, change: dict[str, Any], field: str, message: str
) -> None:
    patient, care_plan = service.active_plan()
    sid = _start(service, patient, care_plan)["id"]
    for url, body, path in (
        (f"/sessions/{sid}/exercises", exercise(**change), field),
        (
            f"/sessions/{sid}/exercises/batch",
            {"exercises": [exercise(), exercise(**change)]},
            f"exercises[1].{field}",
        ),
    ):
        resp = service.client.post(url, json=body, headers=service.headers)
        assert resp.status_code == 422, resp.text
        issue = _issue(resp)
        assert (issue["code"], issue["expression"]) == ("business-rule", [path])
        assert issue["diagnostics"].startswith(f"{path}: ") and message in issue["diagnostics"]
    assert _stored(service, sid)["exercises"] == 0


def test_a_batch_is_kept_whole_or_not_at_all(service: SessionsService) -> None:
    patient, care_plan = service.active_plan()
    sid = _start(service, patient, care_plan)["id"]
    url = f"/sessions/{sid}/exercises/batch"

    bad_value = {"exercises": [exercise(), exercise(activity="hip-abd", painAfter=11)]}
    resp = service.client.post(url, json=bad_value, headers=service.headers)
    assert (resp.status_code, _issue(resp)["expression"]) == (400, ["exercises[1].painAfter"])

    bad_activity = {"exercises": [exercise(), exercise(activity="ankle-df")]}
    resp = service.client.post(url, json=bad_activity, headers=service.headers)
    assert (resp.status_code, _issue(resp)["expression"]) == (422, ["exercises[1].activity"])
    assert _stored(service, sid)["exercises"] == 0, "the good first exercise was not kept either"

    good = {"exercises": [exercise(), exercise(activity="hip-abd")]}
    resp = service.client.post(url, json=good, headers=service.headers)
    assert resp.status_code == 201, resp.text
    assert len(resp.json()["exercises"]) == 2
    assert _stored(service, sid)["exercises"] == 2


def test_a_closed_session_takes_no_more_exercises(service: SessionsService) -> None:
    patient, care_plan = service.active_plan()
    sid = _start(service, patient, care_plan)["id"]
    service.client.post(f"/sessions/{sid}/exercises", json=exercise(), headers=service.headers)
    assert service.client.post(f"/sessions/{sid}/close", headers=service.headers).status_code == 200

    resp = service.client.post(f"/sessions/{sid}/exercises", json=exercise(), headers=service.headers)
    assert resp.status_code == 409
    assert "finished" in _issue(resp)["diagnostics"]
    again = service.client.post(f"/sessions/{sid}/close", headers=service.headers)
    assert again.status_code == 409
    stored = _stored(service, sid)
    assert (stored["exercises"], stored["procedures"], stored["events"]) == (1, 1, ["session.logged.v1"])


def test_a_session_needs_the_patients_active_plan(service: SessionsService) -> None:
    patient, care_plan = service.active_plan()
    other_patient, _ = service.active_plan()
    cases = [
        ({"patient": patient, "carePlan": "CarePlan/never-heard-of"}, "not known to the sessions service"),
        ({"patient": other_patient, "carePlan": f"CarePlan/{care_plan}"}, "the plan of another patient"),
    ]
    for body, message in cases:
        resp = service.client.post("/sessions", json=body, headers=service.headers)
        assert resp.status_code == 422, resp.text
        issue = _issue(resp)
        assert issue["expression"] == ["carePlan"]
        assert message in issue["diagnostics"]
    resp = service.client.post(
        "/sessions", json={"patient": patient, "carePlan": "Goal/x"}, headers=service.headers
    )
    assert (resp.status_code, _issue(resp)["expression"]) == (400, ["carePlan"])
    assert _sessions_of(service, other_patient) == 0


def test_a_body_that_is_not_json_or_is_missing_is_400(service: SessionsService) -> None:
    headers = {**service.headers, "Content-Type": "application/json"}
    resp = service.client.post("/sessions", content=b'{"patient": "p1",', headers=headers)
    assert resp.status_code == 400
    assert _issue(resp)["diagnostics"].startswith("(body): is not valid JSON")
    resp = service.client.post("/sessions", headers=service.headers)
    assert (resp.status_code, _issue(resp)["diagnostics"]) == (400, "(body): is required")
    resp = service.client.post("/sessions", json={"carePlan": "CarePlan/x"}, headers=service.headers)
    assert (resp.status_code, _issue(resp)["expression"]) == (400, ["patient"])


def test_an_unknown_session_is_404(service: SessionsService) -> None:
    for method, path in [("GET", "/sessions/nope"), ("POST", "/sessions/nope/close")]:
        resp = service.client.request(method, path, headers=service.headers)
        assert resp.status_code == 404
        assert _issue(resp)["code"] == "not-found"


# -- the 24-hour response -------------------------------------------------------------------------


def test_the_24_hour_response_is_recorded_once_after_close_and_can_be_corrected(
    service: SessionsService,
) -> None:
    patient, care_plan = service.active_plan()
    sid = _start(service, patient, care_plan, start="2026-01-05T09:00:00Z")["id"]
    service.client.post(f"/sessions/{sid}/exercises", json=exercise(), headers=service.headers)
    url = f"/sessions/{sid}/symptoms"

    early = service.client.post(url, json={"pain24h": 2, "flare": False}, headers=service.headers)
    assert early.status_code == 409, "the session is still open"
    service.client.post(
        f"/sessions/{sid}/close", json={"end": "2026-01-05T09:30:00Z"}, headers=service.headers
    )

    too_soon = {"pain24h": 2, "flare": False, "recordedAt": "2026-01-05T09:00:00Z"}
    resp = service.client.post(url, json=too_soon, headers=service.headers)
    assert (resp.status_code, _issue(resp)["expression"]) == (422, ["recordedAt"])
    resp = service.client.post(url, json={"pain24h": 12, "flare": False}, headers=service.headers)
    assert (resp.status_code, _issue(resp)["expression"]) == (400, ["pain24h"])

    first = {"pain24h": 6, "flare": True, "recordedAt": "2026-01-06T09:00:00Z"}
    resp = service.client.post(url, json=first, headers=service.headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["symptoms"]["pain24h"] == 6
    assert service.client.post(url, json=first, headers=service.headers).status_code == 409

    procedure = service.client.get(
        "/fhir/Procedure", params={"encounter": sid}, headers=service.headers
    ).json()["entry"][0]["resource"]
    assert "Symptom flare not settled at 24 hours (pain 6/10)" in [
        c["text"] for c in procedure["complication"]
    ]

    correction = {"pain24h": 3, "flare": False, "recordedAt": "2026-01-06T10:00:00Z"}
    resp = service.client.put(url, json=correction, headers=service.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["symptoms"]["pain24h"], body["symptoms"]["amendment"]) == (3, 1)
    assert [h["pain24h"] for h in body["symptomHistory"]] == [6]
    assert _stored(service, sid)["events"] == [
        "session.logged.v1",
        "session.symptoms-recorded.v1",
        "session.symptoms-recorded.v1",
    ]


# -- home practice and patient tokens ---------------------------------------------------------------


def _home(patient: str, care_plan: str, **extra: Any) -> dict[str, Any]:
    return {
        "patient": patient,
        "carePlan": f"CarePlan/{care_plan}",
        "activity": "knee-ext",
        "sets": 2,
        "reps": [10, 9],
        "painAfter": 2,
        **extra,
    }


def test_a_patients_app_logs_home_practice_for_its_own_patient_only(service: SessionsService) -> None:
    patient, care_plan = service.active_plan()
    other, other_plan = service.active_plan()
    app = service.token("patient/Encounter.write patient/Encounter.read", patient=patient)

    resp = service.client.post("/sessions/home-practice", json=_home(patient, care_plan), headers=app)
    assert resp.status_code == 201, resp.text
    home = resp.json()
    assert (home["setting"], home["status"]) == ("home", "finished")
    e = home["exercises"][0]
    assert (e["quality"], e["painBefore"], e["loadKg"], e["targetReps"]) == (None, None, 1.5, 10)
    # Patient-reported exercise, not a home-health visit: no Encounter, a patient-reported Procedure.
    assert service.client.get(f"/fhir/Encounter/{home['id']}", headers=service.headers).status_code == 404
    procedure = service.client.get(f"/fhir/{e['procedure']}", headers=service.headers).json()
    assert procedure["asserter"] == {"reference": f"Patient/{patient}"}
    assert (home["encounter"], home["record"]) == (None, e["procedure"])
    assert _stored(service, home["id"])["events"] == ["session.logged.v1"]
    with Session(service.engine) as s:
        (payload,) = s.exec(
            select(OutboxEvent.payload)
            .where(col(OutboxEvent.payload).contains(home["id"].encode()))
            .where(col(OutboxEvent.topic) != AUDIT_EVENTS)  # the domain event, not the request's audit
        ).all()
    logged = CloudEvent.from_bytes(payload).data
    # The event names what exists: the patient-reported Procedure, which the FHIR API serves.
    assert (logged["session"], logged["encounter"]) == (e["procedure"], None)
    assert service.client.get(f"/fhir/{logged['session']}", headers=service.headers).status_code == 200

    resp = service.client.post("/sessions/home-practice", json=_home(other, other_plan), headers=app)
    assert (resp.status_code, _issue(resp)["expression"]) == (403, ["patient"])
    assert _sessions_of(service, other) == 0

    bad = _home(patient, care_plan, activity="hip-abd-standing")
    resp = service.client.post("/sessions/home-practice", json=bad, headers=app)
    assert (resp.status_code, _issue(resp)["expression"]) == (422, ["activity"])
    assert _sessions_of(service, patient) == 1

    clinic = service.client.post(
        "/sessions", json={"patient": patient, "carePlan": f"CarePlan/{care_plan}"}, headers=app
    )
    assert clinic.status_code == 403, "a patient's app does not run clinic sessions"


def test_a_patient_token_sees_only_its_own_sessions(service: SessionsService) -> None:
    patient, care_plan = service.active_plan()
    other, other_plan = service.active_plan()
    mine = _start(service, patient, care_plan)["id"]
    theirs = _start(service, other, other_plan)["id"]
    for sid in (mine, theirs):
        service.client.post(f"/sessions/{sid}/exercises", json=exercise(), headers=service.headers)
        service.client.post(f"/sessions/{sid}/close", headers=service.headers)
    app = service.token("patient/*.read patient/Encounter.write", patient=patient)

    assert service.client.get(f"/sessions/{mine}", headers=app).status_code == 200
    assert service.client.get(f"/sessions/{theirs}", headers=app).status_code == 404
    assert service.client.get(f"/fhir/Encounter/{theirs}", headers=app).status_code == 404
    everything = service.client.get("/fhir/Encounter", headers=app).json()
    assert [e["resource"]["id"] for e in everything["entry"]] == [mine]
    procedures = service.client.get("/fhir/Procedure", params={"encounter": theirs}, headers=app).json()
    assert procedures["total"] == 0
    assert service.client.get(f"/patients/{other}/adherence", headers=app).status_code == 404
    assert service.client.get(f"/patients/{patient}/adherence", headers=app).status_code == 200

    late = {"pain24h": 1, "flare": False}
    assert service.client.post(f"/sessions/{theirs}/symptoms", json=late, headers=app).status_code == 404
    assert service.client.post(f"/sessions/{mine}/symptoms", json=late, headers=app).status_code == 201


def test_tokens_need_encounter_scopes(service: SessionsService) -> None:
    patient, care_plan = service.active_plan()
    body = {"patient": patient, "carePlan": f"CarePlan/{care_plan}"}
    assert service.client.post("/sessions", json=body).status_code == 401
    reader = service.token("user/Encounter.read")
    assert service.client.post("/sessions", json=body, headers=reader).status_code == 403
    system = service.token("system/Encounter.write")
    assert service.client.post("/sessions", json=body, headers=system).status_code == 201
    assert _sessions_of(service, patient) == 1


# -- adherence ----------------------------------------------------------------------------------


def test_adherence_per_week_counts_bouts_done_against_those_prescribed(service: SessionsService) -> None:
    patient, care_plan = service.active_plan()  # knee-ext 3 a week, hip-abd 2 a week: 5 bouts
    # Week 2026-W02: a clinic session with both exercises ...
    sid = _start(service, patient, care_plan, start="2026-01-06T09:00:00+01:00")["id"]
    batch = {"exercises": [exercise(), exercise(activity="hip-abd")]}
    service.client.post(f"/sessions/{sid}/exercises/batch", json=batch, headers=service.headers)
    service.client.post(
        f"/sessions/{sid}/close", json={"end": "2026-01-06T10:00:00+01:00"}, headers=service.headers
    )
    # ... and knee-ext three times at home: four knee bouts, only three count.
    for day in ("07", "08", "09"):
        home = _home(patient, care_plan, start=f"2026-01-{day}T18:00:00+01:00")
        assert (
            service.client.post("/sessions/home-practice", json=home, headers=service.headers).status_code
            == 201
        )
    # An open session does not count; home practice late on Sunday in New York (Monday in UTC)
    # counts in the patient's week, W02.
    _start(service, patient, care_plan, start="2026-01-08T09:00:00Z")
    late = _home(patient, care_plan, activity="hip-abd", start="2026-01-11T23:30:00-05:00")
    assert (
        service.client.post("/sessions/home-practice", json=late, headers=service.headers).status_code == 201
    )

    resp = service.client.get(
        f"/patients/{patient}/adherence",
        params={"from": "2026-01-05", "to": "2026-01-18"},
        headers=service.headers,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["patient"], body["from"], body["to"]) == (patient, "2026-01-05", "2026-01-18")
    # The plan's activation event is dated today, after these back-dated sessions: the first session
    # recorded against it (Tuesday) shows it in force from then, so W02 is prorated over 6 of 7 days
    # (5 x 6/7 = 4.3 bouts; the capped bouts done fill it).
    assert body["weeks"] == [
        {"week": "2026-W02", "prescribed": 4.3, "done": 4.3, "clinic": 1, "home": 4, "percent": 100.0},
        {"week": "2026-W03", "prescribed": 5, "done": 0, "clinic": 0, "home": 0, "percent": 0.0},
    ]
    assert [(p["carePlan"], p["status"]) for p in body["plans"]] == [(f"CarePlan/{care_plan}", "active")]
    assert body["plans"][0]["weeks"] == body["weeks"]
    # Remote monitoring: the clinic session's exercises recorded device streams (home practice did not): one
    # device data day (its local day) in the 30 days ending on `to`, far from CPT 99454's 16.
    rm = body["remoteMonitoring"]
    assert (rm["rule"]["minDays"], rm["rule"]["periodDays"], rm["timeZone"]) == (16, 30, None)
    assert "99454" in rm["rule"]["source"]
    assert rm["periods"] == [
        {"start": "2025-12-20", "end": "2026-01-18", "days": 1, "dates": ["2026-01-06"], "met": False}
    ]


def test_adherence_range_is_checked(service: SessionsService) -> None:
    url = "/patients/p-x/adherence"
    resp = service.client.get(url, params={"from": "2026-02-01", "to": "2026-01-01"}, headers=service.headers)
    assert (resp.status_code, _issue(resp)["expression"]) == (400, ["from"])
    resp = service.client.get(url, params={"from": "yesterday"}, headers=service.headers)
    assert (resp.status_code, _issue(resp)["expression"]) == (400, ["from"])
    resp = service.client.get(url, params={"tz": "Mars/Olympus_Mons"}, headers=service.headers)
    assert (resp.status_code, _issue(resp)["expression"]) == (400, ["tz"])
    resp = service.client.get(url, params={"tz": "Europe/Paris"}, headers=service.headers)
    assert resp.json()["remoteMonitoring"]["timeZone"] == "Europe/Paris"
    resp = service.client.get(url, params={"from": "2026-01-05", "to": "2026-01-11"}, headers=service.headers)
    assert resp.json()["weeks"] == [
        {"week": "2026-W02", "prescribed": 0, "done": 0, "clinic": 0, "home": 0, "percent": None}
    ]


def test_the_api_is_documented(service: SessionsService) -> None:
    spec = service.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/sessions", "post"),
        ("/sessions/{session_id}", "get"),
        ("/sessions/{session_id}/exercises", "post"),
        ("/sessions/{session_id}/close", "post"),
        ("/sessions/{session_id}/symptoms", "put"),
        ("/sessions/home-practice", "post"),
        ("/patients/{patient}/adherence", "get"),
    ]:
        operation = paths[path][method]
        assert operation["summary"], path
        assert "400" in operation["responses"], path
    schemas = spec["components"]["schemas"]
    assert "painAfter" in schemas["ExercisePerformed"]["properties"]
    assert schemas["SessionView"]["examples"]
    codes = service.client.get("/sessions/code-systems", headers=service.headers).json()
    assert f"{CANONICAL_URL}/CodeSystem/cue-technique" in [e["fullUrl"] for e in codes["entry"]]


def test_each_route_checks_its_own_scope_letter(service: SessionsService) -> None:
    """Starting a session is c, recording into or closing it u, one session by id r, a patient's adherence s
    (docs/api.md, "Domain APIs"); a filtered scope, which a domain route cannot apply, is refused."""
    patient, care_plan = service.active_plan()
    body = {"patient": patient, "carePlan": f"CarePlan/{care_plan}"}

    def status(method: str, path: str, scope: str, **kw: Any) -> int:
        return int(service.client.request(method, path, headers=service.token(scope), **kw).status_code)

    assert status("POST", "/sessions", "user/Encounter.ruds", json=body) == 403
    created = service.client.post("/sessions", json=body, headers=service.token("user/Encounter.c"))
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    assert status("POST", f"/sessions/{sid}/exercises", "user/Encounter.crds", json=exercise()) == 403
    assert status("POST", f"/sessions/{sid}/exercises", "user/Encounter.u", json=exercise()) == 201
    assert status("GET", f"/sessions/{sid}", "user/Encounter.s") == 403
    assert status("GET", f"/sessions/{sid}", "user/Encounter.r") == 200
    assert status("GET", f"/patients/{patient}/adherence", "user/Encounter.r") == 403
    assert status("GET", f"/patients/{patient}/adherence", "user/Encounter.s") == 200
    assert status("GET", f"/sessions/{sid}", "user/Encounter.r?status=in-progress") == 403
    assert status("POST", f"/sessions/{sid}/close", "user/Encounter.crs") == 403
    assert status("POST", f"/sessions/{sid}/close", "user/Encounter.u") == 200
