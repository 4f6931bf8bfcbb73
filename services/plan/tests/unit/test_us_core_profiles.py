"""CarePlan, Goal and ServiceRequest against the published US Core 6.1.0 profiles they claim.

The checker (``relearn.devtools.us_core``) reads the StructureDefinitions' differentials as HL7 published
them: required elements and slices, required and extensible bindings, and every mustSupport element we do not
populate must be named here with the reason.
"""

from __future__ import annotations

from typing import Any

from relearn.devtools.us_core import check
from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.state import PlanState
from relearn.plan.mapper import care_plan, goal_resource, service_request

# mustSupport elements we leave empty, and why.
GOAL_NOT_SUPPORTED = {
    "Goal.start[x]": "a drafted goal has no start date until the therapist sets one",
}
SERVICE_REQUEST_NOT_SUPPORTED = {
    "ServiceRequest.category:us-core": "no US Core category fits an exercise prescription (evaluation, "
    "social service, laboratory, imaging, counselling, education, surgery); the Physical Activity IG "
    "category and SNOMED CT exercise therapy are sent instead",
}


def test_the_care_plan_conforms_to_us_core_careplan(active: PlanState, catalogue: Catalogue) -> None:
    cp = care_plan(active, catalogue)
    assert check(cp, "us-core-careplan") == []
    # The checker sees what breaks the profile.
    broken = cp | {"category": cp["category"][1:], "status": "in-progress"}
    assert set(check(broken, "us-core-careplan")) == {
        "CarePlan.category:AssessPlan: no repetition matches the slice (min 1)",
        "CarePlan.category:AssessPlan: mustSupport slice not populated",
        "CarePlan.status: [(None, 'in-progress')] not in required http://hl7.org/fhir/ValueSet/request-status",
    }


def test_goals_conform_to_us_core_goal(active: PlanState) -> None:
    assert active.goals
    for goal in active.goals:
        resource = goal_resource(active, goal)
        problems = check(resource, "us-core-goal", not_supported=GOAL_NOT_SUPPORTED)
        assert problems == [], (goal.description, problems)


def test_exercise_prescriptions_conform_to_us_core_servicerequest(clinic: Any, catalogue: Catalogue) -> None:
    for day in (0, 2, 4):
        clinic.good_day("knee-extension", day=day, self_rating=3)
    plan: PlanState = clinic.plan
    for activity in plan.activities:
        sr = service_request(plan, activity, catalogue)
        assert check(sr, "us-core-servicerequest", not_supported=SERVICE_REQUEST_NOT_SUPPORTED) == []
    # Without its SNOMED CT and CPT codings the local pattern alone breaks the extensible binding.
    local_only = sr | {"code": {"coding": sr["code"]["coding"][-1:]}}
    assert any("ServiceRequest.code" in p for p in check(local_only, "us-core-servicerequest"))
