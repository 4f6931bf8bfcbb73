"""Referral Conditions against the published US Core 6.1.0 Condition profiles.

The checks are read from the StructureDefinitions and ValueSets as HL7 published them (copied unchanged
from US Core 6.1.0 into ``relearn.devtools.us_core``): every element with a minimum cardinality,
every fixed or patterned slice, every required binding and the extensible binding of ``code``; plus
the base R4 Condition rules (subject 1..1, con-3/con-5) and R4 validation.
"""

from __future__ import annotations

from typing import Any

import pytest

from relearn.devtools import us_core
from relearn.evaluation.domain import codes
from relearn.evaluation.mapper import condition_resources
from relearn.evaluation.resources import CONDITION
from relearn.evaluation.schemas import EvaluationIn, parse_evaluation
from relearn.shared.fhir.validation import validate_resource

PROBLEMS = "StructureDefinition-us-core-condition-problems-health-concerns"
ENCOUNTER_DX = "StructureDefinition-us-core-condition-encounter-diagnosis"

# The two required bindings' value sets are FHIR R4's own (each its whole CodeSystem).
REQUIRED_VALUE_SETS: dict[str, tuple[str, set[str]]] = {
    "http://hl7.org/fhir/ValueSet/condition-clinical": (
        "http://terminology.hl7.org/CodeSystem/condition-clinical",
        {"active", "recurrence", "relapse", "inactive", "remission", "resolved"},
    ),
    "http://hl7.org/fhir/ValueSet/condition-ver-status": (
        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        {"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"},
    ),
}


def load(name: str) -> dict[str, Any]:
    return us_core.load(name)


def value_set_systems(name: str) -> dict[str, set[str] | None]:
    """System -> the codes a ValueSet includes from it (None: any code, or a filter we cannot expand)."""
    out: dict[str, set[str] | None] = {}
    for inc in load(name)["compose"]["include"]:
        listed = (
            {c["code"] for c in inc.get("concept", [])} if "concept" in inc and "filter" not in inc else None
        )
        prior = out.get(inc["system"], set())
        out[inc["system"]] = None if listed is None or prior is None else prior | listed
    return out


def codings_in(concept: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in concept.get("coding", [])]


def element_value(resource: dict[str, Any], element_id: str) -> Any:
    path = element_id.split(":")[0].split(".")[1:]
    node: Any = resource
    for part in path:
        if part.endswith("[x]"):
            stem = part[:-3]
            node = next((v for k, v in node.items() if k.startswith(stem)), None)
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def check_against(resource: dict[str, Any], sd_name: str) -> list[str]:
    """Everything ``resource`` breaks of the profile's differential (empty when it conforms)."""
    sd = load(sd_name)
    problems: list[str] = []
    if sd["url"] not in resource.get("meta", {}).get("profile", []):
        problems.append(f"meta.profile does not claim {sd['url']}")
    for el in sd["differential"]["element"]:
        eid = el["id"]
        value = element_value(resource, eid)
        if el.get("min", 0) >= 1 and value in (None, [], {}):
            problems.append(f"{eid} is required (min {el['min']})")
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        pattern = el.get("patternCodeableConcept") or el.get("fixedCodeableConcept")
        binding = el.get("binding", {})
        if ":" in eid:  # a slice: at least min of the repetitions must match it
            if pattern is not None:
                wanted = set(codings_in(pattern))
                matching = [v for v in values if wanted <= set(codings_in(v))]
            elif binding.get("strength") == "required" and binding["valueSet"].endswith(
                "us-core-problem-or-health-concern"
            ):
                allowed = value_set_systems("valueset-us-core-problem-or-health-concern")
                matching = [
                    v
                    for v in values
                    if any(s in allowed and (allowed[s] is None or c in allowed[s]) for s, c in codings_in(v))
                ]
            else:
                continue
            if len(matching) < el.get("min", 0):
                problems.append(f"{eid}: no repetition matches the slice")
            continue
        if binding.get("strength") == "required" and binding["valueSet"] in REQUIRED_VALUE_SETS:
            system, allowed_codes = REQUIRED_VALUE_SETS[binding["valueSet"]]
            for v in values:
                found = codings_in(v)
                if not found or any(s != system or c not in allowed_codes for s, c in found):
                    problems.append(f"{eid}: {found} not in required {binding['valueSet']}")
        if binding.get("strength") == "extensible" and binding["valueSet"].endswith("us-core-condition-code"):
            systems = value_set_systems("valueset-us-core-condition-code")
            for v in values:
                if not any(s in systems for s, _ in codings_in(v)):
                    problems.append(f"{eid}: no coding from {binding['valueSet']} (SNOMED CT, ICD-10-CM)")
    # Base R4 Condition: subject 1..1; con-5 (no clinicalStatus when entered-in-error); con-3 (a
    # problem-list item has a clinicalStatus unless entered in error).
    if not str(resource.get("subject", {}).get("reference", "")).startswith("Patient/"):
        problems.append("subject must reference the Patient (us-core-patient)")
    ver = [c for _, c in codings_in(resource.get("verificationStatus", {}))]
    if "entered-in-error" in ver and "clinicalStatus" in resource:
        problems.append("con-5: clinicalStatus with verificationStatus entered-in-error")
    categories = {c for cat in resource.get("category", []) for _, c in codings_in(cat)}
    if (
        "problem-list-item" in categories
        and "entered-in-error" not in ver
        and "clinicalStatus" not in resource
    ):
        problems.append("con-3: a problem-list item needs clinicalStatus")
    return problems


def conditions(payload: dict[str, Any]) -> list[dict[str, Any]]:
    ev = parse_evaluation(payload)
    counter = iter(range(1, 1000))
    return condition_resources(ev, ids=lambda _: f"c-{next(counter)}", panel_id="panel-1")


def test_the_published_profiles_are_the_ones_checked() -> None:
    assert load(PROBLEMS)["url"].endswith("us-core-condition-problems-health-concerns")
    assert load(ENCOUNTER_DX)["url"].endswith("us-core-condition-encounter-diagnosis")
    required = {e["id"] for e in load(PROBLEMS)["differential"]["element"] if e.get("min", 0) >= 1}
    assert required == {"Condition.category", "Condition.category:us-core", "Condition.code"}


def test_referral_diagnoses_conform_to_us_core_problems_and_health_concerns(
    evaluation: EvaluationIn, payload: dict[str, Any]
) -> None:
    found = conditions(payload)
    assert len(found) == 2
    for cond in found:
        validate_resource(CONDITION, cond)
    stroke, other = found
    assert check_against(stroke, PROBLEMS) == []
    assert codings_in(stroke["code"]) == [
        (codes.SNOMED, "230690007"),
        (codes.ICD10CM, "I63.9"),
        (codes.EVALUATION_CS, "condition-stroke"),
    ]
    assert (stroke["onsetDateTime"], stroke["recordedDate"]) == ("2026-08", "2026-11-20T10:15:00+01:00")
    assert stroke["encounter"] == {"reference": "Encounter/enc-3"}
    # "other" has no standard code from us: the text carries it (extensible binding: text is allowed
    # when no code fits), unless the therapist gives one.
    assert check_against(other, PROBLEMS) == [
        "Condition.code: no coding from "
        "http://hl7.org/fhir/us/core/ValueSet/us-core-condition-code (SNOMED CT, ICD-10-CM)"
    ]
    assert other["code"]["text"] == "Peripheral neuropathy"


def test_a_therapists_codes_and_encounter_diagnosis(payload: dict[str, Any]) -> None:
    payload["referralConditions"] = [
        {
            "kind": "other",
            "text": "Peripheral neuropathy",
            "snomed": "302226006",
            "icd10cm": "G62.9",
            "category": "encounter-diagnosis",
        },
        {
            "kind": "brain-injury",
            "text": "TBI, diffuse",
            "icd10cm": "S06.2X9S",
            "clinicalStatus": "remission",
        },
    ]
    dx, tbi = conditions(payload)
    assert check_against(dx, ENCOUNTER_DX) == []
    assert check_against(dx, PROBLEMS) != []  # an encounter diagnosis is not a problem-list item
    assert codings_in(dx["code"])[:2] == [(codes.SNOMED, "302226006"), (codes.ICD10CM, "G62.9")]
    assert check_against(tbi, PROBLEMS) == []
    assert codings_in(tbi["code"])[:2] == [(codes.SNOMED, "127295002"), (codes.ICD10CM, "S06.2X9S")]
    assert tbi["clinicalStatus"]["coding"][0]["code"] == "remission"


def test_the_checker_catches_what_breaks_the_profile(payload: dict[str, Any]) -> None:
    stroke = conditions(payload)[0]
    no_category = {k: v for k, v in stroke.items() if k != "category"}
    assert set(check_against(no_category, PROBLEMS)) >= {
        "Condition.category is required (min 1)",
        "Condition.category:us-core is required (min 1)",
    }
    no_status = {k: v for k, v in stroke.items() if k != "clinicalStatus"}
    assert check_against(no_status, PROBLEMS) == ["con-3: a problem-list item needs clinicalStatus"]
    wrong = {**stroke, "verificationStatus": {"coding": [{"system": "x", "code": "maybe"}]}}
    assert any("verificationStatus" in p for p in check_against(wrong, PROBLEMS))


@pytest.mark.parametrize("code", ["I63", "I63.9", "S06.2X9S", "G62.9"])
def test_icd10cm_codes_are_accepted(payload: dict[str, Any], code: str) -> None:
    payload["referralConditions"] = [{"kind": "stroke", "icd10cm": code}]
    assert codings_in(conditions(payload)[0]["code"])[1] == (codes.ICD10CM, code)


def test_a_malformed_icd10cm_code_is_refused(payload: dict[str, Any]) -> None:
    payload["referralConditions"] = [{"kind": "stroke", "icd10cm": "stroke"}]
    with pytest.raises(Exception, match=r"referralConditions\[0\]\.icd10cm"):
        parse_evaluation(payload)
