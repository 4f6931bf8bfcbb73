"""The progression engine over a scripted course of sessions, 24-hour responses and device metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.editing import override, set_rule_overrides
from relearn.plan.domain.evidence import attempt, record_evidence
from relearn.plan.domain.inputs import SymptomsRecorded
from relearn.plan.domain.patterns import Dimension, MovementPattern
from relearn.plan.domain.progression import apply_session, apply_symptoms
from relearn.plan.domain.rules import DEFAULT_RULES
from relearn.plan.domain.stages import CompetenceStage
from relearn.plan.domain.state import Decision, PlanError, PlanState

KNEE = "knee-extension"


def _levels(clinic: Any, pattern: str = KNEE) -> dict[Dimension, int]:
    return dict(clinic.activity(pattern).levels)


def _raised(levels: dict[Dimension, int]) -> dict[str, int]:
    return {d.value: v for d, v in levels.items() if v}


def consecutive_successes(activity: Any, pattern: MovementPattern, rules: Any, waivers: Any = ()) -> int:
    """Sessions in a row, at the current level, that qualify for mastery (unrated ones skipped)."""
    n = 0
    for record in reversed(activity.log[activity.level_since :]):
        if record.quality is None:
            continue
        if not attempt(record, pattern, rules, waivers).qualifies:
            break
        n += 1
    return n


def _kinds(decisions: tuple[Decision, ...]) -> list[str]:
    return [d.kind for d in decisions]


def test_mastered_sessions_advance_one_dimension_at_a_time_in_the_default_order(clinic: Any) -> None:
    advances: list[Decision] = []
    for day in range(0, 27, 3):  # nine good sessions, each followed by a settled 24-hour response
        for outcome in clinic.good_day(KNEE, day=day):
            advances += [d for d in outcome.decisions if d.kind == "advance"]
    # Joints level 2 (sit-to-stand) puts weight on the leg: it waits for the load-bearing ladder, so the
    # engine passes over it and advances motion, saying why.
    assert [(d.dimension, d.from_value, d.to_value) for d in advances] == [
        (Dimension.JOINTS, 0, 1),
        (Dimension.MOTION, 0, 1),
        (Dimension.MOTION, 1, 2),
    ]
    assert _raised(_levels(clinic)) == {"joints": 1, "motion": 2}
    assert "passed over: joints 2: load bearing must first reach full-weight-bearing" in advances[1].reason
    first = advances[0]
    assert "3 consecutive sessions with every criterion met" in first.reason
    assert {c.criterion for c in first.criteria} >= {"sets", "reps", "quality", "rom", "emg-onset-latency"}
    assert {c.status for c in first.criteria if c.criterion == "emg-onset-latency"} == {"waived"}
    assert first.evidence == ("Encounter/s1", "Encounter/s2", "Encounter/s3")


def test_a_session_counts_only_once_its_24_hour_response_shows_no_flare(clinic: Any) -> None:
    for day in (0, 2):
        clinic.good_day(KNEE, day=day)
    third = clinic.session(KNEE, day=4)
    assert third.decisions == () and _levels(clinic)[Dimension.JOINTS] == 0
    settled = clinic.symptoms(third.plan.activities[0].log[-1].session, day=5)
    assert _kinds(settled.decisions) == ["advance"]
    assert settled.changed and settled.plan.version == third.plan.version + 1


def test_pain_above_five_regresses_the_last_advanced_dimension_and_a_flare_then_only_holds(
    clinic: Any,
) -> None:
    for day in (0, 2, 4):
        clinic.good_day(KNEE, day=day)
    assert _levels(clinic)[Dimension.JOINTS] == 1
    sore = clinic.session(KNEE, day=6, pain_after=7)
    (decision,) = sore.decisions
    assert (decision.kind, decision.dimension, decision.from_value, decision.to_value) == (
        "regress",
        Dimension.JOINTS,
        1,
        0,
    )
    assert "pain 7/10" in decision.reason and decision.evidence == ("Encounter/s4",)
    assert sore.plan.history[-1].kind == "symptoms"
    flare = clinic.symptoms("Encounter/s4", day=7, pain24h=6, flare=True)
    assert _kinds(flare.decisions) == ["hold"]
    assert "already caused a regression" in flare.decisions[0].reason
    assert _levels(clinic)[Dimension.JOINTS] == 0


def test_acceptable_pain_holds_and_restarts_the_mastery_count(clinic: Any, catalogue: Catalogue) -> None:
    clinic.good_day(KNEE, day=0)
    clinic.good_day(KNEE, day=2)
    held = clinic.session(KNEE, day=4, pain_after=5)
    assert _kinds(held.decisions) == ["hold"] and "acceptable" in held.decisions[0].reason
    clinic.symptoms("Encounter/s3", day=5)
    knee = catalogue.get(KNEE)
    assert consecutive_successes(clinic.activity(KNEE), knee, DEFAULT_RULES, clinic.plan.waivers) == 0
    clinic.good_day(KNEE, day=6)
    clinic.good_day(KNEE, day=8)
    assert consecutive_successes(clinic.activity(KNEE), knee, DEFAULT_RULES, clinic.plan.waivers) == 2
    assert _levels(clinic)[Dimension.JOINTS] == 0  # s3 broke the run: only two good sessions since
    clinic.good_day(KNEE, day=10)
    assert _levels(clinic)[Dimension.JOINTS] == 1


def test_a_flare_that_has_not_settled_next_day_regresses(clinic: Any) -> None:
    for day in (0, 2, 4):
        clinic.good_day(KNEE, day=day)
    clinic.session(KNEE, day=6)
    flare = clinic.symptoms("Encounter/s4", day=7, pain24h=4, flare=True)
    assert [(d.kind, d.dimension) for d in flare.decisions] == [("regress", Dimension.JOINTS)]
    assert "flare not settled by the next day" in flare.decisions[0].reason


def test_symptoms_at_the_simplest_form_hold_and_ask_for_review(clinic: Any) -> None:
    outcome = clinic.session(KNEE, day=0, pain_after=8)
    (decision,) = outcome.decisions
    assert decision.kind == "hold" and "already at the simplest form" in decision.reason
    assert _levels(clinic) == {d: 0 for d in Dimension}


def test_a_replayed_session_or_symptom_response_changes_nothing(clinic: Any, catalogue: Catalogue) -> None:
    first = clinic.session(KNEE, day=0)
    event = clinic.last_session
    replay = apply_session(first.plan, event, catalogue=catalogue)
    assert replay.plan == first.plan and replay.decisions == () and not replay.changed
    assert "already counted" in replay.ignored[0]
    settled = clinic.symptoms("Encounter/s1", day=1)
    again = clinic.symptoms("Encounter/s1", day=1)
    assert again.plan == settled.plan and again.ignored


def test_a_replayed_mastery_session_does_not_advance_twice(clinic: Any, catalogue: Catalogue) -> None:
    for day in (0, 2, 4):
        clinic.good_day(KNEE, day=day)
    before = clinic.plan
    for symptoms_replay in range(2):
        outcome = clinic.symptoms("Encounter/s3", day=5 + symptoms_replay)
        assert outcome.decisions == ()
    assert clinic.plan == before


def test_home_practice_without_a_quality_rating_neither_counts_nor_breaks_the_run(clinic: Any) -> None:
    clinic.good_day(KNEE, day=0)
    clinic.good_day(KNEE, day=2, quality=None)
    clinic.good_day(KNEE, day=4)
    assert _levels(clinic)[Dimension.JOINTS] == 0
    clinic.good_day(KNEE, day=6)
    assert _levels(clinic)[Dimension.JOINTS] == 1


def test_home_practice_is_recorded_and_cited_by_its_procedure(clinic: Any, catalogue: Catalogue) -> None:
    # Home practice has no Encounter: session.logged.v1 names the exercise's Procedure, and the evidence the
    # plan cites is that Procedure, a resource that exists.
    event = clinic.session_event(KNEE, day=0, quality=None)
    procedure = event.exercises[0].procedure
    home = event.model_copy(update={"setting": "home", "session": procedure})
    clinic._keep(apply_session(clinic.plan, home, catalogue=catalogue, rules=clinic.rules))
    found = clinic.activity(KNEE).record_for(procedure)
    assert found is not None and found[1].session == procedure
    assert record_evidence(found[1]) == (procedure,)
    clinic.symptoms(procedure, day=1)  # the 24-hour response finds it by the same reference
    after = clinic.activity(KNEE).record_for(procedure)
    assert after is not None and after[1].pain_24h == 1


def test_editing_a_rule_changes_the_outcome(
    clinic: Any, make_clinic: Callable[..., Any], catalogue: Catalogue
) -> None:
    start = clinic.plan
    for day in (0, 2):
        clinic.good_day(KNEE, day=day)
    assert _levels(clinic)[Dimension.JOINTS] == 0  # default: three sessions
    edited = set_rule_overrides(
        start,
        by="Practitioner/pt-ana",
        reason="fast learner",
        at=start.created,
        catalogue=catalogue,
        pattern=KNEE,
        pattern_patch={"mastery": {"consecutiveSessions": 2}},
    )
    assert edited.changed and edited.plan.history[-1].kind == "rules"
    faster = make_clinic(edited.plan)
    for day in (0, 2):
        faster.good_day(KNEE, day=day)
    assert _levels(faster)[Dimension.JOINTS] == 1
    assert _levels(faster, "ankle-dorsiflexion") == {d: 0 for d in Dimension}  # other patterns keep three


def test_a_per_pattern_dimension_order_is_followed(
    active: PlanState, make_clinic: Callable[..., Any], catalogue: Catalogue
) -> None:
    plan = set_rule_overrides(
        active,
        by="Practitioner/pt-ana",
        reason="balance first",
        at=active.created,
        catalogue=catalogue,
        pattern=KNEE,
        pattern_patch={"advance": {"dimensionOrder": ["proprioception", "loadBearing"]}},
    ).plan
    clinic = make_clinic(plan)
    for day in range(0, 24, 2):
        clinic.good_day(KNEE, day=day)
    assert _raised(_levels(clinic)) == {"proprioception": 3, "loadBearing": 1}


def test_an_invalid_rule_edit_is_refused_whole(active: PlanState, catalogue: Catalogue) -> None:
    with pytest.raises(PlanError, match=r"maxPain|max_pain"):
        set_rule_overrides(
            active,
            by="x",
            reason="y",
            at=active.created,
            catalogue=catalogue,
            plan_patch={"mastery": {"maxPain": 12}},
        )


def test_two_for_two_raises_the_load_when_the_last_set_beats_the_target_twice(clinic: Any) -> None:
    first = clinic.session(KNEE, day=0, load=10.0, reps=[12, 12, 12])
    assert first.decisions == ()
    second = clinic.session(KNEE, day=2, load=10.0, reps=[12, 11, 12])
    (decision,) = second.decisions
    assert (decision.kind, decision.from_value, decision.to_value) == ("dose-change", 10.0, 10.5)
    assert "2-for-2" in decision.reason
    assert clinic.activity(KNEE).dose.load_kg == 10.5
    third = clinic.session(KNEE, day=4, load=10.5, reps=[12, 12, 12])
    assert third.decisions == ()  # the count restarts at the new load


def test_one_extra_rep_is_not_enough_for_more_load(clinic: Any) -> None:
    clinic.session(KNEE, day=0, load=10.0, reps=[11, 11, 11])
    outcome = clinic.session(KNEE, day=2, load=10.0, reps=[11, 11, 11])
    assert outcome.decisions == () and clinic.activity(KNEE).dose.load_kg == 0


def _metric(
    metric: str, value: float, unit: str, session: str | None, stream: str | None, minute: int
) -> dict[str, Any]:
    start = f"2026-12-05T09:{minute:02d}:00+00:00"
    return {
        "device": "emg-1",
        "stream": stream,
        "session": session,
        "metric": metric,
        "window": {"start": start, "end": f"2026-12-05T09:{minute:02d}:30+00:00"},
        "value": value,
        "unit": unit,
        # The knee's onset criterion: vastus medialis timed against its synergist, vastus lateralis.
        "muscle": "vastus-medialis",
        "reference": {"kind": "synergist", "muscle": "vastus-lateralis"},
    }


def test_a_device_metric_outside_the_mastery_window_blocks_the_advance(clinic: Any) -> None:
    clinic.good_day(KNEE, day=0)
    clinic.good_day(KNEE, day=2)
    clinic.session(KNEE, day=4, streams=("stream-vmo",))
    # The gateway reports onset latency in seconds: 0.045 s = 45 ms, above the pattern's 10 ms.
    late = clinic.metric(
        _metric("emg-onset-latency", 0.045, "s", "Encounter/s3", "stream-vmo", 10), "Observation/m1"
    )
    assert late.decisions == () and not late.changed
    record = clinic.activity(KNEE).log[-1]
    assert [m.observation for m in record.metrics] == ["Observation/m1"]
    clinic.symptoms("Encounter/s3", day=5)
    assert _levels(clinic)[Dimension.JOINTS] == 0
    before = clinic.plan
    replay = clinic.metric(
        _metric("emg-onset-latency", 0.045, "s", "Encounter/s3", "stream-vmo", 10), "Observation/m1"
    )
    assert replay.plan == before and "already held" in replay.ignored[0]


def test_a_metric_within_the_window_is_evidence_of_the_advance(clinic: Any) -> None:
    clinic.good_day(KNEE, day=0)
    clinic.good_day(KNEE, day=2)
    # The metric arrives before the session closes: it waits, then joins the session's record.
    waiting = clinic.metric(
        _metric("emg-onset-latency", 0.004, "s", "Encounter/s3", "stream-vmo", 10), "Observation/m2"
    )
    assert waiting.plan.pending_metrics and "not logged yet" in waiting.ignored[0]
    clinic.session(KNEE, day=4, streams=("stream-vmo",))
    assert clinic.plan.pending_metrics == ()
    outcome = clinic.symptoms("Encounter/s3", day=5)
    (advance,) = outcome.decisions
    assert "Observation/m2" in advance.evidence and "Encounter/s3" in advance.evidence


def test_a_metric_no_criterion_uses_is_ignored(clinic: Any) -> None:
    outcome = clinic.metric(_metric("emg-median-frequency", 80, "Hz", "Encounter/s1", None, 1))
    assert outcome.plan == clinic.plan and "not a mastery criterion" in outcome.ignored[0]


def _reach_conscious_competence(clinic: Any, pattern: str) -> None:
    """Self-rating agrees at the first session; three good feedback sessions on days 0-2 (responses next
    morning) reach conscious competence."""
    first = clinic.session(pattern, day=0, self_rating=2, quality=3)
    assert [d.to_value for d in first.decisions] == ["conscious-incompetence"]
    clinic.symptoms(clinic.last_session.session, day=0.9)
    for day in (1, 2):
        clinic.session(pattern, day=day)
        last = clinic.symptoms(clinic.last_session.session, day=day + 0.9)
    assert clinic.activity(pattern).stage is CompetenceStage.CONSCIOUS_COMPETENCE
    assert "stage-change" in _kinds(last.decisions) and "advance" in _kinds(last.decisions)


def _no_feedback(clinic: Any, pattern: str, day: float, **kwargs: Any) -> list[Decision]:
    out = list(clinic.session(pattern, day=day, with_feedback=False, **kwargs).decisions)
    out += clinic.symptoms(clinic.last_session.session, day=day + 0.02).decisions
    return out


def test_stages_climb_only_with_unprompted_retention_and_dual_task_evidence(clinic: Any) -> None:
    pattern = "single-leg-stance"
    s1 = clinic.session(pattern, day=-1, self_rating=0, quality=2)
    assert s1.decisions == ()  # self-rating 0 against quality 2 disagrees: still unconscious incompetence
    clinic.symptoms(clinic.last_session.session, day=-0.5)
    _reach_conscious_competence(clinic, pattern)
    # Three unprompted sessions within target, one under a dual task with a 5 % cost - but each within 24 h of
    # the previous practice: no retention check yet.
    unprompted = []
    for day, dual in ((2.95, True), (3.5, False), (4.2, False)):
        decisions = _no_feedback(clinic, pattern, day, dual_task=dual, cost=5.0 if dual else None)
        unprompted.append(clinic.last_session.session)
        assert "stage-change" not in _kinds(tuple(decisions))
    assert clinic.activity(pattern).stage is CompetenceStage.CONSCIOUS_COMPETENCE
    # After two days without practice the pattern is still performed correctly without feedback.
    decisions = _no_feedback(clinic, pattern, 6.5, retention=True)
    retention = clinic.last_session.session
    (change,) = [d for d in decisions if d.kind == "stage-change"]
    assert (change.from_value, change.to_value) == ("conscious-competence", "unconscious-competence")
    assert "retention attempt" in change.reason and "dual-task" in change.reason
    assert {retention, unprompted[0]} <= set(change.evidence)  # the retention and the dual-task sessions


def test_a_high_dual_task_cost_keeps_the_pattern_conscious(clinic: Any) -> None:
    pattern = "single-leg-stance"
    _reach_conscious_competence(clinic, pattern)
    _no_feedback(clinic, pattern, 4.0, dual_task=True, cost=25.0)
    _no_feedback(clinic, pattern, 6.0, retention=True)
    _no_feedback(clinic, pattern, 8.0)
    assert clinic.activity(pattern).stage is CompetenceStage.CONSCIOUS_COMPETENCE
    # One-sided: performing better under the dual task (a negative cost) is no deterioration.
    _no_feedback(clinic, pattern, 10.0, dual_task=True, cost=-4.0)
    assert clinic.activity(pattern).stage is CompetenceStage.UNCONSCIOUS_COMPETENCE


def test_a_retention_attempt_must_be_marked_and_fall_in_the_20_to_72_hour_window(clinic: Any) -> None:
    pattern = "single-leg-stance"
    _reach_conscious_competence(clinic, pattern)
    _no_feedback(clinic, pattern, 4.0, dual_task=True, cost=2.0)
    _no_feedback(clinic, pattern, 6.0)  # 48 h later but not marked as a retention attempt
    _no_feedback(clinic, pattern, 10.0, retention=True)  # marked, but 96 h after the last practice
    assert clinic.activity(pattern).stage is CompetenceStage.CONSCIOUS_COMPETENCE
    # Daily sessions 23 h 15 min apart count when marked.
    decisions = _no_feedback(clinic, pattern, 10.0 + 23.25 / 24 + 0.02, retention=True)
    assert clinic.activity(pattern).stage is CompetenceStage.UNCONSCIOUS_COMPETENCE
    assert any(d.kind == "stage-change" for d in decisions)


def test_practice_with_feedback_never_reaches_unconscious_competence(clinic: Any) -> None:
    pattern = "single-leg-stance"
    _reach_conscious_competence(clinic, pattern)
    for day in (4, 6, 8, 10):
        clinic.session(pattern, day=day, dual_task=True, cost=0.0)
        clinic.symptoms(clinic.last_session.session, day=day + 1)
    assert clinic.activity(pattern).stage is CompetenceStage.CONSCIOUS_COMPETENCE


def test_a_therapist_override_is_recorded_and_becomes_the_last_advance(
    clinic: Any, catalogue: Catalogue, scene: Any
) -> None:
    knee = clinic.activity(KNEE)
    outcome = override(
        clinic.plan,
        knee.id,
        by="Practitioner/pt-ana",
        reason="already walks stairs with one rail",
        at=scene.START,
        catalogue=catalogue,
        levels={"joints": 2, "tempo": 1},
        stage="conscious-competence",
        dose={"reps": 12},
    )
    clinic.plan = outcome.plan
    assert sorted(_kinds(outcome.decisions)) == ["advance", "advance", "dose-change", "stage-change"]
    assert all(d.override is not None and d.override.by == "Practitioner/pt-ana" for d in outcome.decisions)
    change = outcome.plan.history[-1]
    assert (change.kind, change.by) == ("override", "Practitioner/pt-ana")
    assert "already walks stairs with one rail" in change.reason
    updated = clinic.activity(KNEE)
    assert (updated.levels[Dimension.JOINTS], updated.levels[Dimension.TEMPO], updated.dose.reps) == (
        2,
        1,
        12,
    )
    # Symptoms now regress the last dimension the therapist raised.
    sore = clinic.session(KNEE, day=1, pain_after=7)
    assert [(d.kind, d.dimension) for d in sore.decisions] == [("regress", Dimension.TEMPO)]


def test_an_override_off_the_ladder_or_without_a_reason_is_refused(
    clinic: Any, catalogue: Catalogue, scene: Any
) -> None:
    knee = clinic.activity(KNEE)
    with pytest.raises(PlanError, match="off the ladder"):
        override(
            clinic.plan,
            knee.id,
            by="x",
            reason="y",
            at=scene.START,
            catalogue=catalogue,
            levels={"joints": 9},
        )
    with pytest.raises(PlanError, match="needs a reason"):
        override(
            clinic.plan,
            knee.id,
            by="x",
            reason=" ",
            at=scene.START,
            catalogue=catalogue,
            stage="conscious-competence",
        )


def test_a_draft_plan_does_not_progress(draft: PlanState, make_clinic: Callable[..., Any]) -> None:
    clinic = make_clinic(draft)
    outcome = clinic.session(KNEE, day=0)
    assert outcome.plan == draft and "not active" in outcome.ignored[0]


def test_a_session_for_another_plan_is_ignored(clinic: Any, catalogue: Catalogue) -> None:
    event = clinic.session_event(KNEE, day=0).model_copy(update={"care_plan": "CarePlan/other"})
    outcome = apply_session(clinic.plan, event, catalogue=catalogue)
    assert outcome.plan == clinic.plan and outcome.ignored


def test_the_plan_state_survives_a_json_round_trip_mid_course(clinic: Any, catalogue: Catalogue) -> None:
    for day in (0, 2, 4):
        clinic.good_day(KNEE, day=day, streams=("st",))
    clinic.session(KNEE, day=6, pain_after=7)
    text = clinic.plan.model_dump_json()
    restored = PlanState.model_validate_json(text)
    assert restored == clinic.plan
    # ... and keeps working: the restored plan recognises a replayed 24-hour response.
    record = next(r for r in restored.activity(clinic.activity(KNEE).id).log if r.session == "Encounter/s1")
    assert record.symptoms_at is not None and record.pain_24h is not None
    replay = SymptomsRecorded(
        session="Encounter/s1",
        patient=restored.patient,
        recorded_at=record.symptoms_at,
        pain24h=record.pain_24h,
        flare=bool(record.flare),
    )
    again = apply_symptoms(restored, replay, catalogue=catalogue, rules=DEFAULT_RULES)
    assert again.decisions == () and again.plan == restored
