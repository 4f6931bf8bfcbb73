from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from relearn.sessions.schemas import ExercisePerformed, HomePractice, SessionStart, SymptomResponse, parse
from relearn.shared.fhir import InvalidResource


def _refused(model: type[Any], body: dict[str, Any], prefix: str = "") -> InvalidResource:
    with pytest.raises(InvalidResource) as caught:
        parse(model, body, prefix)
    assert caught.value.status_code == 400
    return caught.value


def test_a_full_exercise_is_read_with_camel_case_fields(exercise: Callable[..., dict[str, Any]]) -> None:
    trial = {"measure": "gait-speed", "single": 1.2, "dual": 0.9, "unit": "m/s", "lowerIsBetter": False}
    rom = {"valueDeg": 95.5, "method": "device", "motion": "knee-flexion"}
    e = parse(ExercisePerformed, exercise(dualTask=True, dualTaskTrial=trial, rom=rom, targetReps=10))
    assert (e.sets, e.reps, e.load_kg, e.assistance) == (3, [10, 10, 8], 2.0, "minimal")
    assert e.cues == ["tactile-cueing", "emg-biofeedback"]
    assert e.level.given() == {"motion": 1}
    assert (e.dual_task, e.target_reps, e.retention_attempt) == (True, 10, False)
    assert e.dual_task_trial is not None and e.rom is not None
    assert (e.dual_task_trial.measure, e.dual_task_trial.unit, e.dual_task_trial.cost_pct) == (
        "gait-speed",
        "m/s",
        25.0,
    )
    assert (e.rom.value_deg, e.rom.method, e.rom.motion) == (95.5, "device", "knee-flexion")


@pytest.mark.parametrize(
    ("single", "dual", "lower_is_better", "cost"),
    [
        (10, 8, False, 20.0),  # 2 reps fewer under the dual task: worse
        (10, 12, False, -20.0),  # more reps under the dual task: an improvement, negative
        (10, 12, True, 20.0),  # TUG 10 s -> 12 s: slower is worse
        (10, 8, True, -20.0),  # less sway under the dual task: an improvement
        (3, 3, False, 0.0),
        (-4, -5, False, 25.0),  # a signed measure: falling further below is still worse
    ],
)
def test_the_dual_task_cost_is_positive_when_the_dual_task_makes_it_worse(
    exercise: Callable[..., dict[str, Any]], single: float, dual: float, lower_is_better: bool, cost: float
) -> None:
    trial = {"measure": "m", "single": single, "dual": dual, "lowerIsBetter": lower_is_better}
    e = parse(ExercisePerformed, exercise(dualTask=True, dualTaskTrial=trial))
    assert e.dual_task_trial is not None
    assert e.dual_task_trial.cost_pct == cost


def _unprocessable(body: dict[str, Any]) -> InvalidResource:
    with pytest.raises(InvalidResource) as caught:
        parse(ExercisePerformed, body, "exercises[0]")
    assert caught.value.status_code == 422
    return caught.value


@pytest.mark.parametrize(
    ("override", "path", "words"),
    [
        ({"dualTask": True, "dualTaskCostPct": 10}, "exercises[0].dualTaskCostPct", "send dualTaskTrial"),
        ({"dualTaskCostPct": None}, "exercises[0].dualTaskCostPct", "is computed by the service"),
        ({"retentionAttempt": True, "withFeedback": True}, "exercises[0].retentionAttempt", "feedback-free"),
        (
            {"dualTaskTrial": {"measure": "reps", "single": 10, "dual": 8, "lowerIsBetter": False}},
            "exercises[0].dualTaskTrial",
            "only recorded when dualTask is true",
        ),
    ],
)
def test_broken_rules_between_fields_are_unprocessable_naming_the_field(
    exercise: Callable[..., dict[str, Any]], override: dict[str, Any], path: str, words: str
) -> None:
    issue = _unprocessable(exercise(**override)).issues[0]
    assert (issue.code, issue.expression) == ("business-rule", [path])
    assert words in issue.diagnostics and issue.diagnostics.startswith(path)


def test_a_broken_rule_next_to_a_bad_value_reports_both(exercise: Callable[..., dict[str, Any]]) -> None:
    err = _unprocessable(exercise(dualTaskCostPct=12, painAfter=11))
    assert {(i.code, i.expression[0]) for i in err.issues} == {
        ("invalid", "exercises[0].painAfter"),
        ("business-rule", "exercises[0].dualTaskCostPct"),
    }


@pytest.mark.parametrize(
    ("override", "path", "words"),
    [
        ({"painAfter": 11}, "exercises[0].painAfter", "less than or equal to 10"),
        ({"painBefore": -1}, "exercises[0].painBefore", "greater than or equal to 0"),
        ({"quality": 5}, "exercises[0].quality", "less than or equal to 4"),
        ({"reps": [10, 10]}, "exercises[0].reps", "sets is 3"),
        ({"cues": ["telepathy"]}, "exercises[0].cues[0]", "not a known cue"),
        ({"assistance": "lots"}, "exercises[0].assistance", "'none', 'minimal', 'moderate' or 'maximal'"),
        (
            {"rom": {"valueDeg": 361, "method": "goniometer"}},
            "exercises[0].rom.valueDeg",
            "less than or equal to 360",
        ),
        (
            {"rom": {"valueDeg": -1, "method": "goniometer"}},
            "exercises[0].rom.valueDeg",
            "greater than or equal to 0",
        ),
        (
            {"rom": {"valueDeg": 90, "method": "eyeballed"}},
            "exercises[0].rom.method",
            "'goniometer', 'inclinometer' or 'device'",
        ),
        ({"rom": {"method": "goniometer"}}, "exercises[0].rom.valueDeg", "is required"),
        (
            {"rom": {"valueDeg": 90, "method": "device", "motion": "x" * 101}},
            "exercises[0].rom.motion",
            "at most 100",
        ),
        ({"retentionAttempt": "often"}, "exercises[0].retentionAttempt", "valid boolean"),
        (
            {
                "dualTask": True,
                "dualTaskTrial": {"measure": "reps", "single": 0, "dual": 8, "lowerIsBetter": False},
            },
            "exercises[0].dualTaskTrial.single",
            "must not be 0",
        ),
        (
            {
                "dualTask": True,
                "dualTaskTrial": {"measure": "reps", "single": 1e7, "dual": 8, "lowerIsBetter": False},
            },
            "exercises[0].dualTaskTrial.single",
            "less than or equal to 1000000",
        ),
        (
            {
                "dualTask": True,
                "dualTaskTrial": {"measure": "Gait Speed", "single": 1, "dual": 1, "lowerIsBetter": False},
            },
            "exercises[0].dualTaskTrial.measure",
            "should match pattern",
        ),
        (
            {"dualTask": True, "dualTaskTrial": {"measure": "reps", "single": 10, "dual": 8}},
            "exercises[0].dualTaskTrial.lowerIsBetter",
            "is required",
        ),
        ({"level": {"joint": 1}}, "exercises[0].level.joint", "not a known field"),
        ({"level": {"tempo": -1}}, "exercises[0].level.tempo", "greater than or equal to 0"),
        ({"painafter": 2}, "exercises[0].painafter", "not a known field"),
        ({"start": "2026-01-05T09:00:00"}, "exercises[0].start", "timezone"),
        (
            {"start": "2026-01-05T09:10:00Z", "end": "2026-01-05T09:00:00Z"},
            "exercises[0].end",
            "before start",
        ),
        ({"activity": "no spaces"}, "exercises[0].activity", "FHIR id"),
    ],
)
def test_bad_exercise_values_are_refused_naming_the_field(
    exercise: Callable[..., dict[str, Any]], override: dict[str, Any], path: str, words: str
) -> None:
    err = _refused(ExercisePerformed, exercise(**override), "exercises[0]")
    issue = err.issues[0]
    assert issue.code == "invalid"
    assert issue.expression == [path]
    assert words in issue.diagnostics
    assert issue.diagnostics.startswith(path)


def test_every_missing_required_field_is_reported() -> None:
    err = _refused(ExercisePerformed, {"activity": "knee-ext", "sets": 1, "reps": [5]})
    missing = {i.expression[0] for i in err.issues}
    assert missing == {"assistance", "quality", "painBefore", "painAfter", "withFeedback"}
    assert all(i.diagnostics.endswith("is required") for i in err.issues)


def test_duplicate_cues_are_kept_once(exercise: Callable[..., dict[str, Any]]) -> None:
    e = parse(ExercisePerformed, exercise(cues=["imagery", "taping", "imagery"]))
    assert e.cues == ["imagery", "taping"]


def test_session_start_accepts_bare_ids_and_normalises_references() -> None:
    s = parse(
        SessionStart, {"patient": "Patient/p1", "carePlan": "cp1", "practitioner": "PractitionerRole/r9"}
    )
    assert (s.patient, s.care_plan, s.practitioner, s.setting) == (
        "p1",
        "CarePlan/cp1",
        "PractitionerRole/r9",
        "clinic",
    )


def test_session_start_refuses_a_reference_of_the_wrong_type() -> None:
    err = _refused(SessionStart, {"patient": "p1", "carePlan": "Goal/g1", "setting": "gym"})
    assert {i.expression[0] for i in err.issues} == {"carePlan", "setting"}


def test_home_practice_needs_only_a_few_fields() -> None:
    h = parse(
        HomePractice,
        {
            "patient": "p1",
            "carePlan": "cp1",
            "activity": "knee-ext",
            "sets": 2,
            "reps": [8, 8],
            "painAfter": 1,
        },
    )
    assert (h.assistance, h.with_feedback, h.pain_before, h.difficulty) == ("none", False, None, None)


def test_symptom_response_pain_is_0_to_10() -> None:
    assert parse(SymptomResponse, {"pain24h": 4, "flare": False}).pain24h == 4
    err = _refused(SymptomResponse, {"pain24h": 11, "flare": False})
    assert err.issues[0].expression == ["pain24h"]


def test_the_24_hour_pain_field_is_spelled_as_documented() -> None:
    schema = SymptomResponse.model_json_schema(by_alias=True)
    assert "pain24h" in schema["properties"]
    assert SymptomResponse.model_validate({"pain24h": 3, "flare": False}).pain24h == 3
