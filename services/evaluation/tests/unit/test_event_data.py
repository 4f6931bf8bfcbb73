"""The evaluation.completed.v1 / evaluation.reassessed.v1 data the plan service drafts plans from."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from relearn.evaluation.events import (
    EVALUATION_COMPLETED,
    EVALUATION_REASSESSED,
    evaluation_completed_data,
    event_type,
)
from relearn.evaluation.mapper import condition_resources, evaluation_to_observations, item_path
from relearn.evaluation.schemas import EvaluationIn

Ids = Callable[[str], str]


def event_data(ev: EvaluationIn, ids: Ids) -> tuple[dict[str, Any], dict[str, str]]:
    panel, members = evaluation_to_observations(ev, ids=ids)
    conditions = condition_resources(ev, ids=ids, panel_id=panel["id"])
    data = evaluation_completed_data(ev, panel, members, conditions)
    return data, {str(item_path(m)): m["id"] for m in [*members, *conditions]}


def test_event_carries_the_evaluation_and_patient(evaluation: EvaluationIn, ids: Ids) -> None:
    data, _ = event_data(evaluation, ids)
    assert json.loads(json.dumps(data)) == data
    assert (data["evaluationId"], data["patient"], data["kind"]) == ("obs-1", "pat-1", "initial")
    assert (data["effective"], data["encounter"], data["performer"]) == (
        "2026-11-20T10:15:00+01:00",
        "enc-3",
        "Practitioner/pt-7",
    )
    assert data["normsVersion"]


def test_deficits_point_at_their_observations_with_norm_and_severity(
    evaluation: EvaluationIn, ids: Ids
) -> None:
    data, observation_of = event_data(evaluation, ids)
    deficits = {d["item"]: d for d in data["deficits"]}
    assert set(deficits) == {
        "pain",
        "balance[0]",
        "balance[1]",
        "balance[2]",
        "rom[0]",
        "rom[2]",
        "strength[0]",
        "strength[2]",
    }
    for item, d in deficits.items():
        assert d["observationId"] == observation_of[item]
    knee = deficits["rom[0]"]
    assert {
        k: knee[k] for k in ("measure", "kind", "side", "joint", "motion", "mode", "measured", "unit")
    } == {
        "measure": "rom-knee-flexion",
        "kind": "range-of-motion",
        "side": "right",
        "joint": "knee",
        "motion": "flexion",
        "mode": "active",
        "measured": 90,
        "unit": "deg",
    }
    assert (
        knee["norm"]["value"] == 135 and knee["norm"]["limit"] == 121.5 and knee["norm"]["source"] == "aaos"
    )
    assert (knee["percentOfNorm"], knee["severity"]) == (66.7, "moderate")
    strength = deficits["strength[0]"]
    assert (strength["muscleGroup"], strength["grade"], strength["measured"]) == ("knee-extensors", "3+", 3)
    stance = deficits["balance[0]"]
    assert stance["norm"]["appliesTo"] == {"ageYears": [70, 79], "vision": "eyes-open", "surface": "firm"}
    assert stance["conditions"] == {"vision": "eyes-open", "surface": "firm"}


def test_goals_and_their_targets_are_in_the_event(evaluation: EvaluationIn, ids: Ids) -> None:
    data, observation_of = event_data(evaluation, ids)
    assert [g["text"] for g in data["goals"]] == [
        "Walk to the shop without my cane",
        "Kick a ball with my grandson",
        "Feel steadier",
    ]
    walk, kick, steadier = data["goals"]
    assert walk["observationId"] == observation_of["goals[0]"]
    assert walk["target"] == {
        "measure": "tug",
        "code": {
            "system": "http://loinc.org",
            "code": "89423-8",
            "display": "Time to rise from chair, walk 10 feet and back, and return to sitting [TUG]",
        },
        "value": 12,
        "unit": "s",
        "comparator": "<=",
        "side": None,
        "muscleGroup": None,
        "dueDate": "2027-02-01",
    }
    assert (kick["target"]["measure"], kick["target"]["comparator"], kick["target"]["muscleGroup"]) == (
        "mmt-grade",
        ">=",
        "knee-extensors",
    )
    assert steadier["target"] is None


def test_referral_conditions_and_concerns_are_in_the_event(evaluation: EvaluationIn, ids: Ids) -> None:
    data, observation_of = event_data(evaluation, ids)
    stroke, other = data["referralConditions"]
    assert (stroke["kind"], stroke["onset"], stroke["snomed"]["code"]) == ("stroke", "2026-08", "230690007")
    assert stroke["condition"] == f"Condition/{observation_of['referralConditions[0]']}"
    assert data["conditions"] == [stroke["condition"], other["condition"]]
    assert stroke["icd10cm"]["code"] == "I63.9"
    assert (other["kind"], other["text"], other["snomed"]) == ("other", "Peripheral neuropathy", None)
    assert data["concerns"] == [
        {"observationId": observation_of["concerns[0]"], "text": "I am afraid of falling on the stairs"}
    ]


def test_reassessment_emits_its_own_event(payload: dict[str, Any], ids: Ids) -> None:
    assert event_type(EvaluationIn.model_validate(payload)) == EVALUATION_COMPLETED
    payload["kind"] = "reassessment"
    ev = EvaluationIn.model_validate(payload)
    assert event_type(ev) == EVALUATION_REASSESSED
    data, _ = event_data(ev, ids)
    assert data["kind"] == "reassessment"
    assert data["deficits"]


def test_no_deficits_when_everything_is_within_norms(ids: Ids) -> None:
    ev = EvaluationIn.model_validate(
        {
            "patient": "p",
            "effective": "2026-11-20",
            "kind": "reassessment",
            "pain": 2,
            "rom": [{"joint": "knee", "motion": "flexion", "side": "left", "mode": "active", "degrees": 135}],
            "goals": [{"text": "Keep it up"}],
        }
    )
    data, _ = event_data(ev, ids)
    assert data["deficits"] == []
    assert data["goals"][0]["target"] is None


def test_screening_carries_the_tug_and_berg_measured_with_their_observations(
    evaluation: EvaluationIn, ids: Ids
) -> None:
    data, observation_of = event_data(evaluation, ids)
    assert data["screening"] == {
        "tug": {"value": 21.3, "unit": "s", "observation": f"Observation/{observation_of['balance[1]']}"},
        "berg": {
            "value": 38,
            "unit": "{score}",
            "observation": f"Observation/{observation_of['balance[2]']}",
        },
    }


def test_screening_is_null_when_not_measured_and_reports_within_norm_results(ids: Ids) -> None:
    base = {"patient": "p", "effective": "2026-11-20", "kind": "reassessment", "pain": 2}
    data, _ = event_data(EvaluationIn.model_validate(base), ids)
    assert data["screening"] == {"tug": None, "berg": None}

    fit = EvaluationIn.model_validate({**base, "ageYears": 60, "balance": [{"test": "tug", "value": 7.5}]})
    data, observation_of = event_data(fit, ids)
    assert data["deficits"] == []  # a normal TUG is no deficit, yet the plan still needs its value
    assert data["screening"]["tug"] == {
        "value": 7.5,
        "unit": "s",
        "observation": f"Observation/{observation_of['balance[0]']}",
    }
    assert data["screening"]["berg"] is None


def test_screening_takes_the_worse_of_two_records(ids: Ids) -> None:
    twice = [
        {"test": "tug", "value": 12.0},
        {"test": "berg", "value": 50},
        {"test": "tug", "value": 15.5},
        {"test": "berg", "value": 44},
        {"test": "tug", "value": 11.0},
    ]
    ev = EvaluationIn.model_validate(
        {"patient": "p", "effective": "2026-11-20", "kind": "initial", "balance": twice}
    )
    data, observation_of = event_data(ev, ids)
    tug, berg = data["screening"]["tug"], data["screening"]["berg"]
    assert (tug["value"], tug["observation"]) == (15.5, f"Observation/{observation_of['balance[2]']}")
    assert (berg["value"], berg["observation"]) == (44, f"Observation/{observation_of['balance[3]']}")
