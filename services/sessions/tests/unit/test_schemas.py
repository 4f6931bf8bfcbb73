from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from relearn.sessions.schemas import ExercisePerformed, HomePractice, SessionStart, SymptomResponse, parse
from relearn.shared.fhir.errors import InvalidResource


def _refused(model: type[Any], body: dict[str, Any], prefix: str = "") -> InvalidResource:
    with pytest.raises(InvalidResource) as caught:
        parse(model, body, prefix)
    assert caught.value.status_code == 400
    return caught.value


def test_a_full_exercise_is_read_with_camel_case_fields(exercise: Callable[..., dict[str, Any]]) -> None:
    e = parse(ExercisePerformed, exercise(dualTask=True, dualTaskCostPct=-4.5, targetReps=10))
    assert (e.sets, e.reps, e.load_kg, e.assistance) == (3, [10, 10, 8], 2.0, "minimal")
    assert e.cues == ["tactile-cueing", "emg-biofeedback"]
    assert e.level.given() == {"motion": 1}
    assert (e.dual_task, e.dual_task_cost_pct, e.target_reps) == (True, -4.5, 10)


@pytest.mark.parametrize(
    ("override", "path", "words"),
    [
        ({"painAfter": 11}, "exercises[0].painAfter", "less than or equal to 10"),
        ({"painBefore": -1}, "exercises[0].painBefore", "greater than or equal to 0"),
        ({"quality": 5}, "exercises[0].quality", "less than or equal to 4"),
        ({"reps": [10, 10]}, "exercises[0].reps", "sets is 3"),
        ({"cues": ["telepathy"]}, "exercises[0].cues[0]", "not a known cue"),
        ({"assistance": "lots"}, "exercises[0].assistance", "'none', 'minimal', 'moderate' or 'maximal'"),
        ({"dualTaskCostPct": 10}, "exercises[0].dualTaskCostPct", "only meaningful when dualTask is true"),
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
