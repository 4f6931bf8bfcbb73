from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from relearn.sessions.domain.plan_view import (
    PlanView,
    apply_plan_event,
    check_activity,
    parse_dose,
    require_plan,
)
from relearn.shared.fhir import UnprocessableEntity

PlanEvent = Callable[..., dict[str, Any]]


def _progressed(
    version: int, activity: str = "knee-ext", dimension: str = "motion", to: int = 1
) -> dict[str, Any]:
    return {
        "carePlan": "CarePlan/cp1",
        "versionId": version,
        "patient": "p1",
        "activity": activity,
        "pattern": "knee-extension-seated",
        "dimension": dimension,
        "from": to - 1,
        "to": to,
        "reason": "mastered without symptoms",
        "evidence": ["Encounter/s1"],
    }


def test_activation_gives_an_active_view_with_levels_and_doses(plan: PlanView) -> None:
    assert (plan.care_plan, plan.patient, plan.status, plan.version) == ("CarePlan/cp1", "p1", "active", 2)
    knee = plan.activities["knee-ext"]
    assert knee.pattern == "knee-extension-seated"
    assert knee.level == {
        "joints": 0,
        "motion": 0,
        "loadBearing": 0,
        "proprioception": 0,
        "resistance": 0,
        "tempo": 0,
    }
    assert (knee.dose.sets, knee.dose.reps, knee.dose.load_kg, knee.dose.frequency_per_week) == (
        3,
        10,
        1.5,
        3.0,
    )
    hip = plan.activities["hip-abd"]
    assert hip.level["loadBearing"] == 1
    assert (hip.dose.reps, hip.dose.frequency_per_week) == (12, 2.0)


def test_the_cpt_code_follows_the_plans_snapshot(plan: PlanView) -> None:
    assert (plan.activities["knee-ext"].cpt, plan.activities["hip-abd"].cpt) == ("97110", None)
    data = _progressed(3, dimension="joints", to=1) | {
        "activities": [{"id": "knee-ext", "pattern": "knee-extension-seated", "level": {}, "cpt": "97530"}]
    }
    view = apply_plan_event(plan, "plan.progressed.v1", data)
    assert view.activities["knee-ext"].cpt == "97530"
    # A progression without a snapshot keeps the code it had.
    assert apply_plan_event(plan, "plan.progressed.v1", _progressed(3)).activities["knee-ext"].cpt == "97110"


def test_progression_moves_one_dimension(plan: PlanView) -> None:
    view = apply_plan_event(plan, "plan.progressed.v1", _progressed(3, dimension="load-bearing", to=1))
    assert view.version == 3
    assert view.activities["knee-ext"].level["loadBearing"] == 1
    assert view.activities["hip-abd"] == plan.activities["hip-abd"]


def test_a_replayed_or_older_event_changes_nothing(plan: PlanView, plan_event: PlanEvent) -> None:
    progressed = apply_plan_event(plan, "plan.progressed.v1", _progressed(3))
    # The activation (v2) delivered again after the progression must not undo it.
    assert apply_plan_event(progressed, "plan.activated.v1", plan_event(2)) == progressed
    # The same progression replayed is a no-op too.
    assert apply_plan_event(progressed, "plan.progressed.v1", _progressed(3)) == progressed
    # A different event claiming a version already applied is ignored as well.
    assert apply_plan_event(plan, "plan.updated.v1", plan_event(2, status="revoked")) == plan
    # An older revocation arriving late does not stop an active plan.
    assert apply_plan_event(progressed, "plan.updated.v1", plan_event(1, status="revoked")).status == "active"


def test_stage_change_is_recorded_and_survives_a_new_snapshot(plan: PlanView, plan_event: PlanEvent) -> None:
    staged = apply_plan_event(
        plan,
        "plan.stage-changed.v1",
        {
            "carePlan": "CarePlan/cp1",
            "versionId": 3,
            "patient": "p1",
            "activity": "hip-abd",
            "stage": "conscious-competence",
        },
    )
    assert staged.activities["hip-abd"].stage == "conscious-competence"
    updated = apply_plan_event(staged, "plan.updated.v1", plan_event(4))
    assert (updated.status, updated.activities["hip-abd"].stage) == ("active", "conscious-competence")


def test_an_update_replaces_the_activities(plan: PlanView, plan_event: PlanEvent) -> None:
    only_knee = plan_event(3)
    only_knee["activities"] = only_knee["activities"][:1]
    view = apply_plan_event(plan, "plan.updated.v1", only_knee)
    assert list(view.activities) == ["knee-ext"]


def test_an_activity_in_the_active_plan_is_accepted(plan: PlanView) -> None:
    assert check_activity(plan, "hip-abd").pattern == "hip-abduction-side-lying"


def test_an_activity_not_in_the_plan_is_refused_naming_the_field(plan: PlanView) -> None:
    with pytest.raises(UnprocessableEntity) as caught:
        check_activity(plan, "shoulder-flex", field="exercises[0].activity")
    err = caught.value
    assert err.status_code == 422
    assert err.issues[0].expression == ["exercises[0].activity"]
    assert "'shoulder-flex' is not an activity of the active plan CarePlan/cp1" in err.issues[0].diagnostics
    assert "hip-abd, knee-ext" in err.issues[0].diagnostics


def test_a_revoked_activity_is_refused(plan: PlanView, plan_event: PlanEvent) -> None:
    data = plan_event(3)
    data["activities"][0]["status"] = "revoked"
    with pytest.raises(UnprocessableEntity, match="knee-ext' of CarePlan/cp1 is revoked"):
        check_activity(apply_plan_event(plan, "plan.updated.v1", data), "knee-ext")


@pytest.mark.parametrize("status", ["draft", "revoked", "completed", "on-hold"])
def test_activities_of_a_plan_that_is_not_active_are_refused(
    plan: PlanView, plan_event: PlanEvent, status: str
) -> None:
    view = apply_plan_event(plan, "plan.updated.v1", plan_event(3, status=status))
    with pytest.raises(UnprocessableEntity, match=f"CarePlan/cp1 is not active \\(status {status}\\)"):
        check_activity(view, "knee-ext")


def test_a_draft_plan_is_not_active(plan_event: PlanEvent) -> None:
    with pytest.raises(UnprocessableEntity, match="not active"):
        require_plan(apply_plan_event(None, "plan.drafted.v1", plan_event(1)), "CarePlan/cp1", "p1")


def test_a_plan_never_received_or_of_another_patient_is_refused(plan: PlanView) -> None:
    with pytest.raises(UnprocessableEntity, match="CarePlan/cp9 is not known") as unknown:
        require_plan(None, "cp9", "p1")
    assert unknown.value.issues[0].expression == ["carePlan"]
    with pytest.raises(UnprocessableEntity, match="plan of another patient"):
        require_plan(plan, "CarePlan/cp1", "p2")


def test_a_progression_for_a_plan_never_seen_does_not_make_it_usable() -> None:
    view = apply_plan_event(None, "plan.progressed.v1", _progressed(5))
    assert (view.status, view.activities, view.version) == ("unknown", {}, 5)
    with pytest.raises(UnprocessableEntity, match="not active"):
        check_activity(view, "knee-ext")


def test_unreadable_events_raise(plan: PlanView) -> None:
    with pytest.raises(ValueError, match="unknown progression dimension"):
        apply_plan_event(plan, "plan.progressed.v1", _progressed(3, dimension="colour"))
    with pytest.raises(ValueError, match="not a plan event"):
        apply_plan_event(plan, "plan.deleted.v1", _progressed(3))
    with pytest.raises(ValueError):
        apply_plan_event(plan, "plan.updated.v1", {"carePlan": "CarePlan/cp1", "patient": "p1"})


@pytest.mark.parametrize(
    ("dose", "per_week"),
    [
        ({"frequencyPerWeek": 5}, 5.0),
        ({"timesPerWeek": 2}, 2.0),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}, 7.0),
        ({"timing": {"repeat": {"frequency": 1, "period": 2, "periodUnit": "d"}}}, 3.5),
        ({"sets": 3}, None),
    ],
)
def test_weekly_frequency_is_read_from_the_dose(dose: dict[str, Any], per_week: float | None) -> None:
    assert parse_dose(dose).frequency_per_week == per_week


def test_a_discharge_completes_the_plan_in_the_read_model(plan: PlanView, plan_event: PlanEvent) -> None:
    data = plan_event(3)
    data.pop("status", None)  # plan.discharged.v1 means completed even if a sender left the status out
    discharged = apply_plan_event(plan, "plan.discharged.v1", data)
    assert discharged.status == "completed" and discharged.version == 3
