"""An evaluation as FHIR R4 Observations: valid, coded, with units, laterality and norms."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from relearn.evaluation.domain import codes
from relearn.evaluation.mapper import evaluation_to_observations, item_path
from relearn.evaluation.resources import OBSERVATION
from relearn.evaluation.schemas import EvaluationIn
from relearn.shared.fhir.validation import validate_resource

Ids = Callable[[str], str]
LATERALITY = ("http://snomed.info/sct", "272741003")


def by_item(members: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(item_path(m)): m for m in members}


def first_code(concept: dict[str, Any]) -> tuple[str, str]:
    c = concept["coding"][0]
    return c["system"], c["code"]


def component(obs: dict[str, Any], system: str, code: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in obs.get("component", []) if first_code(c["code"]) == (system, code)
    ]
    assert len(found) == 1, f"{code} not in {obs.get('component')}"
    return found[0]


@pytest.fixture
def mapped(evaluation: EvaluationIn, ids: Ids) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    panel, members = evaluation_to_observations(evaluation, ids=ids)
    return panel, by_item(members)


def test_every_observation_validates_as_fhir_r4(evaluation: EvaluationIn, ids: Ids) -> None:
    panel, members = evaluation_to_observations(evaluation, ids=ids)
    assert len(members) == 19  # the two referral conditions are Conditions
    for obs in [panel, *members]:
        Observation.model_validate(obs)
        validate_resource(OBSERVATION, obs)  # what the FHIR store will check on write
        assert json.loads(json.dumps(obs)) == obs  # plain JSON, nothing lost on the way out


def test_panel_lists_every_member_and_says_initial(evaluation: EvaluationIn, ids: Ids) -> None:
    panel, members = evaluation_to_observations(evaluation, ids=ids)
    assert panel["id"] == "obs-1"
    assert first_code(panel["code"]) == (codes.EVALUATION_CS, "evaluation-initial")
    assert panel["hasMember"] == [{"reference": f"Observation/{m['id']}"} for m in members]
    assert panel["subject"] == {"reference": "Patient/pat-1"}
    assert panel["encounter"] == {"reference": "Encounter/enc-3"}
    assert panel["performer"] == [{"reference": "Practitioner/pt-7"}]
    assert panel["effectiveDateTime"] == "2026-11-20T10:15:00+01:00"
    for m in members:
        assert (m["status"], m["subject"], m["effectiveDateTime"]) == (
            "final",
            panel["subject"],
            "2026-11-20T10:15:00+01:00",
        )


def test_reassessment_panel_has_its_own_code(payload: dict[str, Any], ids: Ids) -> None:
    payload["kind"] = "reassessment"
    panel, _ = evaluation_to_observations(EvaluationIn.model_validate(payload), ids=ids)
    assert first_code(panel["code"]) == (codes.EVALUATION_CS, "evaluation-reassessment")


def test_the_id_factory_is_asked_once_per_item_by_path(evaluation: EvaluationIn) -> None:
    asked: list[str] = []

    def ids(path: str) -> str:
        asked.append(path)
        return f"id-{len(asked)}"

    panel, members = evaluation_to_observations(evaluation, ids=ids)
    assert asked[0] == "panel"
    assert asked[1:] == [item_path(m) for m in members]
    assert asked[1:4] == ["history", "pain", "posture[0]"]
    assert members[0]["identifier"] == [
        {"system": codes.EVALUATION_ITEM_SYSTEM, "value": f"{panel['id']}/history"}
    ]


def test_knee_flexion_is_coded_with_joint_side_method_and_norm(mapped: Any) -> None:
    _, items = mapped
    obs = items["rom[0]"]
    assert obs["code"]["coding"] == [
        {"system": codes.EVALUATION_CS, "code": "rom-knee-flexion", "display": "Knee flexion range of motion"}
    ]
    assert obs["category"][0]["coding"][0]["code"] == "exam"
    assert obs["valueQuantity"] == {
        "value": 90,
        "unit": "deg",
        "system": "http://unitsofmeasure.org",
        "code": "deg",
    }
    assert obs["bodySite"] == {
        "coding": [
            {"system": "http://snomed.info/sct", "code": "49076000", "display": "Knee joint structure"}
        ],
        "text": "Right knee",
    }
    assert first_code(obs["method"]) == (codes.EVALUATION_CS, "rom-active")
    side = component(obs, *LATERALITY)["valueCodeableConcept"]
    assert first_code(side) == ("http://snomed.info/sct", "24028007")
    assert first_code(obs["interpretation"][0])[1] == "L"
    assert obs["referenceRange"][0]["low"]["value"] == 121.5
    assert "aaos" in obs["referenceRange"][0]["text"]


def test_within_norm_is_interpreted_normal_and_forearm_has_text_only(mapped: Any) -> None:
    _, items = mapped
    assert first_code(items["rom[1]"]["interpretation"][0])[1] == "N"
    forearm = items["rom[3]"]
    assert forearm["bodySite"] == {"text": "Both forearms"}
    assert forearm["valueQuantity"]["value"] == 75.5
    assert first_code(component(forearm, *LATERALITY)["valueCodeableConcept"])[1] == "51440002"


def test_pain_uses_loinc_and_a_score(mapped: Any) -> None:
    _, items = mapped
    obs = items["pain"]
    assert first_code(obs["code"]) == ("http://loinc.org", "72514-3")
    assert obs["category"][0]["coding"][0]["code"] == "survey"
    assert obs["valueQuantity"] == {
        "value": 4,
        "unit": "score",
        "system": "http://unitsofmeasure.org",
        "code": "{score}",
    }
    assert first_code(obs["interpretation"][0])[1] == "H"
    assert obs["referenceRange"][0]["high"]["value"] == 3


def test_balance_tests_carry_their_codes_units_and_conditions(mapped: Any) -> None:
    _, items = mapped
    stance, tug, berg, sway = (items[f"balance[{i}]"] for i in range(4))
    assert first_code(stance["code"]) == (codes.EVALUATION_CS, "single-leg-stance")
    assert stance["valueQuantity"]["code"] == "s"
    assert first_code(component(stance, *LATERALITY)["valueCodeableConcept"])[1] == "24028007"
    assert stance["referenceRange"][0]["age"]["low"]["value"] == 70
    assert first_code(tug["code"]) == ("http://loinc.org", "89423-8")
    assert tug["valueQuantity"] == {
        "value": 21.3,
        "unit": "s",
        "system": "http://unitsofmeasure.org",
        "code": "s",
    }
    assert first_code(berg["code"]) == (codes.EVALUATION_CS, "berg-balance-scale")
    assert sway["valueQuantity"]["code"] == "cm/s"
    conditions = {
        first_code(c["code"])[1]: first_code(c["valueCodeableConcept"])[1] for c in sway["component"]
    }
    assert conditions == {
        "test-vision": "eyes-closed",
        "test-surface": "surface-foam",
        "test-stance": "stance-feet-together",
    }
    assert "interpretation" not in sway and "referenceRange" not in sway  # no norm for sway


def test_muscle_grade_is_a_coded_value_with_its_modifier(mapped: Any) -> None:
    _, items = mapped
    obs = items["strength[0]"]
    assert first_code(obs["code"]) == (codes.EVALUATION_CS, "mmt-grade")
    assert obs["code"]["text"] == "Manual muscle test grade 3+"
    # A system that ignores components still reads 3+, not 3.
    assert "valueQuantity" not in obs
    assert obs["valueCodeableConcept"]["coding"] == [
        {"system": codes.MMT_GRADE_CS, "code": "3+", "display": "Grade 3+"}
    ]
    assert obs["bodySite"]["coding"][0]["code"] == "muscle-group-knee-extensors"
    assert obs["bodySite"]["text"] == "Right knee extensors"
    assert [first_code(c["code"]) for c in obs["component"]] == [LATERALITY]  # side only
    assert first_code(obs["interpretation"][0])[1] == "L"
    assert items["strength[1]"]["valueCodeableConcept"]["coding"][0]["code"] == "5"


def test_text_findings_are_strings_in_the_patients_words(mapped: Any) -> None:
    _, items = mapped
    assert items["history"]["valueString"].startswith("Right-sided weakness")
    assert items["history"]["category"][0]["coding"][0]["code"] == "social-history"
    assert items["concerns[0]"]["valueString"] == "I am afraid of falling on the stairs"
    assert first_code(items["concerns[0]"]["code"]) == (codes.EVALUATION_CS, "patient-concern")
    assert items["goals[2]"]["valueString"] == "Feel steadier"
    assert "component" not in items["goals[2]"]


def test_goal_target_is_in_components(mapped: Any) -> None:
    _, items = mapped
    walk = items["goals[0]"]
    assert first_code(walk["code"]) == (codes.EVALUATION_CS, "patient-goal-statement")
    target = component(walk, "http://loinc.org", "89423-8")
    assert target["valueQuantity"]["value"] == 12
    assert component(walk, codes.EVALUATION_CS, "goal-target-due-date")["valueDateTime"] == "2027-02-01"
    kick = items["goals[1]"]
    assert component(kick, codes.EVALUATION_CS, "mmt-grade")["valueQuantity"]["value"] == 4
    group = component(kick, codes.EVALUATION_CS, "goal-target-muscle-group")["valueCodeableConcept"]
    assert first_code(group)[1] == "muscle-group-knee-extensors"


def test_referral_conditions_are_not_observations(mapped: Any) -> None:
    _, items = mapped
    assert not [item for item in items if item.startswith("referralConditions")]


def test_posture_finding_has_region_severity_and_position(mapped: Any) -> None:
    _, items = mapped
    obs = items["posture[0]"]
    assert obs["bodySite"] == {"text": "trunk"}
    assert obs["valueString"] == "Leans to the right"
    severity = component(obs, "http://snomed.info/sct", "246112005")["valueCodeableConcept"]
    assert first_code(severity)[1] == "6736007"
    position = component(obs, codes.EVALUATION_CS, "body-position")["valueCodeableConcept"]
    assert first_code(position)[1] == "position-sitting"
    assert "component" not in items["posture[1]"]


def test_minimal_evaluation_without_encounter_or_performer(ids: Ids) -> None:
    ev = EvaluationIn.model_validate(
        {"patient": "p", "effective": "2026-11-20", "kind": "initial", "pain": 0}
    )
    panel, members = evaluation_to_observations(ev, ids=ids)
    assert [m["id"] for m in members] == ["obs-2"]
    for obs in (panel, *members):
        Observation.model_validate(obs)
        assert "encounter" not in obs and "performer" not in obs
    assert first_code(members[0]["interpretation"][0])[1] == "N"
