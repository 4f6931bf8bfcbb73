"""The evaluation request: good input parses, bad values are rejected naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from relearn.evaluation.schemas import EvaluationIn, StrengthIn, error_pairs, parse_evaluation
from relearn.shared.fhir import InvalidResource


def errors_of(payload: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        EvaluationIn.model_validate(payload)
    return error_pairs(info.value)


def test_full_evaluation_parses_with_camel_case_fields(evaluation: EvaluationIn) -> None:
    assert evaluation.age_years == 72
    assert evaluation.referral_conditions[0].kind == "stroke"
    assert evaluation.strength[0].muscle_group == "knee-extensors"
    assert evaluation.balance[1].unit == "s"
    assert evaluation.balance[2].unit == "{score}"  # filled in from the test's unit
    assert evaluation.effective == "2026-11-20T10:15:00+01:00"  # kept as sent


def test_snake_case_names_work_from_python() -> None:
    ev = EvaluationIn(patient="p", effective="2026-11-20", kind="reassessment", age_years=40, pain=2)
    assert ev.age_years == 40


def test_400_degrees_of_knee_flexion_is_rejected_at_its_path(payload: dict[str, Any]) -> None:
    payload["rom"][1]["degrees"] = 400
    assert errors_of(payload) == [("rom[1].degrees", "400 is outside 0\u2013160 for knee flexion")]


def test_knee_extension_allows_a_lag_but_not_an_impossible_angle(payload: dict[str, Any]) -> None:
    payload["rom"] = [
        {"joint": "knee", "motion": "extension", "side": "left", "mode": "active", "degrees": -15}
    ]
    assert EvaluationIn.model_validate(payload).rom[0].degrees == -15
    payload["rom"][0]["degrees"] = -120
    assert errors_of(payload) == [("rom[0].degrees", "-120 is outside -90\u201320 for knee extension")]


def test_unknown_joint_and_motion_are_named(payload: dict[str, Any]) -> None:
    payload["rom"][0]["motion"] = "abduction"
    payload["rom"][1]["joint"] = "kne"
    errs = dict(errors_of(payload))
    assert (
        errs["rom[0].motion"] == "'abduction' is not a measured motion of the knee; known: flexion, extension"
    )
    assert errs["rom[1].joint"].startswith("unknown joint 'kne'; known: shoulder, elbow")


def test_grade_7_is_rejected(payload: dict[str, Any]) -> None:
    payload["strength"][1]["grade"] = 7
    assert errors_of(payload) == [("strength[1].grade", "7 is outside 0\u20135 for muscle grade")]


@pytest.mark.parametrize(
    ("grade", "stored", "base", "modifier"),
    [
        (4, "4", 4, None),
        ("3+", "3+", 3, "+"),
        ("4-", "4-", 4, "-"),
        ("5\u2212", "5-", 5, "-"),
        (0, "0", 0, None),
    ],
)
def test_grades_with_plus_and_minus(grade: Any, stored: str, base: int, modifier: str | None) -> None:
    s = StrengthIn.model_validate({"muscleGroup": "hip-flexors", "side": "left", "grade": grade})
    assert (s.grade, s.base_grade, s.modifier) == (stored, base, modifier)


@pytest.mark.parametrize("grade", ["5+", "0-", "1-", "0+", "3++", "4.5", 4.5, "", True, None])
def test_grades_that_are_not_grades(grade: Any) -> None:
    with pytest.raises(ValidationError) as info:
        StrengthIn.model_validate({"muscleGroup": "hip-flexors", "side": "left", "grade": grade})
    assert [path for path, _ in error_pairs(info.value)] == ["grade"]


def test_pain_11_is_rejected(payload: dict[str, Any]) -> None:
    payload["pain"] = 11
    assert errors_of(payload) == [("pain", "11 is outside 0\u201310 for pain (0-10 numeric rating)")]


def test_pain_is_a_whole_number(payload: dict[str, Any]) -> None:
    payload["pain"] = 4.5
    assert errors_of(payload) == [("pain", "pain is a whole number on the 0\u201310 numeric rating scale")]


def test_negative_times_are_rejected(payload: dict[str, Any]) -> None:
    payload["balance"][0]["value"] = -1
    payload["balance"][1]["value"] = -3
    assert errors_of(payload) == [
        ("balance[0].value", "-1 is outside 0\u2013120 for single-leg stance time"),
        ("balance[1].value", "-3 is outside 1\u2013300 for Timed Up and Go"),
    ]


def test_a_test_in_the_wrong_unit_is_rejected(payload: dict[str, Any]) -> None:
    payload["balance"][3]["unit"] = "mm/s"
    assert errors_of(payload) == [
        ("balance[3].unit", "unit 'mm/s' is not accepted for COP mean velocity; use UCUM 'cm/s'")
    ]


def test_single_leg_stance_needs_the_stance_leg(payload: dict[str, Any]) -> None:
    del payload["balance"][0]["side"]
    assert errors_of(payload) == [
        ("balance[0].side", "single-leg-stance needs the stance leg: left or right")
    ]


def test_numbers_must_be_numbers(payload: dict[str, Any]) -> None:
    payload["rom"][0]["degrees"] = "90"
    payload["balance"][2]["value"] = True
    errs = errors_of(payload)
    assert ("rom[0].degrees", "must be a number") in errs
    assert ("balance[2].value", "must be a number") in errs


def test_every_problem_is_reported_at_once(payload: dict[str, Any]) -> None:
    payload["pain"] = 11
    payload["rom"][0]["degrees"] = 400
    payload["strength"][2]["grade"] = 7
    payload["strength"][2]["side"] = "middle"
    payload["unexpected"] = 1
    paths = [path for path, _ in errors_of(payload)]
    assert sorted(paths) == sorted(
        ["pain", "rom[0].degrees", "strength[2].side", "strength[2].grade", "unexpected"]
    )


def test_effective_must_be_a_fhir_date_time_with_a_zone(payload: dict[str, Any]) -> None:
    payload["effective"] = "2026-11-20T10:15:00"
    assert errors_of(payload)[0][0] == "effective"
    payload["effective"] = "2026-02-30"
    assert errors_of(payload) == [("effective", "'2026-02-30' is not a calendar date")]
    payload["effective"] = "2026-11"
    assert errors_of(payload) == [("effective", "'2026-11' needs at least a full date (YYYY-MM-DD)")]


def test_references_are_checked(payload: dict[str, Any]) -> None:
    payload["performer"] = "Patient/x"
    payload["patient"] = "Patient/pat-1"
    assert sorted(p for p, _ in errors_of(payload)) == ["patient", "performer"]


def test_other_referral_condition_needs_text(payload: dict[str, Any]) -> None:
    del payload["referralConditions"][1]["text"]
    assert errors_of(payload) == [("referralConditions[1].text", "text is required when kind is 'other'")]


def test_goal_targets_are_checked_like_measurements(payload: dict[str, Any]) -> None:
    payload["goals"][0]["target"] = {"measure": "rom-knee-flexion", "value": 400}
    payload["goals"][1]["target"] = {"measure": "mmt-grade", "value": 4}
    payload["goals"][2]["target"] = {"measure": "walking-speed", "value": 1.2}
    errs = errors_of(payload)
    assert errs[0] == ("goals[0].target.value", "400 is outside 0\u2013160 for knee flexion")
    assert errs[1] == ("goals[1].target.muscleGroup", "a strength target needs the muscle group")
    assert errs[2][0] == "goals[2].target.measure"
    assert "rom-<joint>-<motion>" in errs[2][1]


def test_an_empty_evaluation_is_rejected() -> None:
    errs = errors_of({"patient": "p", "effective": "2026-11-20", "kind": "initial"})
    assert errs == [
        ("", "an evaluation records at least one finding (history, pain, tests, outcomes, concerns or goals)")
    ]


def test_parse_evaluation_raises_an_operation_outcome_naming_each_field(payload: dict[str, Any]) -> None:
    payload["rom"][0]["degrees"] = 400
    payload["strength"][0]["grade"] = 7
    with pytest.raises(InvalidResource) as info:
        parse_evaluation(payload)
    outcome = info.value.to_operation_outcome()
    assert info.value.status_code == 400
    assert outcome["issue"] == [
        {
            "severity": "error",
            "code": "invalid",
            "diagnostics": "rom[0].degrees: 400 is outside 0\u2013160 for knee flexion",
            "expression": ["rom[0].degrees"],
        },
        {
            "severity": "error",
            "code": "invalid",
            "diagnostics": "strength[0].grade: 7 is outside 0\u20135 for muscle grade",
            "expression": ["strength[0].grade"],
        },
    ]


def test_parse_evaluation_accepts_json_text() -> None:
    body = b'{"patient": "p", "effective": "2026-11-20", "kind": "initial", "pain": 3}'
    assert parse_evaluation(body).pain == 3
    with pytest.raises(InvalidResource) as info:
        parse_evaluation(b'{"patient": "p", "effective": "2026-11-20", "kind": "initial", "pain": "3"}')
    assert info.value.issues[0].expression == ["pain"]
