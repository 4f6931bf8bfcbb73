"""The one exercise record: stored, answered and sent from the same model; rows stored earlier still load."""

from __future__ import annotations

from relearn.sessions.domain.session import SessionState
from relearn.sessions.events import session_logged_data

# A finished session as the log stored it before the record was the API's answer (bare ids).
_STORED_BEFORE = """{
 "id": "s1", "patient": "p1", "care_plan": "CarePlan/cp1", "plan_version": 2, "setting": "clinic",
 "start": "2026-01-05T09:00:00+01:00", "end": "2026-01-05T09:45:00+01:00", "status": "finished",
 "exercises": [{
   "procedure_id": "proc-1", "activity": "knee-ext", "pattern": "knee-extension-seated",
   "level": {"motion": 1}, "sets": 2, "reps": [10, 8], "target_reps": 10, "load_kg": 2.0,
   "assistance": "minimal", "cues": ["mirror"], "quality": 3, "pain_after": 2, "with_feedback": true,
   "dual_task": true, "dual_task_cost_pct": 20.0,
   "dual_task_trial": {"measure": "reps", "single": 10, "dual": 8, "unit": null, "lower_is_better": false},
   "rom": {"value_deg": 85.0, "method": "goniometer", "motion": null, "observation_id": "obs-1"}
 }]
}"""


def test_a_session_stored_before_loads_with_its_references() -> None:
    state = SessionState.model_validate_json(_STORED_BEFORE)
    (exercise,) = state.exercises
    assert (exercise.procedure, exercise.procedure_id) == ("Procedure/proc-1", "proc-1")
    assert exercise.rom is not None
    assert (exercise.rom.observation, exercise.rom.observation_id) == ("Observation/obs-1", "obs-1")
    again = SessionState.model_validate_json(state.model_dump_json())
    assert again == state, "a stored state reads back as itself"


def test_the_api_answer_and_the_event_carry_the_same_record() -> None:
    (exercise,) = SessionState.model_validate_json(_STORED_BEFORE).exercises
    answered = exercise.model_dump(mode="json", by_alias=True)
    (sent,) = session_logged_data(SessionState.model_validate_json(_STORED_BEFORE))["exercises"]
    assert answered["targetMet"] is False and "targetMet" not in sent
    assert {"difficulty", "notes"} <= answered.keys() and not {"difficulty", "notes"} & sent.keys()
    for key in sent.keys() - {"level", "start", "end"}:
        assert sent[key] == answered[key], key
    assert sent["level"]["motion"] == 1 and sent["level"]["tempo"] == 0
    assert sent["rom"] == {
        "valueDeg": 85.0,
        "method": "goniometer",
        "motion": None,
        "observation": "Observation/obs-1",
    }
    assert sent["dualTaskTrial"] == {
        "measure": "reps",
        "single": 10,
        "dual": 8,
        "unit": None,
        "lowerIsBetter": False,
    }
