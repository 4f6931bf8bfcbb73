"""Observations, Conditions and QuestionnaireResponses against the published US Core 6.1.0 profiles
(relearn.devtools.us_core: required elements and slices, required/extensible bindings, mustSupport elements
we leave empty named with the reason).

Every evaluation Observation (exam, survey, activity categories; the panel) claims US Core Simple
Observation; a scored test's total claims Screening and Assessment; home practice claims the Physical Activity
IG's activity measure (checked against the IG's FSH rules). We serve no vital-signs Observation (no blood
pressure, heart rate, BMI...), so no vital-signs profile applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relearn.devtools.us_core import check
from relearn.evaluation.domain.questionnaires import BERG, score
from relearn.evaluation.mapper import (
    condition_resources,
    evaluation_to_observations,
    home_practice_observations,
    questionnaire_total_observation,
    rom_observations,
    session_outcome_observations,
    symptom_observation,
)
from relearn.evaluation.schemas import EvaluationIn, SessionLogged, SymptomsRecorded, parse_evaluation

SIMPLE_NOT_SUPPORTED = {
    "Observation.value[x]": "a panel has no value: its members (hasMember) carry them",
}
SCREENING_NOT_SUPPORTED = {
    "Observation.dataAbsentReason": "a total is extracted only from a complete response: never absent",
    "Observation.hasMember": "the items stay in the QuestionnaireResponse (derivedFrom)",
}
CONDITION_NOT_SUPPORTED = {
    "Condition.extension:assertedDate": "the referral gives the onset and we record recordedDate; when the "
    "diagnosis was first asserted is not known to us",
    "Condition.category:screening-assessment": "a referral diagnosis, not the result of a screening",
    "Condition.abatement[x]": "an active referral diagnosis has not abated",
}
QR_NOT_SUPPORTED = {
    "QuestionnaireResponse.questionnaire.extension:url": "the questionnaire is one we publish: its canonical "
    "resolves at our base URL",
}


def test_every_evaluation_observation_conforms_to_us_core_simple_observation(
    evaluation: EvaluationIn, ids: Callable[[str], str]
) -> None:
    panel, members = evaluation_to_observations(evaluation, ids=ids)
    categories = set()
    for obs in [panel, *members]:
        categories |= {c["coding"][0]["code"] for c in obs["category"]}
        not_supported = SIMPLE_NOT_SUPPORTED if obs is panel else {}
        assert check(obs, "us-core-simple-observation", not_supported=not_supported) == [], obs["code"]
    assert {"exam", "survey"} <= categories


def test_session_outcomes_conform_to_us_core_simple_observation() -> None:
    logged = SessionLogged.model_validate(
        {
            "session": "Encounter/s-1",
            "patient": "p-1",
            "end": "2026-11-20T09:45:00+00:00",
            "exercises": [
                {
                    "procedure": "Procedure/pr-1",
                    "activity": "knee-ext",
                    "painBefore": 2,
                    "painAfter": 3,
                    "quality": 3,
                    "rom": {"valueDeg": 80, "method": "goniometer", "observation": "Observation/o-1"},
                }
            ],
        }
    )
    symptoms = SymptomsRecorded.model_validate(
        {
            "session": "Encounter/s-1",
            "patient": "p-1",
            "recordedAt": "2026-11-21T09:00:00+00:00",
            "pain24h": 2,
            "flare": False,
        }
    )
    therapist = {"Observation.performer": "session.logged.v1 does not name the therapist who rated it"}
    found = [*session_outcome_observations(logged), *rom_observations(logged), symptom_observation(symptoms)]
    assert len(found) == 5
    for obs in found:
        self_reported = obs["category"][0]["coding"][0]["code"] == "survey"
        assert (
            check(obs, "us-core-simple-observation", not_supported={} if self_reported else therapist) == []
        )


def test_home_practice_activity_measures_conform_too() -> None:
    logged = SessionLogged.model_validate(
        {
            "session": "Procedure/pr-9",
            "patient": "p-1",
            "setting": "home",
            "start": "2026-11-21T18:00:00+01:00",
            "end": "2026-11-21T18:25:00+01:00",
            "exercises": [
                {"procedure": "Procedure/pr-9", "activity": "knee-ext", "pattern": "knee-extension"}
            ],
        }
    )
    for obs in home_practice_observations(logged):
        # They claim the Physical Activity IG's activity measure; US Core's simple observation holds as well.
        assert check(obs, "us-core-simple-observation", claim=False) == []


# The Physical Activity IG publishes its profiles as FSH (HL7/physical-activity input/fsh/
# ObservationExerciseSupport.fsh; no StructureDefinition JSON is in the store we copy from): the rules of
# pa-activity-measure and its abstract parent observation-support, as written there.
def pa_activity_measure_problems(obs: dict[str, Any]) -> list[str]:
    problems = []
    if obs.get("status") != "final":
        problems.append("status = #final")
    if not str(obs.get("subject", {}).get("reference", "")).startswith("Patient/"):
        problems.append("subject only Reference(us-core-patient)")
    for absent in ("focus", "bodySite", "specimen"):
        if absent in obs:
            problems.append(f"{absent} ..0")
    period = obs.get("effectivePeriod")
    if period is None and "effectiveDateTime" not in obs:
        problems.append("effective[x] 1..1 (dateTime or Period)")
    if period is not None and not (len(period.get("start", "")) >= 10 and len(period.get("end", "")) >= 10):
        problems.append("effectivePeriod.start and .end 1..1, at least a date")
    values = [k for k in obs if k.startswith("value")]
    if values not in (["valueQuantity"], ["valueCodeableConcept"]):
        problems.append(f"value[x] only Quantity or CodeableConcept, not {values}")
    quantity = obs.get("valueQuantity")
    if quantity is not None and (
        "value" not in quantity or quantity.get("system") != "http://unitsofmeasure.org"
    ):
        problems.append("valueQuantity.value 1..1 and system UCUM")
    return problems


def test_home_practice_meets_the_physical_activity_ig_activity_measure() -> None:
    logged = SessionLogged.model_validate(
        {
            "session": "Procedure/pr-9",
            "patient": "p-1",
            "setting": "home",
            "start": "2026-11-21T18:00:00+01:00",
            "end": "2026-11-21T18:25:00+01:00",
            "exercises": [
                {"procedure": "Procedure/pr-9", "activity": "knee-ext", "pattern": "knee-extension"}
            ],
        }
    )
    measures = home_practice_observations(logged)
    assert len(measures) == 2
    for obs in measures:
        assert obs["meta"]["profile"] == [
            "http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-activity-measure"
        ]
        assert pa_activity_measure_problems(obs) == []
    assert pa_activity_measure_problems(measures[0] | {"bodySite": {"text": "knee"}}) == ["bodySite ..0"]


def _berg_response() -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "id": "qr-1",
        "questionnaire": f"{BERG.url}|1.0.0",
        "status": "completed",
        "subject": {"reference": "Patient/p-1"},
        "authored": "2026-11-20T10:00:00+00:00",
        "author": {"reference": "Practitioner/pt-ana"},
        "item": [{"linkId": link, "answer": [{"valueInteger": 3}]} for link, _ in BERG.items],
    }


def test_a_scored_tests_total_conforms_to_us_core_screening_assessment() -> None:
    response = _berg_response()
    total = questionnaire_total_observation(response, score(response))
    assert total is not None
    assert (
        check(total, "us-core-observation-screening-assessment", not_supported=SCREENING_NOT_SUPPORTED) == []
    )
    # The response a client sends is stored as sent (no claim added); what we accept meets the profile.
    assert check(response, "us-core-questionnaireresponse", claim=False, not_supported=QR_NOT_SUPPORTED) == []


def test_referral_conditions_conform_with_the_shared_checker(payload: dict[str, Any]) -> None:
    counter = iter(range(1, 1000))
    stroke, _ = condition_resources(
        parse_evaluation(payload), ids=lambda _: f"c-{next(counter)}", panel_id="p"
    )
    problems = check(
        stroke, "us-core-condition-problems-health-concerns", not_supported=CONDITION_NOT_SUPPORTED
    )
    assert problems == []
