"""Every mapped resource is valid FHIR R4 (fhir.resources R4B and the store's own validation), and an EHR
reading the CarePlan sees each exercise, its dose, its level per dimension and its competence stage."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.goal import Goal
from fhir.resources.R4B.servicerequest import ServiceRequest

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.editing import override
from relearn.plan.domain.patterns import Dimension
from relearn.plan.domain.state import PlanState
from relearn.plan.mapper import (
    CS_DIMENSION,
    CS_PATTERN,
    CS_STAGE,
    EXT_PERTAINS_TO_GOAL,
    EXT_PLAN_CHANGE,
    EXT_PROGRESSION,
    care_plan,
    code_systems,
    definitions,
    goal_resource,
    plan_resources,
    service_request,
)
from relearn.plan.resources import ACTIVITY_DEFINITION, DEFINITIONS, PLAN_DEFINITION
from relearn.shared.fhir import CANONICAL_URL
from relearn.shared.fhir.validation import validate_resource

MODELS: dict[str, Any] = {"CarePlan": CarePlan, "Goal": Goal, "ServiceRequest": ServiceRequest}
STORE = {d.type: d for d in DEFINITIONS}


def _validate_all(plan: PlanState, catalogue: Catalogue) -> list[dict[str, Any]]:
    resources = plan_resources(plan, catalogue)
    for r in resources:
        MODELS[r["resourceType"]].model_validate(r)
        validate_resource(STORE[r["resourceType"]], r)
    return resources


def _sub(ext: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in ext["extension"] if e["url"] == url]


@pytest.fixture
def progressed(clinic: Any) -> PlanState:
    for day in (0, 2, 4):
        clinic.good_day("knee-extension", day=day, self_rating=3)
    clinic.session("ankle-dorsiflexion", day=5, pain_after=7)
    plan: PlanState = clinic.plan
    return plan


def test_draft_active_and_progressed_plans_map_to_valid_fhir(
    draft: PlanState, active: PlanState, progressed: PlanState, catalogue: Catalogue
) -> None:
    for plan in (draft, active, progressed):
        resources = _validate_all(plan, catalogue)
        kinds = [r["resourceType"] for r in resources]
        assert kinds.count("CarePlan") == 1
        assert kinds.count("Goal") == len(plan.goals)
        assert kinds.count("ServiceRequest") == len(plan.activities)


def test_careplan_header(active: PlanState, catalogue: Catalogue) -> None:
    cp = care_plan(active, catalogue)
    assert (cp["id"], cp["status"], cp["intent"]) == (active.id, "active", "plan")
    codes = {c["coding"][0]["code"] for c in cp["category"]}
    assert {"assess-plan", "229065009", "neuromuscular-re-education"} == codes
    assert (
        cp["category"][0]["coding"][0]["system"] == "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
    )
    assert cp["subject"] == {"reference": "Patient/pat-1"}
    assert cp["author"] == {"reference": "Practitioner/pt-ana"}
    assert {g["reference"] for g in cp["goal"]} == {f"Goal/{g.id}" for g in active.goals}
    refs = [s["reference"] for s in cp["supportingInfo"]]
    assert refs == ["Observation/eval-1", "Observation/obs-ref-1"]  # the evaluation, the referral condition


def test_each_activity_shows_the_exercise_its_level_stage_and_dose(
    progressed: PlanState, catalogue: Catalogue
) -> None:
    cp = care_plan(progressed, catalogue)
    knee_state = next(a for a in progressed.activities if a.pattern == "knee-extension")
    entry = next(e for e in cp["activity"] if e["id"] == knee_state.id)
    assert entry["reference"]["reference"] == f"ServiceRequest/{knee_state.id}"
    assert "detail" not in entry  # R4 cpl-3: a reference or a detail, not both
    # Stage: the activity's outcome, coded.
    (stage,) = entry["outcomeCodeableConcept"]
    assert stage["coding"][0] == {
        "system": CS_STAGE,
        "code": "conscious-competence",
        "display": "Conscious competence",
    }
    # Level, stage and dose in the computable extension.
    (ext,) = [e for e in entry["extension"] if e["url"] == EXT_PROGRESSION]
    assert _sub(ext, "pattern")[0]["valueCoding"]["system"] == CS_PATTERN
    levels = {
        lvl["extension"][0]["valueCoding"]["code"]: lvl["extension"][1]["valueInteger"]
        for lvl in _sub(ext, "level")
    }
    assert levels == {d.value: (1 if d is Dimension.JOINTS else 0) for d in Dimension}
    assert all(lvl["extension"][0]["valueCoding"]["system"] == CS_DIMENSION for lvl in _sub(ext, "level"))
    dose = {d["url"]: d for d in _sub(ext, "dose")[0]["extension"]}
    assert (dose["sets"]["valueInteger"], dose["reps"]["valueInteger"]) == (3, 10)
    # ... and in words for any EHR.
    text = entry["progress"][0]["text"]
    assert (
        "Joints level 1 (0-2): Hip and knee together" in text
        and "conscious competence" in text
        and "3 x 10" in text
    )
    assert "advancing joints 0 -> 1" in text
    assert {r["reference"] for r in entry["outcomeReference"]} >= {"Encounter/s1", "Encounter/s3"}
    assert "Hip and knee together" in cp["text"]["div"]


def test_the_latest_change_is_in_the_note_and_extension_with_its_evidence(
    progressed: PlanState, catalogue: Catalogue
) -> None:
    cp = care_plan(progressed, catalogue)
    latest = progressed.history[-1]
    (note,) = cp["note"]
    assert note["text"].startswith(f"Version {latest.version} (symptoms)") and "pain 7/10" in note["text"]
    (ext,) = [e for e in cp["extension"] if e["url"] == EXT_PLAN_CHANGE]
    assert [e["valueReference"]["reference"] for e in _sub(ext, "evidence")] == list(latest.evidence)


def test_an_override_names_who_made_it(active: PlanState, catalogue: Catalogue, scene: Any) -> None:
    knee = scene.activity_of(active, "knee-extension")
    plan = override(
        active,
        knee.id,
        by="Practitioner/pt-ana",
        reason="re-tested",
        at=scene.START,
        catalogue=catalogue,
        stage="conscious-incompetence",
    ).plan
    cp = care_plan(plan, catalogue)
    assert cp["note"][0]["authorReference"] == {"reference": "Practitioner/pt-ana"}
    _validate_all(plan, catalogue)


def test_service_request_is_an_exercise_prescription(progressed: PlanState, catalogue: Catalogue) -> None:
    knee = next(a for a in progressed.activities if a.pattern == "knee-extension")
    sr = service_request(progressed, knee, catalogue)
    assert (sr["id"], sr["status"], sr["intent"]) == (knee.id, "active", "order")
    assert sr["basedOn"] == [{"reference": progressed.reference}]
    # SNOMED CT and CPT beside the movement pattern; the knee extension has advanced along joints only, so
    # it is still non-weight-bearing therapeutic exercise.
    assert [(c["system"], c["code"]) for c in sr["code"]["coding"]] == [
        ("http://snomed.info/sct", "229065009"),
        ("http://www.ama-assn.org/go/cpt", "97110"),
        (f"{CANONICAL_URL}/CodeSystem/movement-pattern", "knee-extension"),
    ]
    assert {c["coding"][0]["code"] for c in sr["category"]} == {"PhysicalActivity", "229065009"}
    assert sr["occurrenceTiming"]["repeat"]["frequency"] == knee.dose.frequency_per_week
    assert sr["occurrenceTiming"]["repeat"]["periodUnit"] == "wk"
    assert sr["quantityQuantity"]["value"] == knee.dose.sets * knee.dose.reps
    assert {r["reference"] for r in sr["reasonReference"]} == {
        "Observation/obs-rom-knee",
        "Observation/obs-mmt-quads",
    }
    assert {
        e["valueReference"]["reference"] for e in sr["extension"] if e["url"] == EXT_PERTAINS_TO_GOAL
    } == {f"Goal/{g}" for g in knee.goals}
    details = [d["coding"][0]["code"] for d in sr["orderDetail"]]
    assert details == [d.value for d in Dimension] + ["conscious-competence"]
    assert "3 set(s) of 10 repetitions" in sr["patientInstruction"]
    assert sr["bodySite"] == [{"text": "left knee"}]


def test_a_draft_plans_requests_are_drafts(draft: PlanState, catalogue: Catalogue) -> None:
    assert {service_request(draft, a, catalogue)["status"] for a in draft.activities} == {"draft"}


def test_goal_resource(active: PlanState) -> None:
    shops = next(g for g in active.goals if g.description.startswith("Walk to the shops"))
    goal = goal_resource(active, shops)
    assert goal["lifecycleStatus"] == "active"
    assert goal["achievementStatus"]["coding"][0]["code"] == "in-progress"
    assert goal["description"] == {"text": "Walk to the shops without fear of falling"}
    assert goal["expressedBy"] == {"reference": "Patient/pat-1"}
    (target,) = goal["target"]
    assert target["measure"]["coding"][0]["code"] == "89423-8"
    assert target["detailQuantity"] == {
        "value": 12,
        "comparator": "<=",
        "unit": "s",
        "system": "http://unitsofmeasure.org",
        "code": "s",
    }
    assert target["dueDate"] == "2027-02-28"
    assert goal["addresses"] == [{"reference": "Observation/obs-tug"}]


def test_every_local_code_used_is_defined_in_a_shipped_code_system(
    progressed: PlanState, catalogue: Catalogue
) -> None:
    defined = {(cs["url"], c["code"]) for cs in code_systems(catalogue) for c in cs["concept"]}
    used: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            system = str(node.get("system", ""))
            # Our own CodeSystems; the evaluation service's measure codes are its own to define.
            if system.startswith(f"{CANONICAL_URL}/CodeSystem/") and "neuromuscular-evaluation" not in system:
                used.add((system, node["code"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(plan_resources(progressed, catalogue))
    assert used and used <= defined


def test_the_catalogue_as_activity_and_plan_definitions(active: PlanState, catalogue: Catalogue) -> None:
    activity_definitions, plan_def = definitions(catalogue)
    for ad in activity_definitions:
        validate_resource(ACTIVITY_DEFINITION, ad)
        assert ad["url"] == f"{CANONICAL_URL}/ActivityDefinition/{ad['id']}"
        assert ad["version"] == catalogue.version
    validate_resource(PLAN_DEFINITION, plan_def)
    assert plan_def["url"] == f"{CANONICAL_URL}/PlanDefinition/neuromuscular-re-education"
    named = {a["definitionCanonical"] for region in plan_def["action"] for a in region["action"]}
    assert named == {f"{ad['url']}|{ad['version']}" for ad in activity_definitions}
    # The plan names the PlanDefinition, each prescription its pattern's ActivityDefinition.
    assert care_plan(active, catalogue)["instantiatesCanonical"] == [
        f"{plan_def['url']}|{active.catalogue_version}"
    ]
    for activity in active.activities:
        sr = service_request(active, activity, catalogue)
        assert sr["instantiatesCanonical"] == [
            f"{CANONICAL_URL}/ActivityDefinition/{activity.pattern}|{active.catalogue_version}"
        ]
