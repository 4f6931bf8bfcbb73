"""A therapist reviews, activates and edits the plan; each edit is a recorded version."""

from __future__ import annotations

from typing import Any

import pytest

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.editing import activate, add_activity, set_activity_status, set_status
from relearn.plan.domain.ids import stable_id
from relearn.plan.domain.patterns import Dimension
from relearn.plan.domain.state import PlanError, PlanState
from relearn.plan.mapper import care_plan, service_request


def test_activation_makes_the_plan_and_its_goals_active(draft: PlanState, scene: Any) -> None:
    outcome = activate(draft, by=scene.THERAPIST, at=scene.START)
    plan = outcome.plan
    assert outcome.changed and (plan.status, plan.version) == ("active", draft.version + 1)
    assert {g.lifecycle for g in plan.goals} == {"active"}
    assert (plan.history[-1].kind, plan.history[-1].by) == ("activated", scene.THERAPIST)
    with pytest.raises(PlanError, match="only a draft"):
        activate(plan, by=scene.THERAPIST, at=scene.START)


def test_putting_a_plan_on_hold_holds_its_prescriptions(
    active: PlanState, catalogue: Catalogue, scene: Any
) -> None:
    held = set_status(active, "on-hold", by=scene.THERAPIST, reason="knee surgery", at=scene.START).plan
    assert care_plan(held, catalogue)["status"] == "on-hold"
    assert {service_request(held, a, catalogue)["status"] for a in held.activities} == {"on-hold"}
    with pytest.raises(PlanError, match="cannot go from"):
        set_status(held, "draft", by=scene.THERAPIST, reason="x", at=scene.START)


def test_a_stopped_exercise_no_longer_counts_sessions(clinic: Any, catalogue: Catalogue, scene: Any) -> None:
    knee = clinic.activity("knee-extension")
    clinic.plan = set_activity_status(
        clinic.plan, knee.id, "cancelled", by=scene.THERAPIST, reason="pain", at=scene.START
    ).plan
    outcome = clinic.session("knee-extension", day=0)
    assert "cancelled" in outcome.ignored[0] and clinic.activity("knee-extension").log == ()
    assert service_request(clinic.plan, clinic.activity("knee-extension"), catalogue)["status"] == "revoked"


def test_a_therapist_adds_a_pattern_at_its_simplest_form(
    active: PlanState, catalogue: Catalogue, scene: Any
) -> None:
    outcome = add_activity(
        active,
        "trunk-bridging",
        side=None,
        by=scene.THERAPIST,
        reason="trunk control",
        at=scene.START,
        catalogue=catalogue,
        ids=stable_id,
    )
    added = scene.activity_of(outcome.plan, "trunk-bridging")
    assert added.levels == {d: 0 for d in Dimension} and outcome.plan.history[-1].kind == "edited"
    with pytest.raises(PlanError, match="already has"):
        add_activity(
            outcome.plan,
            "trunk-bridging",
            side=None,
            by=scene.THERAPIST,
            reason="again",
            at=scene.START,
            catalogue=catalogue,
            ids=stable_id,
        )
