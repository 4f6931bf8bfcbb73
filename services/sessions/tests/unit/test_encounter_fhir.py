from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.codesystem import CodeSystem

from relearn.sessions.domain.plan_view import PlanView
from relearn.sessions.domain.session import SessionState
from relearn.sessions.mapper import (
    CS_ASSISTANCE,
    CS_CUE,
    CS_EXERCISE_OUTCOME,
    SD_DEVICE_STREAM,
    SD_EXERCISE_PERFORMANCE,
    SD_PROGRESSION_LEVEL,
    XVER_ENCOUNTER_BASED_ON,
    code_systems,
    encounter_resource,
    procedure_resources,
)
from relearn.sessions.resources import ENCOUNTER, PROCEDURE
from relearn.sessions.schemas import (
    ExercisePerformed,
    HomePractice,
    SessionClose,
    SessionStart,
    SymptomResponse,
    parse,
)
from relearn.sessions.service import (
    close_session,
    log_home_practice,
    record_exercises,
    record_symptoms,
    start_session,
)
from relearn.shared.fhir import CANONICAL_URL, ResourceDefinition
from relearn.shared.fhir.validation import validate_resource

CODE_SYSTEM = ResourceDefinition(type="CodeSystem", model=CodeSystem)


@pytest.fixture
def session(plan: PlanView, monday: datetime, exercise: Callable[..., dict[str, Any]]) -> SessionState:
    start = parse(
        SessionStart,
        {
            "patient": "p1",
            "carePlan": "cp1",
            "practitioner": "Practitioner/t1",
            "reasonReference": ["Condition/c1"],
        },
    )
    state = start_session("s1", start, plan, now=monday)
    state = record_exercises(
        state,
        [
            parse(ExercisePerformed, exercise(painAfter=7, notes="compensated with hip hitch")),
            parse(
                ExercisePerformed,
                exercise(
                    activity="hip-abd",
                    sets=2,
                    reps=[12, 12],
                    cues=[],
                    selfRating=None,
                    withFeedback=False,
                    retentionAttempt=True,
                    dualTask=True,
                    dualTaskTrial={"measure": "reps", "single": 12, "dual": 11, "lowerIsBetter": False},
                    rom={"valueDeg": 35, "method": "inclinometer", "motion": "hip-abduction"},
                ),
            ),
        ],
        plan,
    )
    return close_session(state, SessionClose(), now=monday + timedelta(minutes=45))


def _ext(resource: dict[str, Any], url: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [e for e in resource["extension"] if e["url"] == url]
    assert len(found) == 1, f"{url} appears {len(found)} times"
    return found[0]


def _parts(ext: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(p["url"], next(v for k, v in p.items() if k.startswith("value"))) for p in ext["extension"]]


def test_all_outputs_are_valid_r4_resources(session: SessionState, monday: datetime) -> None:
    session = record_symptoms(
        session, SymptomResponse(pain24h=6, flare=True, notes="stiff"), now=monday + timedelta(days=1)
    )
    validate_resource(ENCOUNTER, encounter_resource(session))
    for procedure in procedure_resources(session):
        validate_resource(PROCEDURE, procedure)
    for cs in code_systems():
        validate_resource(CODE_SYSTEM, cs)


def test_open_and_home_sessions_are_valid_too(plan: PlanView, monday: datetime) -> None:
    open_state = start_session(
        "s2", parse(SessionStart, {"patient": "p1", "carePlan": "cp1", "setting": "clinic"}), plan, now=monday
    )
    validate_resource(ENCOUNTER, encounter_resource(open_state))
    home = log_home_practice(
        "h1",
        parse(
            HomePractice,
            {
                "patient": "p1",
                "carePlan": "cp1",
                "activity": "knee-ext",
                "sets": 1,
                "reps": [10],
                "painAfter": 0,
            },
        ),
        plan,
        now=monday,
    )
    for procedure in procedure_resources(home):
        validate_resource(PROCEDURE, procedure)


def test_encounter_carries_class_type_period_and_plan_links(session: SessionState) -> None:
    enc = encounter_resource(session)
    assert enc["status"] == "finished"
    assert enc["class"]["code"] == "AMB"
    assert enc["type"][0]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "229065009",
        "display": "Exercise therapy",
    }
    assert enc["subject"] == {"reference": "Patient/p1"}
    assert enc["participant"][0]["individual"] == {"reference": "Practitioner/t1"}
    assert enc["period"] == {"start": "2026-01-05T09:00:00+00:00", "end": "2026-01-05T09:45:00+00:00"}
    assert enc["length"]["value"] == 45.0
    # R4 basedOn may only point at ServiceRequests: the activities; the CarePlan rides in the R5 extension.
    assert enc["basedOn"] == [
        {"reference": "ServiceRequest/knee-ext"},
        {"reference": "ServiceRequest/hip-abd"},
    ]
    assert _ext(enc, XVER_ENCOUNTER_BASED_ON)["valueReference"] == {"reference": "CarePlan/cp1"}
    assert enc["reasonReference"] == [{"reference": "Condition/c1"}]


def test_home_practice_is_no_home_health_visit(plan: PlanView, monday: datetime) -> None:
    state = start_session(
        "s2", parse(SessionStart, {"patient": "p1", "carePlan": "cp1", "setting": "home"}), plan, now=monday
    )
    # Patient-reported exercise: no Encounter (no class HH), Procedures reported by the patient.
    with pytest.raises(ValueError, match="home practice"):
        encounter_resource(state)


def test_home_procedures_are_patient_reported_and_not_billed(plan: PlanView, monday: datetime) -> None:
    home = log_home_practice(
        "h2",
        parse(
            HomePractice,
            {
                "patient": "p1",
                "carePlan": "cp1",
                "activity": "knee-ext",
                "sets": 1,
                "reps": [10],
                "painAfter": 0,
            },
        ),
        plan,
        now=monday,
    )
    [procedure] = procedure_resources(home)
    assert "encounter" not in procedure
    assert procedure["asserter"] == {"reference": "Patient/p1"}
    systems = [c["system"] for c in procedure["code"]["coding"]]
    assert "http://www.ama-assn.org/go/cpt" not in systems
    assert procedure["code"]["coding"][0]["code"] == "229065009"


def test_procedure_links_pattern_plan_activity_and_session(session: SessionState) -> None:
    knee, hip = procedure_resources(session)
    assert knee["status"] == "completed"
    # SNOMED CT and CPT beside the local movement pattern (US Core's extensible binding; billing).
    # The CPT code is the one the plan gave the activity's form (97110); an activity whose plan event named
    # none is billed as neuromuscular re-education (97112).
    assert [(c["system"], c["code"]) for c in knee["code"]["coding"]] == [
        ("http://snomed.info/sct", "229065009"),
        ("http://www.ama-assn.org/go/cpt", "97110"),
        (f"{CANONICAL_URL}/CodeSystem/movement-pattern", "knee-extension-seated"),
    ]
    assert hip["code"]["coding"][1]["code"] == "97112"
    assert knee["encounter"] == {"reference": "Encounter/s1"}
    assert "asserter" not in knee
    assert "partOf" not in knee
    assert knee["basedOn"] == [{"reference": "ServiceRequest/knee-ext"}, {"reference": "CarePlan/cp1"}]
    assert [p["actor"]["reference"] for p in knee["performer"]] == ["Patient/p1", "Practitioner/t1"]
    assert knee["performedPeriod"] == {
        "start": "2026-01-05T09:00:00+00:00",
        "end": "2026-01-05T09:45:00+00:00",
    }
    assert knee["outcome"]["coding"][0] == {
        "system": CS_EXERCISE_OUTCOME,
        "code": "below-target",
        "display": "Completed below target",
    }
    assert hip["outcome"]["coding"][0]["code"] == "target-met"
    assert [c["coding"][0] for c in knee["usedCode"]] == [
        {"system": CS_CUE, "code": "tactile-cueing", "display": "Tactile cueing"},
        {"system": CS_CUE, "code": "emg-biofeedback", "display": "EMG biofeedback"},
    ]
    assert "usedCode" not in hip


def test_procedure_extensions_hold_sets_load_assistance_feedback_and_level(session: SessionState) -> None:
    knee, hip = procedure_resources(session)
    perf = _parts(_ext(knee, SD_EXERCISE_PERFORMANCE))
    assert [v for k, v in perf if k == "set"] == [10, 10, 8]
    assert dict((k, v) for k, v in perf if k != "set") == {
        "targetReps": 10,
        "load": {"value": 2.0, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
        "assistance": {"system": CS_ASSISTANCE, "code": "minimal", "display": "Minimal assistance"},
        "withFeedback": True,
        "retentionAttempt": False,
        "dualTask": False,
    }
    hip_perf = dict(_parts(_ext(hip, SD_EXERCISE_PERFORMANCE)))
    assert (hip_perf["withFeedback"], hip_perf["retentionAttempt"], hip_perf["dualTask"]) == (
        False,
        True,
        True,
    )
    assert (hip_perf["dualTaskMeasure"], hip_perf["dualTaskLowerIsBetter"]) == ("reps", False)
    assert (hip_perf["dualTaskSingle"], hip_perf["dualTaskDual"]) == ({"value": 12.0}, {"value": 11.0})
    assert hip_perf["dualTaskCost"] == {
        "value": 8.33,
        "unit": "%",
        "system": "http://unitsofmeasure.org",
        "code": "%",
    }
    rom_obs = session.exercises[1].rom
    assert rom_obs is not None
    assert hip_perf["rom"] == {
        "value": 35.0,
        "unit": "deg",
        "system": "http://unitsofmeasure.org",
        "code": "deg",
    }
    assert (hip_perf["romMethod"], hip_perf["romMotion"]) == ("inclinometer", "hip-abduction")
    assert hip_perf["romObservation"] == {"reference": f"Observation/{rom_obs.observation_id}"}
    hip_note = hip["note"][0]["text"]
    for words in (
        "active ROM hip-abduction 35 deg (inclinometer)",
        "retention attempt",
        "under a dual task (cost 8.33 %: reps 12 -> 11)",
    ):
        assert words in hip_note
    assert dict(_parts(_ext(knee, SD_PROGRESSION_LEVEL))) == {
        "joints": 0,
        "motion": 1,
        "loadBearing": 0,
        "proprioception": 0,
        "resistance": 0,
        "tempo": 0,
    }
    assert _ext(knee, SD_DEVICE_STREAM)["valueIdentifier"]["value"] == "emg-7f3a"
    readable = knee["note"][0]["text"]
    for words in (
        "3 set(s) of 10, 10, 8 reps (target 10)",
        "load 2 kg",
        "assistance minimal",
        "quality 3/4",
        "pain 2 -> 7/10",
        "with feedback",
    ):
        assert words in readable
    assert knee["note"][1]["text"] == "compensated with hip hitch"


def test_symptoms_appear_as_complications(session: SessionState, monday: datetime) -> None:
    knee, hip = procedure_resources(session)
    assert [c["text"] for c in knee["complication"]] == ["Pain 7/10 after the exercise"]
    assert "complication" not in hip
    assert knee["followUp"][0]["coding"][0]["code"] == "symptom-check-24h"
    flared = record_symptoms(session, SymptomResponse(pain24h=4, flare=True), now=monday + timedelta(days=1))
    _, hip = procedure_resources(flared)
    assert hip["complication"][0]["text"] == "Symptom flare not settled at 24 hours (pain 4/10)"
