"""Issue 12's rules, one by one, on the engine itself: evidence gates, waivers, the wait for a session's
streams, late corrections, symptoms against the baseline, what a regression undoes, Tasks for the therapist,
the load cap and stages that follow the patient."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.editing import resolve_task, set_waivers
from relearn.plan.domain.patterns import Dimension
from relearn.plan.domain.progression import evidence_due, expire_evidence
from relearn.plan.domain.stages import CompetenceStage
from relearn.plan.domain.state import Decision, PlanState, Waiver

KNEE = "knee-extension"
BALANCE = "single-leg-stance"


def _kinds(decisions: tuple[Decision, ...] | list[Decision]) -> list[str]:
    return [d.kind for d in decisions]


def _onset(
    session: str, stream: str, value: float | None, *, status: str = "measured", minute: int = 1
) -> dict[str, Any]:
    start = f"2026-12-05T09:{minute:02d}:00+00:00"
    return {
        "device": "emg-1",
        "stream": stream,
        "session": session,
        "channel": "ch1",
        "muscle": "vastus-medialis",
        "metric": "emg-onset-latency",
        "window": {"start": start, "end": f"2026-12-05T09:{minute:02d}:30+00:00"},
        "value": value,
        "unit": "ms",
        "status": status,
        "reason": None if status == "measured" else "no onset above baseline mean + 3 SD for 25 ms",
        "reference": {"kind": "synergist", "channel": "ch2", "muscle": "vastus-lateralis"},
    }


def _only_emg_onset_required(plan: PlanState) -> PlanState:
    """Everything but the EMG onset waived (co-contraction, sway), so tests isolate the onset criterion."""
    waivers = tuple(w for w in plan.waivers if w.criterion != "emg-onset-latency")
    return plan.model_copy(update={"waivers": waivers, "screening": None})


def test_an_unmeasured_criterion_blocks_the_advance_and_says_what_it_waits_for(
    active: PlanState, make_clinic: Callable[..., Any]
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    outcomes = [o for day in (0, 2, 4) for o in clinic.good_day(KNEE, day=day)]
    decisions = [d for o in outcomes for d in o.decisions if d.activity == clinic.activity(KNEE).id]
    assert "advance" not in _kinds(decisions)
    (hold,) = [d for d in decisions if d.kind == "hold"]
    assert "waits for evidence: EMG onset latency" in hold.reason
    statuses = {(c.session, c.criterion): c.status for c in hold.criteria}
    assert statuses[("Encounter/s1", "emg-onset-latency")] == "missing"
    assert statuses[("Encounter/s1", "rom")] == "pass"
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 0
    # The same hold is not written again by the next session.
    again = clinic.good_day(KNEE, day=6)
    assert not any(d.kind == "hold" and d.activity == hold.activity for o in again for d in o.decisions)


def test_a_waiver_with_a_reason_unblocks_at_once_and_every_decision_repeats_it(
    active: PlanState, make_clinic: Callable[..., Any], catalogue: Catalogue, scene: Any
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    for day in (0, 2, 4):
        clinic.good_day(KNEE, day=day)
    waiver = Waiver(
        pattern=KNEE,
        criterion="emg-onset-latency",
        reason="no synergist electrode fits this patient's thigh",
        by=scene.THERAPIST,
        at=scene.START,
    )
    outcome = set_waivers(
        clinic.plan,
        [*clinic.plan.waivers, waiver],
        by=scene.THERAPIST,
        reason="EMG onset cannot be measured",
        at=scene.START + timedelta(days=5),
        catalogue=catalogue,
    )
    (advance,) = [d for d in outcome.decisions if d.kind == "advance"]
    waived = [c for c in advance.criteria if c.criterion == "emg-onset-latency"]
    assert waived and {c.status for c in waived} == {"waived"}
    assert "no synergist electrode" in (waived[0].note or "")
    assert (
        outcome.plan.history[-1].kind == "waiver"
        and "EMG onset cannot be measured" in outcome.plan.history[-1].reason
    )


def test_no_onset_detected_is_a_measured_failure_not_missing_evidence(
    active: PlanState, make_clinic: Callable[..., Any]
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    for day, value in ((0, 5.0), (2, 4.0)):
        clinic.good_day(KNEE, day=day, streams=(f"st-{day}",))
        clinic.metric(_onset(clinic.last_session.session, f"st-{day}", value))
    clinic.session(KNEE, day=4, streams=("st-4",))
    weak = clinic.metric(_onset("Encounter/s3", "st-4", None, status="not-detected"))
    assert weak.decisions == ()
    settled = clinic.symptoms("Encounter/s3", day=5)
    assert "advance" not in _kinds(settled.decisions) and "hold" not in _kinds(settled.decisions)
    record = clinic.activity(KNEE).log[-1]
    assert record.metrics[0].status == "not-detected"
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 0


def test_onsets_judged_per_measurement_never_averaged(
    active: PlanState, make_clinic: Callable[..., Any]
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    for day in (0, 2):
        clinic.good_day(KNEE, day=day, streams=(f"st-{day}",))
        clinic.metric(_onset(clinic.last_session.session, f"st-{day}", 5.0))
    clinic.session(KNEE, day=4, streams=("st-4",))
    # +40 ms and -60 ms average to -10 ms, which would pass a 10 ms limit; each is judged on its own.
    clinic.metric(_onset("Encounter/s3", "st-4", 40.0, minute=1))
    clinic.metric(_onset("Encounter/s3", "st-4", -60.0, minute=2))
    outcome = clinic.symptoms("Encounter/s3", day=5)
    assert "advance" not in _kinds(outcome.decisions)
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 0


def test_a_session_waits_for_its_streams_then_judges_what_did_not_arrive_missing(
    active: PlanState, make_clinic: Callable[..., Any], catalogue: Catalogue, scene: Any
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    for day in (0, 2):
        clinic.good_day(KNEE, day=day, streams=(f"st-{day}",))
        clinic.metric(_onset(clinic.last_session.session, f"st-{day}", 5.0))
        clinic.stream_completed(f"st-{day}", day=day)
    clinic.session(KNEE, day=4, streams=("st-4",))
    waiting = clinic.symptoms("Encounter/s3", day=5)
    assert waiting.decisions == ()  # pending: no advance, no "missing" hold while the stream may deliver
    due = evidence_due(clinic.plan)
    assert due is not None
    early = expire_evidence(clinic.plan, now=due - timedelta(seconds=1), catalogue=catalogue)
    assert early.plan == clinic.plan
    late = expire_evidence(clinic.plan, now=due, catalogue=catalogue)
    (hold,) = late.decisions
    assert hold.kind == "hold" and "EMG onset latency" in hold.reason
    assert evidence_due(late.plan) is None


def test_a_completed_stream_releases_the_decision(active: PlanState, make_clinic: Callable[..., Any]) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    for day in (0, 2, 4):
        clinic.session(KNEE, day=day, streams=(f"st-{day}",))
        clinic.metric(_onset(clinic.last_session.session, f"st-{day}", 6.0))
        if day < 4:
            clinic.stream_completed(f"st-{day}", day=day)
        clinic.symptoms(clinic.last_session.session, day=day + 1)
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 0  # the third session still awaits its stream
    done = clinic.stream_completed("st-4", day=5)
    assert "advance" in _kinds(done.decisions)
    replay = clinic.stream_completed("st-4", day=5)
    assert replay.decisions == () and not replay.changed


def test_a_late_metric_that_contradicts_an_advance_corrects_it(
    active: PlanState, make_clinic: Callable[..., Any]
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    for day in (0, 2, 4):
        clinic.session(KNEE, day=day, streams=(f"st-{day}",))
        clinic.metric(_onset(clinic.last_session.session, f"st-{day}", 6.0, minute=1))
        clinic.stream_completed(f"st-{day}", day=day)
        clinic.symptoms(clinic.last_session.session, day=day + 1)
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 1
    late = clinic.metric(_onset("Encounter/s3", "st-4", 35.0, minute=5))
    (correction,) = [d for d in late.decisions if d.kind == "regress"]
    assert "correction" in correction.reason and "Encounter/s3" in correction.reason
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 0


def test_a_patient_in_pain_at_baseline_progresses_and_is_not_held_forever(
    clinic: Any,
) -> None:
    for day in (0, 2, 4):
        clinic.session(KNEE, day=day, pain_before=4, pain_after=4)
        clinic.symptoms(clinic.last_session.session, day=day + 1, pain24h=4)
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 1


def test_a_rise_over_baseline_holds_once_and_next_day_pain_must_settle(clinic: Any) -> None:
    first = clinic.session(KNEE, day=0, pain_before=0, pain_after=4)
    assert _kinds(first.decisions) == ["hold"] and "acceptable" in first.decisions[0].reason
    second = clinic.session(KNEE, day=2, pain_before=0, pain_after=4)
    assert second.decisions == () and not second.changed  # the same hold is not a new version
    for day in (4, 6, 8):
        clinic.good_day(KNEE, day=day)
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 1
    clinic.session(KNEE, day=10, pain_before=1, pain_after=2)
    unsettled = clinic.symptoms(clinic.last_session.session, day=11, pain24h=4)
    (undo,) = [d for d in unsettled.decisions if d.kind == "regress"]
    assert "not settled back to the baseline" in undo.reason


def test_pain_rising_week_on_week_holds_every_advance(clinic: Any) -> None:
    for day in (0, 2, 4):
        clinic.session(KNEE, day=day, pain_before=0, pain_after=0)
    holds = [
        d
        for day in (8, 10, 12)
        for d in clinic.session(KNEE, day=day, pain_before=2, pain_after=2).decisions
        if d.kind == "hold"
    ]
    assert len(holds) == 1 and "week on week" in holds[0].reason
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 0


def test_a_symptomatic_session_undoes_the_last_change_even_a_load_increase(clinic: Any) -> None:
    clinic.session(KNEE, day=0, load=0.5, reps=[12, 12, 12])
    raised = clinic.session(KNEE, day=2, load=0.5, reps=[12, 12, 12])
    assert _kinds(raised.decisions) == ["hold"]  # 0.5 -> 1.0 kg would be +100 %
    assert "+100 %" in raised.decisions[0].reason and "load stays 0.5 kg" in raised.decisions[0].reason
    clinic.session(KNEE, day=4, load=10.0, reps=[12, 12, 12])
    dosed = clinic.session(KNEE, day=6, load=10.0, reps=[12, 12, 12])
    (dose,) = dosed.decisions
    assert (dose.kind, dose.from_value, dose.to_value) == ("dose-change", 10.0, 10.5)
    assert "+5.0 %" in dose.reason
    sore = clinic.session(KNEE, day=8, load=10.5, pain_after=7)
    (undo,) = sore.decisions
    assert (undo.kind, undo.from_value, undo.to_value) == ("dose-change", 10.5, 10.0)
    assert "last load increase" in undo.reason
    assert clinic.activity(KNEE).dose.load_kg == 10.0


def test_the_same_advance_failing_twice_stops_the_cycle_and_asks_the_therapist(
    clinic: Any, catalogue: Catalogue, scene: Any
) -> None:
    day = 0.0
    tasks: list[Decision] = []
    for _ in range(2):
        for _ in range(3):
            clinic.good_day(KNEE, day=day)
            day += 2
        assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 1
        sore = clinic.session(KNEE, day=day, pain_after=7)
        tasks += [d for d in sore.decisions if d.kind == "task"]
        day += 2
    assert len(tasks) == 1
    (task,) = clinic.plan.tasks
    assert task.kind == "review-failed-advance" and task.status == "requested" and "2 times" in task.reason
    for _ in range(3):
        clinic.good_day(KNEE, day=day)
        day += 2
    levels = clinic.activity(KNEE).levels
    assert levels[Dimension.JOINTS] == 0 and levels[Dimension.MOTION] == 1  # the next dimension instead
    answered = resolve_task(
        clinic.plan,
        task.id,
        approve=True,
        by=scene.THERAPIST,
        reason="pain was from a fall at home",
        at=scene.START + timedelta(days=day),
        catalogue=catalogue,
    )
    assert answered.plan.task(task.id).status == "completed"
    assert answered.plan.activity(clinic.activity(KNEE).id).failed_advances == {}


def test_fall_risk_turns_a_load_bearing_advance_into_a_task_the_therapist_approves(
    at_risk: PlanState, make_clinic: Callable[..., Any], catalogue: Catalogue, scene: Any
) -> None:
    clinic = make_clinic(at_risk)  # TUG 16.5 s at the evaluation
    day = 0.0
    held: list[Decision] = []
    while not held and day < 30:
        outcome = clinic.good_day("standing-balance", day=day)
        held = [d for o in outcome for d in o.decisions if d.kind == "hold" and d.task]
        day += 2
    (hold,) = held
    assert "fall risk (TUG 16.5 s > 13.5 s)" in hold.reason
    (task,) = [t for t in clinic.plan.tasks if t.kind == "approve-advance"]
    assert task.proposed is not None and task.proposed.dimension in (
        Dimension.LOAD_BEARING,
        Dimension.PROPRIOCEPTION,
    )
    activity = clinic.activity("standing-balance")
    assert activity.levels[task.proposed.dimension] == task.proposed.from_level  # not applied silently
    approved = resolve_task(
        clinic.plan,
        task.id,
        approve=True,
        by=scene.THERAPIST,
        reason="supervised, with a rail",
        at=scene.START + timedelta(days=day),
        catalogue=catalogue,
    )
    (advance,) = approved.decisions
    assert advance.kind == "advance" and advance.override is not None and advance.task == f"Task/{task.id}"
    assert approved.plan.activity(activity.id).levels[task.proposed.dimension] == task.proposed.to_level


def test_stages_follow_the_patient_down(clinic: Any) -> None:
    pattern = BALANCE
    first = clinic.session(pattern, day=0, self_rating=3, quality=3)
    assert _kinds(first.decisions) == ["stage-change"]
    clinic.symptoms(clinic.last_session.session, day=0.9)
    for day in (1, 2):
        clinic.good_day(pattern, day=day)
    activity = clinic.activity(pattern)
    assert activity.stage is CompetenceStage.CONSCIOUS_COMPETENCE
    # An override to unconscious competence, then a symptomatic regression: at most conscious competence.
    from relearn.plan.domain.editing import override

    clinic.plan = override(
        clinic.plan,
        activity.id,
        by="Practitioner/pt-ana",
        reason="observed mastery",
        at=clinic.plan.created,
        catalogue=clinic.catalogue,
        stage="unconscious-competence",
    ).plan
    sore = clinic.session(pattern, day=5, pain_after=8)
    drops = [d for d in sore.decisions if d.kind == "stage-change"]
    assert drops and drops[0].to_value == "conscious-competence" and "symptomatic" in drops[0].reason


def test_only_the_named_muscle_timed_against_the_named_reference_is_evidence(
    active: PlanState, make_clinic: Callable[..., Any]
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    for day in (0, 2, 4):
        clinic.session(KNEE, day=day, streams=(f"st-{day}",))
        session = clinic.last_session.session
        wrong_muscle = _onset(session, f"st-{day}", 5.0, minute=1) | {
            "muscle": "biceps-femoris",
            "channel": "ch3",
        }
        wrong_clock = _onset(session, f"st-{day}", 5.0, minute=2) | {"reference": {"kind": "cue"}}
        clinic.metric(wrong_muscle)
        clinic.metric(wrong_clock)
        clinic.stream_completed(f"st-{day}", day=day)
        clinic.symptoms(session, day=day + 1)
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 0
    activity = clinic.activity(KNEE)
    assert "waits for evidence: EMG onset latency of vastus-medialis" in (
        activity.last_change.reason if activity.last_change else ""
    )


def test_an_exercise_names_its_own_muscles_and_the_evidence_follows(
    active: PlanState, make_clinic: Callable[..., Any], catalogue: Catalogue, scene: Any
) -> None:
    from relearn.plan.domain.editing import set_activity_muscles
    from relearn.plan.domain.state import CriterionMuscles

    clinic = make_clinic(_only_emg_onset_required(active))
    knee = clinic.activity(KNEE)
    chosen = {"emg-onset-latency": CriterionMuscles(reference_muscle="rectus-femoris")}
    edited = set_activity_muscles(
        clinic.plan,
        knee.id,
        chosen,
        by=scene.THERAPIST,
        reason="no room for a VL electrode",
        at=scene.START,
        catalogue=catalogue,
    )
    assert edited.changed and "against rectus-femoris" in edited.plan.history[-1].reason
    clinic.plan = edited.plan
    for day in (0, 2, 4):
        clinic.session(KNEE, day=day, streams=(f"st-{day}",))
        session = clinic.last_session.session
        clinic.metric(
            _onset(session, f"st-{day}", 5.0)
            | {"reference": {"kind": "synergist", "muscle": "rectus-femoris"}}
        )
        clinic.stream_completed(f"st-{day}", day=day)
        clinic.symptoms(session, day=day + 1)
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 1
    advance = clinic.plan.history[-1].decisions[-1]
    (onset,) = {c.label for c in advance.criteria if c.criterion == "emg-onset-latency"}
    assert "relative to the synergist rectus-femoris" in onset


def test_a_symptom_hold_is_said_again_after_a_safe_session(clinic: Any) -> None:
    first = clinic.session(KNEE, day=0, pain_before=0, pain_after=4)
    again = clinic.session(KNEE, day=2, pain_before=0, pain_after=4)
    assert _kinds(first.decisions) == ["hold"] and again.decisions == ()
    clinic.session(KNEE, day=4)  # safe
    later = clinic.session(KNEE, day=6, pain_before=0, pain_after=4)
    assert _kinds(later.decisions) == ["hold"]


def test_the_smallest_increment_within_the_cap_is_taken(clinic: Any) -> None:
    clinic.session(KNEE, day=0, load=5.0, reps=[12, 12, 12])
    dosed = clinic.session(KNEE, day=2, load=5.0, reps=[12, 12, 12])
    (dose,) = dosed.decisions
    # 5 % of 5 kg rounds down to nothing; 0.5 kg is +10 %, exactly the cap.
    assert (dose.kind, dose.from_value, dose.to_value) == ("dose-change", 5.0, 5.5)
    assert "+10.0 %" in dose.reason
