"""Event data the plan service publishes, per docs/events.md."""

from __future__ import annotations

from typing import Any

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.patterns import Dimension
from relearn.plan.domain.state import PlanState
from relearn.plan.events import (
    PLAN_PROGRESSED,
    PLAN_STAGE_CHANGED,
    PLAN_UPDATED,
    events_for,
    plan_activated,
    plan_drafted,
    with_procedure_codes,
)


def test_drafted_and_activated_carry_every_activity_with_level_and_dose(
    draft: PlanState, active: PlanState
) -> None:
    data = plan_drafted(draft, version_id=1)
    assert (data["carePlan"], data["versionId"], data["patient"], data["status"]) == (
        draft.reference,
        1,
        "pat-1",
        "draft",
    )
    assert "drafted from evaluation Observation/eval-1" in data["reason"]
    knee = next(a for a in data["activities"] if a["pattern"] == "knee-extension")
    assert knee["level"] == {d.value: 0 for d in Dimension}
    assert knee["dose"] == {
        "sets": 3,
        "reps": 10,
        "holdSeconds": 2,
        "restSeconds": 60,
        "frequencyPerWeek": 5,
        "loadKg": 0,
    }
    assert knee["stage"] == "unconscious-incompetence" and knee["side"] == "left"
    assert plan_activated(active, version_id=2)["status"] == "active"


def test_every_activity_carries_the_cpt_code_of_its_current_form(
    draft: PlanState, catalogue: Catalogue
) -> None:
    data = with_procedure_codes(plan_drafted(draft, version_id=1), draft, catalogue)
    codes = {a["pattern"]: a["cpt"] for a in data["activities"]}
    assert codes["knee-extension"] == "97110"
    assert all(c in ("97110", "97112", "97530") for c in codes.values())


def test_a_mastery_event_publishes_stage_change_and_progression(clinic: Any) -> None:
    for day in (0, 2):
        clinic.good_day("knee-extension", day=day, self_rating=3)
    clinic.session("knee-extension", day=4)
    outcome = clinic.symptoms("Encounter/s3", day=5)
    events = events_for(outcome.plan, outcome.decisions, version_id=7)
    assert [t for t, _ in events] == [PLAN_STAGE_CHANGED, PLAN_PROGRESSED]
    stage, progressed = (d for _, d in events)
    assert (stage["from"], stage["to"], stage["stage"]) == (
        "conscious-incompetence",
        "conscious-competence",
        "conscious-competence",
    )
    assert (progressed["dimension"], progressed["from"], progressed["to"]) == ("joints", 0, 1)
    assert progressed["evidence"] == ["Encounter/s1", "Encounter/s2", "Encounter/s3"]
    assert progressed["versionId"] == 7 and progressed["pattern"] == "knee-extension"
    # Both carry the snapshot, so a reader keeping one event per version still sees the new level and stage.
    knee = next(a for a in stage["activities"] if a["pattern"] == "knee-extension")
    assert knee["level"]["joints"] == 1 and knee["stage"] == "conscious-competence"


def test_holds_and_dose_changes_publish_one_update_with_the_new_dose(clinic: Any) -> None:
    clinic.session("knee-extension", day=0, load=10.0, reps=[12, 12, 12])
    outcome = clinic.session("knee-extension", day=2, load=10.0, reps=[12, 12, 12])
    ((kind, data),) = events_for(outcome.plan, outcome.decisions, version_id=4)
    assert kind == PLAN_UPDATED and "2-for-2" in data["reason"]
    knee = next(a for a in data["activities"] if a["pattern"] == "knee-extension")
    assert knee["dose"]["loadKg"] == 10.5
