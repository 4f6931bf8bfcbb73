from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from relearn.sessions.domain.plan_view import PlanView, apply_plan_event
from relearn.sessions.domain.session import SessionState
from relearn.sessions.schemas import (
    ExercisePerformed,
    HomePractice,
    SessionClose,
    SessionStart,
    SymptomResponse,
    parse,
)
from relearn.sessions.service import (
    amend_symptoms,
    close_session,
    log_home_practice,
    record_exercise,
    record_exercises,
    record_symptoms,
    start_session,
)
from relearn.shared.fhir import Conflict, UnprocessableEntity

Exercise = Callable[..., dict[str, Any]]


def _start(plan: PlanView | None, at: datetime, **overrides: Any) -> SessionState:
    body = {"patient": "p1", "carePlan": "CarePlan/cp1", "practitioner": "Practitioner/t1", **overrides}
    return start_session("s1", parse(SessionStart, body), plan, now=at)


def _closed(plan: PlanView, monday: datetime, exercise: Exercise) -> SessionState:
    state = record_exercise(_start(plan, monday), parse(ExercisePerformed, exercise()), plan)
    return close_session(state, SessionClose(), now=monday + timedelta(minutes=40))


def test_a_session_runs_from_start_to_close_with_a_summary(
    plan: PlanView, monday: datetime, exercise: Exercise
) -> None:
    state = _start(plan, monday)
    assert (state.status, state.start, state.plan_version) == ("in-progress", monday, 2)
    state = record_exercises(
        state,
        [
            parse(ExercisePerformed, exercise()),
            parse(
                ExercisePerformed,
                exercise(activity="hip-abd", sets=2, reps=[12, 12], painBefore=3, painAfter=5, quality=2),
            ),
        ],
        plan,
    )
    closed = close_session(state, SessionClose(notes="tolerated well"), now=monday + timedelta(minutes=40))
    assert (closed.status, closed.end, closed.notes) == (
        "finished",
        monday + timedelta(minutes=40),
        "tolerated well",
    )
    s = closed.summary
    assert s is not None
    assert (s.exercises, s.sets, s.reps) == (2, 5, 52)
    assert (s.targets_met, s.targets_missed) == (1, 1)  # knee 10,10,8 < 10; hip 12,12 >= 12
    assert (s.pain_before_max, s.pain_after_max, s.pain_increase_max, s.pain_zone) == (3, 5, 2, "acceptable")
    assert (s.mean_quality, s.duration_minutes) == (2.5, 40.0)


def test_recorded_exercise_takes_pattern_level_and_target_from_the_plan(
    plan: PlanView, monday: datetime, exercise: Exercise
) -> None:
    state = record_exercise(
        _start(plan, monday), parse(ExercisePerformed, exercise(level={"joints": 1})), plan
    )
    e = state.exercises[0]
    assert e.pattern == "knee-extension-seated"
    assert e.level == {
        "joints": 1,
        "motion": 0,
        "loadBearing": 0,
        "proprioception": 0,
        "resistance": 0,
        "tempo": 0,
    }
    assert e.target_reps == 10  # from the dose
    stated = record_exercise(state, parse(ExercisePerformed, exercise(targetReps=8)), plan)
    assert stated.exercises[1].target_reps == 8


def test_procedure_ids_are_the_same_when_a_session_is_rebuilt(
    plan: PlanView, monday: datetime, exercise: Exercise
) -> None:
    ids = [
        [
            e.procedure_id
            for e in record_exercises(
                _start(plan, monday), [parse(ExercisePerformed, exercise())] * 2, plan
            ).exercises
        ]
        for _ in range(2)
    ]
    assert ids[0] == ids[1]
    assert ids[0][0] != ids[0][1]


def test_an_activity_not_in_the_active_plan_is_refused_with_422(
    plan: PlanView, monday: datetime, exercise: Exercise
) -> None:
    state = _start(plan, monday)
    with pytest.raises(UnprocessableEntity) as caught:
        record_exercises(
            state,
            [parse(ExercisePerformed, exercise()), parse(ExercisePerformed, exercise(activity="ankle-df"))],
            plan,
        )
    assert caught.value.status_code == 422
    assert caught.value.issues[0].expression == ["exercises[1].activity"]
    assert "'ankle-df' is not an activity of the active plan CarePlan/cp1" in str(caught.value)
    with pytest.raises(UnprocessableEntity) as single:
        record_exercise(state, parse(ExercisePerformed, exercise(activity="ankle-df")), plan)
    assert single.value.issues[0].expression == ["activity"]


def test_an_exercise_is_refused_once_the_plan_is_revoked(
    plan: PlanView, plan_event: Callable[..., dict[str, Any]], monday: datetime, exercise: Exercise
) -> None:
    state = _start(plan, monday)
    revoked = apply_plan_event(plan, "plan.updated.v1", plan_event(3, status="revoked"))
    with pytest.raises(UnprocessableEntity, match="not active"):
        record_exercise(state, parse(ExercisePerformed, exercise()), revoked)


def test_a_session_cannot_start_on_a_draft_unknown_or_other_patients_plan(
    plan: PlanView, plan_event: Callable[..., dict[str, Any]], monday: datetime
) -> None:
    draft = apply_plan_event(None, "plan.drafted.v1", plan_event(1))
    with pytest.raises(UnprocessableEntity, match="not active"):
        _start(draft, monday)
    with pytest.raises(UnprocessableEntity, match="not known"):
        _start(None, monday)
    with pytest.raises(UnprocessableEntity, match="another patient"):
        _start(plan, monday, patient="p2")


def test_recording_after_close_is_a_conflict(plan: PlanView, monday: datetime, exercise: Exercise) -> None:
    closed = _closed(plan, monday, exercise)
    with pytest.raises(Conflict) as caught:
        record_exercise(closed, parse(ExercisePerformed, exercise()), plan)
    assert caught.value.status_code == 409
    assert "Encounter/s1 is finished: exercises can be recorded only while the session is in progress" in str(
        caught.value
    )
    with pytest.raises(Conflict, match="it can be closed only while"):
        close_session(closed, SessionClose(), now=monday + timedelta(hours=1))


def test_a_session_cannot_end_before_it_started(plan: PlanView, monday: datetime) -> None:
    with pytest.raises(UnprocessableEntity) as caught:
        close_session(_start(plan, monday), SessionClose(end=monday - timedelta(minutes=1)), now=monday)
    assert caught.value.issues[0].expression == ["end"]


def test_symptoms_are_recorded_once_after_close_and_corrected_by_amendment(
    plan: PlanView, monday: datetime, exercise: Exercise
) -> None:
    open_state = record_exercise(_start(plan, monday), parse(ExercisePerformed, exercise()), plan)
    next_day = monday + timedelta(days=1)
    with pytest.raises(Conflict, match="after the session is closed"):
        record_symptoms(open_state, SymptomResponse(pain24h=2, flare=False), now=next_day)

    closed = close_session(open_state, SessionClose(), now=monday + timedelta(minutes=40))
    recorded = record_symptoms(closed, SymptomResponse(pain24h=6, flare=True), now=next_day)
    assert recorded.symptoms is not None
    assert (recorded.symptoms.pain24h, recorded.symptoms.flare, recorded.symptoms.recorded_at) == (
        6,
        True,
        next_day,
    )

    with pytest.raises(Conflict, match="already has its 24-hour symptom response"):
        record_symptoms(recorded, SymptomResponse(pain24h=2, flare=False), now=next_day)

    later = next_day + timedelta(hours=2)
    amended = amend_symptoms(recorded, SymptomResponse(pain24h=2, flare=False, notes="misread"), now=later)
    assert amended.symptoms is not None
    assert (amended.symptoms.pain24h, amended.symptoms.flare, amended.symptoms.amendment) == (2, False, 1)
    assert amended.symptom_history == (recorded.symptoms,)


def test_amending_needs_a_recorded_response(plan: PlanView, monday: datetime, exercise: Exercise) -> None:
    closed = _closed(plan, monday, exercise)
    with pytest.raises(Conflict, match="no 24-hour symptom response to amend"):
        amend_symptoms(closed, SymptomResponse(pain24h=2, flare=False), now=monday + timedelta(days=1))


def test_symptoms_cannot_predate_the_session_end(
    plan: PlanView, monday: datetime, exercise: Exercise
) -> None:
    closed = _closed(plan, monday, exercise)
    with pytest.raises(UnprocessableEntity) as caught:
        record_symptoms(closed, SymptomResponse(pain24h=2, flare=False, recorded_at=monday), now=monday)
    assert caught.value.issues[0].expression == ["recordedAt"]


def test_home_practice_is_a_finished_one_exercise_session(plan: PlanView, monday: datetime) -> None:
    body = {
        "patient": "p1",
        "carePlan": "cp1",
        "activity": "hip-abd",
        "sets": 2,
        "reps": [12, 10],
        "painAfter": 1,
        "difficulty": 3,
    }
    state = log_home_practice("h1", parse(HomePractice, body), plan, now=monday)
    assert (state.status, state.setting, state.start, state.end) == ("finished", "home", monday, monday)
    (e,) = state.exercises
    assert (e.pattern, e.target_reps, e.load_kg, e.assistance) == (
        "hip-abduction-side-lying",
        12,
        0.0,
        "none",
    )
    assert (e.quality, e.pain_before, e.difficulty, e.with_feedback) == (None, None, 3, False)
    assert e.target_met is False
    with pytest.raises(UnprocessableEntity) as caught:
        log_home_practice("h2", parse(HomePractice, {**body, "activity": "ankle-df"}), plan, now=monday)
    assert caught.value.issues[0].expression == ["activity"]


def test_states_and_plan_views_survive_a_json_round_trip(
    plan: PlanView, monday: datetime, exercise: Exercise
) -> None:
    recorded = record_symptoms(
        _closed(plan, monday, exercise),
        SymptomResponse(pain24h=1, flare=False),
        now=monday + timedelta(days=1),
    )
    assert SessionState.model_validate_json(recorded.model_dump_json()) == recorded
    assert PlanView.model_validate_json(plan.model_dump_json()) == plan


def test_rom_observation_ids_are_stable_when_a_session_is_rebuilt_and_differ_per_exercise(
    plan: PlanView, monday: datetime, exercise: Exercise
) -> None:
    body = exercise(rom={"valueDeg": 80, "method": "goniometer"})

    def rom_ids() -> list[str]:
        state = record_exercises(_start(plan, monday), [parse(ExercisePerformed, body)] * 2, plan)
        return [e.rom.observation_id for e in state.exercises if e.rom is not None]

    first, again = rom_ids(), rom_ids()
    assert first == again and len(set(first)) == 2


def test_new_exercise_fields_survive_a_json_round_trip_and_old_states_still_load(
    plan: PlanView, monday: datetime, exercise: Exercise
) -> None:
    body = exercise(
        withFeedback=False,
        retentionAttempt=True,
        dualTask=True,
        dualTaskTrial={"measure": "reps", "single": 10, "dual": 9, "lowerIsBetter": False},
        rom={"valueDeg": 80, "method": "device", "motion": "knee-extension"},
    )
    state = record_exercise(_start(plan, monday), parse(ExercisePerformed, body), plan)
    assert SessionState.model_validate_json(state.model_dump_json()) == state
    (e,) = state.exercises
    assert (e.retention_attempt, e.dual_task_cost_pct) == (True, 10.0)

    # A session stored before these fields existed (a client-typed cost, no trial, no ROM) still loads.
    stored = state.model_dump(mode="json")
    for old in stored["exercises"]:
        for name in ("dual_task_trial", "retention_attempt", "rom"):
            del old[name]
        old["dual_task_cost_pct"] = 12.0
    (loaded,) = SessionState.model_validate(stored).exercises
    assert (loaded.dual_task_cost_pct, loaded.dual_task_trial, loaded.retention_attempt, loaded.rom) == (
        12.0,
        None,
        False,
        None,
    )
