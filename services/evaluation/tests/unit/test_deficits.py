"""Deficits: measurements compared with the norms, explainably."""

from __future__ import annotations

from typing import Any

import pytest

from relearn.evaluation.domain.deficits import Deficit, assess, find_deficits
from relearn.evaluation.schemas import EvaluationIn


def evaluation_with(**items: Any) -> EvaluationIn:
    return EvaluationIn.model_validate(
        {"patient": "p", "effective": "2026-11-20", "kind": "initial", **items}
    )


def one_deficit(**items: Any) -> Deficit | None:
    found = find_deficits(evaluation_with(**items))
    assert len(found) <= 1
    return found[0] if found else None


def rom(joint: str, motion: str, degrees: float, side: str = "left", mode: str = "active") -> dict[str, Any]:
    return {"joint": joint, "motion": motion, "side": side, "mode": mode, "degrees": degrees}


def test_90_degrees_of_knee_flexion_is_a_deficit_140_is_not() -> None:
    assert one_deficit(rom=[rom("knee", "flexion", 140)]) is None
    d = one_deficit(rom=[rom("knee", "flexion", 90, side="right")])
    assert d is not None
    assert (d.measure.key, d.side, d.joint, d.motion, d.mode) == (
        "rom-knee-flexion",
        "right",
        "knee",
        "flexion",
        "active",
    )
    assert (d.measured, d.norm.value, d.norm.limit, d.percent_of_norm) == (90, 135, 121.5, 66.7)
    assert d.severity == "moderate"
    assert d.norm.source.key == "aaos"
    assert d.explanation == (
        "Right knee flexion (active) 90 deg is below the limit 121.5 deg (mean 135 deg; 66.7% of it): "
        "moderate (source: aaos)."
    )


@pytest.mark.parametrize(
    ("degrees", "severity"), [(122, None), (121, "mild"), (102, "mild"), (101, "moderate"), (67.5, "severe")]
)
def test_knee_flexion_severity_is_the_percent_of_norm(degrees: float, severity: str | None) -> None:
    d = one_deficit(rom=[rom("knee", "flexion", degrees)])
    assert (d.severity if d else None) == severity


@pytest.mark.parametrize(
    ("degrees", "severity"), [(0, None), (-5, None), (-6, "mild"), (-10, "moderate"), (-25, "severe")]
)
def test_knee_extension_lag_is_judged_in_degrees(degrees: float, severity: str | None) -> None:
    d = one_deficit(rom=[rom("knee", "extension", degrees)])
    assert (d.severity if d else None) == severity
    if d is not None:
        assert d.percent_of_norm is None  # the norm is 0 deg


def test_ankle_that_cannot_reach_neutral_is_a_severe_deficit() -> None:
    d = one_deficit(rom=[rom("ankle", "dorsiflexion", -5, mode="passive")])
    assert d is not None and d.severity == "severe" and d.percent_of_norm == -25


@pytest.mark.parametrize(
    ("grade", "severity"),
    [
        (5, None),
        ("5-", "mild"),
        ("4+", "mild"),
        (4, "mild"),
        ("4-", "mild"),
        ("3+", "moderate"),
        ("3-", "moderate"),
        ("2+", "severe"),
        (0, "severe"),
    ],
)
def test_muscle_grades_below_5_are_deficits(grade: Any, severity: str | None) -> None:
    d = one_deficit(strength=[{"muscleGroup": "ankle-dorsiflexors", "side": "left", "grade": grade}])
    assert (d.severity if d else None) == severity
    if d is not None:
        assert d.grade == str(grade)
        assert d.muscle_group == "ankle-dorsiflexors"
        assert d.norm.value == 5


@pytest.mark.parametrize(
    ("seconds", "severity"), [(13.5, None), (14, "mild"), (20, "moderate"), (31, "severe")]
)
def test_timed_up_and_go_above_13_5_s_is_a_fall_risk(seconds: float, severity: str | None) -> None:
    d = one_deficit(balance=[{"test": "tug", "value": seconds}])
    assert (d.severity if d else None) == severity
    if d is not None:
        assert d.norm.source.key == "shumway-cook-2000"


@pytest.mark.parametrize(("score", "severity"), [(45, None), (44, "mild"), (40, "moderate"), (20, "severe")])
def test_berg_below_45_is_a_fall_risk(score: int, severity: str | None) -> None:
    d = one_deficit(balance=[{"test": "berg", "value": score}])
    assert (d.severity if d else None) == severity


@pytest.mark.parametrize(
    ("pain", "severity"), [(0, None), (3, None), (4, "mild"), (5, "moderate"), (7, "severe")]
)
def test_pain_above_3_is_a_deficit(pain: int, severity: str | None) -> None:
    d = one_deficit(pain=pain)
    assert (d.severity if d else None) == severity


def test_single_leg_stance_is_judged_against_the_patients_age_band() -> None:
    stance = [{"test": "single-leg-stance", "side": "left", "value": 20}]
    assert one_deficit(ageYears=72, balance=stance) is None  # mean 15 s at 70-79
    d = one_deficit(ageYears=35, balance=stance)  # mean 43 s at 18-39
    assert d is not None and d.severity == "moderate" and d.norm.age == (18, 39)
    assert one_deficit(balance=stance) is None  # no age: not compared


def test_eyes_closed_and_sway_are_recorded_but_not_judged() -> None:
    ev = evaluation_with(
        ageYears=50,
        balance=[
            {"test": "single-leg-stance", "side": "left", "vision": "eyes-closed", "value": 1},
            {"test": "sway-ellipse-area", "value": 400},
        ],
    )
    assert assess(ev) == []


def test_within_norm_measurements_are_assessed_without_a_deficit(evaluation: EvaluationIn) -> None:
    judged = {a.item: a.deficit is not None for a in assess(evaluation)}
    assert judged == {
        "pain": True,
        "balance[0]": True,
        "balance[1]": True,
        "balance[2]": True,
        "rom[0]": True,
        "rom[1]": False,
        "rom[2]": True,
        "rom[3]": False,
        "strength[0]": True,
        "strength[1]": False,
        "strength[2]": True,
    }


def test_deficits_are_deterministic_and_in_request_order(evaluation: EvaluationIn) -> None:
    first = find_deficits(evaluation)
    assert first == find_deficits(evaluation)
    assert [d.item for d in first] == [
        "pain",
        "balance[0]",
        "balance[1]",
        "balance[2]",
        "rom[0]",
        "rom[2]",
        "strength[0]",
        "strength[2]",
    ]
