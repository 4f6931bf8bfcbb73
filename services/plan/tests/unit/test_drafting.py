"""An evaluation drafts a plan at the simplest forms; a re-assessment proposes changes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.drafting import apply_proposal, draft_plan, propose_changes
from relearn.plan.domain.editing import override
from relearn.plan.domain.ids import stable_id
from relearn.plan.domain.inputs import EvaluationCompleted
from relearn.plan.domain.patterns import Dimension
from relearn.plan.domain.stages import CompetenceStage
from relearn.plan.domain.state import PlanState
from relearn.shared.fhir import CANONICAL_URL


def _patterns(plan: PlanState) -> dict[tuple[str, str | None], Any]:
    return {(a.pattern, a.side): a for a in plan.activities}


def test_knee_ankle_and_balance_deficits_draft_matching_patterns_at_their_simplest_form(
    draft: PlanState, catalogue: Catalogue
) -> None:
    assert draft.status == "draft" and draft.version == 1
    assert set(_patterns(draft)) == {
        ("knee-extension", "left"),
        ("ankle-dorsiflexion", "left"),
        ("standing-balance", None),
        ("single-leg-stance", "left"),
        ("stepping", None),
    }
    for a in draft.activities:
        pattern = catalogue.get(a.pattern)
        assert a.levels == {d: 0 for d in Dimension}
        assert a.stage is CompetenceStage.UNCONSCIOUS_INCOMPETENCE
        assert (a.dose.sets, a.dose.reps, a.dose.frequency_per_week) == (
            pattern.dosing.sets,
            pattern.dosing.reps,
            pattern.dosing.frequency_per_week,
        )
        assert a.dose.load_kg == 0


def test_the_knee_activity_addresses_both_knee_deficits(draft: PlanState) -> None:
    knee = _patterns(draft)[("knee-extension", "left")]
    assert {d.observation for d in knee.deficits} == {"Observation/obs-rom-knee", "Observation/obs-mmt-quads"}


def test_pain_is_not_drafted_and_an_unmatched_deficit_is_named_for_the_therapist(draft: PlanState) -> None:
    addressed = {d.observation for a in draft.activities for d in a.deficits}
    assert "Observation/obs-pain" not in addressed
    assert "Observation/obs-mmt-adductors" not in addressed
    assert "hip adductors" in draft.history[0].reason


def test_goals_come_from_the_patients_words_with_measurable_targets(draft: PlanState) -> None:
    goals = {g.description: g for g in draft.goals}
    stairs = goals["Climb the stairs at home without holding the rail"]
    assert stairs.source == "patient" and stairs.lifecycle == "proposed"
    # No target given: derived from the norms of the deficits the words are about (stairs: knee, ankle...).
    derived = {(t.measure_code, t.comparator, t.value) for t in stairs.targets}
    assert ("rom-knee-extension", ">=", -5) in derived
    assert ("rom-ankle-dorsiflexion", ">=", 10) in derived
    assert "Observation/obs-rom-knee" in stairs.addresses
    shops = goals["Walk to the shops without fear of falling"]
    (tug,) = shops.targets
    assert (tug.measure_code, tug.comparator, tug.value, tug.unit, str(tug.due)) == (
        "89423-8",
        "<=",
        12,
        "s",
        "2027-02-28",
    )
    assert tug.baseline == 16.5 and tug.deficit == "Observation/obs-tug"


def test_deficits_no_patient_goal_covers_get_a_clinician_goal(draft: PlanState) -> None:
    clinician = [g for g in draft.goals if g.source == "clinician"]
    covered = {a for g in draft.goals if g.source == "patient" for a in g.addresses}
    for g in clinician:
        assert g.targets and set(g.addresses).isdisjoint(covered)
    assert any("ellipse area" in g.description and "<= 9 cm2" in g.description for g in clinician)


def test_every_activity_serves_a_goal(draft: PlanState) -> None:
    ids = {g.id for g in draft.goals}
    for a in draft.activities:
        assert a.goals and set(a.goals) <= ids


def test_drafting_is_deterministic_and_uses_the_callers_id_factory(
    evaluation: EvaluationCompleted, catalogue: Catalogue, draft: PlanState
) -> None:
    assert draft_plan(evaluation, catalogue=catalogue, ids=stable_id) == draft
    issued: list[tuple[str, str]] = []

    def server_ids(rtype: str, key: str) -> str:
        issued.append((rtype, key))
        return f"{rtype.lower()}-{len(issued)}"

    plan = draft_plan(evaluation, catalogue=catalogue, ids=server_ids)
    assert plan.id == "careplan-1"
    assert {rtype for rtype, _ in issued} == {"CarePlan", "Goal", "ServiceRequest"}
    assert all(a.id.startswith("servicerequest-") for a in plan.activities)


def test_self_rating_agreement_at_evaluation_starts_at_conscious_incompetence(
    scene: Any, catalogue: Catalogue
) -> None:
    payload = scene.payload()
    for d in payload["deficits"]:
        d["selfRatingAgrees"] = True
    plan = draft_plan(EvaluationCompleted.model_validate(payload), catalogue=catalogue, ids=stable_id)
    assert {a.stage for a in plan.activities} == {CompetenceStage.CONSCIOUS_INCOMPETENCE}


def _reassessment(
    scene: Any, keep: set[str], extra: list[dict[str, Any]] | None = None
) -> EvaluationCompleted:
    payload = scene.payload()
    payload |= {
        "evaluationId": "eval-2",
        "kind": "reassessment",
        "effective": "2027-01-20T10:00:00+01:00",
        "goals": [],
    }
    payload["deficits"] = [d for d in payload["deficits"] if d["observationId"] in keep] + (extra or [])
    return EvaluationCompleted.model_validate(payload)


def test_reassessment_marks_goals_achieved_where_the_deficit_is_gone(
    scene: Any, active: PlanState, catalogue: Catalogue
) -> None:
    # Everything resolved except the sway and the single-leg stance.
    again = _reassessment(scene, keep={"obs-sway", "obs-sls"})
    proposal = propose_changes(active, again, catalogue=catalogue, ids=stable_id)
    achieved = {active.goal(u.goal).description for u in proposal.goal_updates if u.achievement == "achieved"}
    assert "Walk to the shops without fear of falling" in achieved  # TUG no longer a deficit
    assert not proposal.add_activities
    outcome = apply_proposal(active, proposal, by=scene.THERAPIST, at=scene.START + timedelta(days=50))
    shops = next(g for g in outcome.plan.goals if g.description.startswith("Walk to the shops"))
    assert (shops.lifecycle, shops.achievement, shops.outcome) == (
        "completed",
        "achieved",
        ("Observation/eval-2",),
    )
    assert outcome.changed and outcome.plan.history[-1].kind == "reassessed"


def test_reassessment_adds_patterns_for_new_deficits(
    scene: Any, active: PlanState, catalogue: Catalogue
) -> None:
    new = {
        "item": "rom[5]",
        "observationId": "obs-rom-shoulder",
        "measure": "rom-shoulder-flexion",
        "code": {
            "system": f"{CANONICAL_URL}/CodeSystem/neuromuscular-evaluation",
            "code": "rom-shoulder-flexion",
        },
        "kind": "range-of-motion",
        "side": "left",
        "joint": "shoulder",
        "motion": "flexion",
        "measured": 110,
        "unit": "deg",
        "norm": {"value": 170, "limit": 150, "direction": "below"},
        "severity": "moderate",
    }
    again = _reassessment(scene, keep={"obs-sway"}, extra=[new])
    proposal = propose_changes(active, again, catalogue=catalogue, ids=stable_id)
    (added,) = proposal.add_activities
    assert (added.pattern, added.side, added.levels[Dimension.JOINTS]) == ("shoulder-flexion", "left", 0)
    (goal,) = proposal.add_goals
    assert goal.lifecycle == "active" and goal.targets[0].value == 150
    plan = apply_proposal(active, proposal, by=scene.THERAPIST, at=scene.START).plan
    assert plan.find_activity(added.id) is not None


def test_an_automatic_pattern_whose_deficits_are_gone_is_proposed_complete(
    scene: Any, active: PlanState, catalogue: Catalogue
) -> None:
    knee = scene.activity_of(active, "knee-extension")
    plan = override(
        active,
        knee.id,
        by=scene.THERAPIST,
        reason="retested",
        at=scene.START,
        catalogue=catalogue,
        stage="unconscious-competence",
    ).plan
    proposal = propose_changes(
        plan, _reassessment(scene, keep={"obs-sway"}), catalogue=catalogue, ids=stable_id
    )
    assert proposal.complete_activities == (knee.id,)
    # Still-learning patterns are not completed just because the number is back in range.
    assert scene.activity_of(plan, "ankle-dorsiflexion").id not in proposal.complete_activities
