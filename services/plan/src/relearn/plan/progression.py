"""The progression engine: sessions, 24-hour symptom responses and device metrics in; decisions out.

Pure and deterministic: each function takes the plan and one event and returns an :class:`Outcome` - the new
:class:`~relearn.plan.state.PlanState` and the decisions taken. Persist ``outcome.plan`` every time (it holds
the session log and counters); when ``outcome.changed`` write a new CarePlan version and publish the events of
``outcome.decisions`` (:mod:`relearn.plan.outbound`).

Per activity and event, in this order:
1. symptoms block progress - pain above the safe zone holds; pain above the acceptable zone, or a flare that
   has not settled by the next day, regresses one step on the last-advanced dimension (once per session);
2. competence stage moves up when its evidence is there (:func:`relearn.plan.stages.next_stage`);
3. mastery - N consecutive qualifying sessions at the current level - advances exactly one dimension;
4. otherwise the 2-for-2 load rule may raise the load (a dose change, never together with an advance).

Idempotent by construction: a session already in an activity's log, a symptom response equal to the one
recorded, or a metric window already held changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from relearn.plan.catalogue import Catalogue
from relearn.plan.evidence import (
    attempt,
    metric_from_event,
    record_evidence,
    record_from_exercise,
)
from relearn.plan.inbound import DeviceMetricComputed, SessionLogged, SymptomsRecorded
from relearn.plan.patterns import DEFAULT_DIMENSION_ORDER, DIMENSION_DISPLAY, Dimension, MovementPattern
from relearn.plan.rules import DEFAULT_RULES, ProgressionRules, pain_zone, resolve_rules
from relearn.plan.stages import CompetenceStage, mastery_streak, next_stage
from relearn.plan.state import (
    ActivityState,
    ChangeKind,
    ChangeNote,
    Decision,
    MetricEvidence,
    PlanState,
    SessionRecord,
)

Trigger = Literal["session", "symptoms", "metric"]


@dataclass(frozen=True)
class Outcome:
    """The plan after one event or edit, what changed on it, and what was ignored and why."""

    plan: PlanState
    decisions: tuple[Decision, ...] = ()
    ignored: tuple[str, ...] = ()
    changed: bool = False  # a new plan version: write the CarePlan and publish events


def activity_rules(
    plan: PlanState, pattern: MovementPattern, base: ProgressionRules = DEFAULT_RULES
) -> ProgressionRules:
    """The rules in force for one pattern of this plan: defaults <- pattern <- plan <- plan's pattern."""
    return resolve_rules(
        base,
        pattern.rule_patch(),
        plan.rule_overrides.plan,
        plan.rule_overrides.patterns.get(pattern.code),
    )


def label(activity: ActivityState, pattern: MovementPattern) -> str:
    return f"{pattern.name} ({activity.side})" if activity.side else pattern.name


def _step_text(pattern: MovementPattern, dimension: Dimension, level: int) -> str:
    return (
        f"{DIMENSION_DISPLAY[dimension].lower()} step {level} '{pattern.step(dimension, level).description}'"
    )


def choose_dimension(
    activity: ActivityState, pattern: MovementPattern, rules: ProgressionRules
) -> Dimension | None:
    """The one dimension to advance next, or None at the top of every ladder the rules allow."""
    order = rules.advance.dimension_order or DEFAULT_DIMENSION_ORDER
    open_dims = [d for d in order if activity.levels.get(d, 0) < pattern.top_level(d)]
    if not open_dims:
        return None
    if rules.advance.strategy == "round-robin" and activity.last_advanced in order:
        start = order.index(activity.last_advanced) + 1
        rotated = (*order[start:], *order[:start])
        return next(d for d in rotated if d in open_dims)
    return open_dims[0]


def _round_load(value: float, increment: float) -> float:
    return round(round(value / increment) * increment, 3)


def _replace_record(activity: ActivityState, index: int, record: SessionRecord) -> ActivityState:
    log = list(activity.log)
    log[index] = record
    return activity.model_copy(update={"log": tuple(log)})


def _symptom_zone(record: SessionRecord, trigger: Trigger, rules: ProgressionRules) -> str:
    if trigger == "session":
        return pain_zone(record.pain_after, rules)
    if trigger == "symptoms":
        if record.flare:
            return "flare"
        return pain_zone(record.pain_24h or 0, rules)
    return "safe"


def _on_symptoms(
    activity: ActivityState,
    pattern: MovementPattern,
    rules: ProgressionRules,
    index: int,
    zone: str,
    trigger: Trigger,
) -> tuple[ActivityState, Decision]:
    record = activity.log[index]
    name = label(activity, pattern)
    evidence = record_evidence(record)
    if trigger == "session":
        what = f"pain {record.pain_after}/10 after the session"
    elif zone == "flare":
        what = f"a flare not settled by the next day (pain {record.pain_24h}/10 at 24 h)"
    else:
        what = f"pain {record.pain_24h}/10 24 h after the session"
    if zone == "acceptable":
        reason = (
            f"{name}: {what} is acceptable but above {rules.mastery.max_pain}/10 - holding at the current "
            "level; the mastery count starts again"
        )
        return activity, Decision(
            activity=activity.id, pattern=pattern.code, kind="hold", reason=reason, evidence=evidence
        )
    action = rules.symptoms.flare_action if zone == "flare" else rules.symptoms.unacceptable_action
    dim = activity.last_advanced
    if action == "hold" or dim is None or record.regressed:
        if action == "hold":
            why = "the rules say hold"
        elif record.regressed:
            why = "this session already caused a regression"
        else:
            why = "already at the simplest form"
        reason = f"{name}: {what} - holding ({why}); therapist review advised"
        return activity, Decision(
            activity=activity.id, pattern=pattern.code, kind="hold", reason=reason, evidence=evidence
        )
    old = activity.levels[dim]
    levels = {**activity.levels, dim: old - 1}
    reason = (
        f"{name}: {what} - regressing one step on the last-advanced dimension, "
        f"{DIMENSION_DISPLAY[dim].lower()} {old} -> {old - 1} ('{pattern.step(dim, old - 1).description}')"
    )
    regressed = _replace_record(activity, index, record.model_copy(update={"regressed": True}))
    n = len(activity.log)
    updated = regressed.model_copy(
        update={"levels": levels, "advanced": activity.advanced[:-1], "level_since": n, "dose_since": n}
    )
    return updated, Decision(
        activity=activity.id,
        pattern=pattern.code,
        kind="regress",
        dimension=dim,
        from_value=old,
        to_value=old - 1,
        reason=reason,
        evidence=evidence,
    )


def _stage_changes(
    activity: ActivityState, pattern: MovementPattern, rules: ProgressionRules, latest: SessionRecord | None
) -> tuple[ActivityState, list[Decision]]:
    decisions: list[Decision] = []
    name = label(activity, pattern)
    for _ in range(len(CompetenceStage)):
        at_level = [attempt(r, pattern, rules) for r in activity.log[activity.level_since :]]
        since = [attempt(r, pattern, rules) for r in activity.log[activity.stage_since :]]
        before = (
            attempt(activity.log[activity.stage_since - 1], pattern, rules) if activity.stage_since else None
        )
        change = next_stage(
            activity.stage,
            latest=attempt(latest, pattern, rules) if latest is not None else None,
            at_level=at_level,
            since_competence=since if activity.stage is CompetenceStage.CONSCIOUS_COMPETENCE else (),
            before_competence=before,
            rules=rules,
        )
        if change is None:
            break
        decisions.append(
            Decision(
                activity=activity.id,
                pattern=pattern.code,
                kind="stage-change",
                from_value=activity.stage.value,
                to_value=change.to.value,
                reason=f"{name}: {activity.stage.display.lower()} -> {change.to.display.lower()}: "
                f"{change.reason}",
                evidence=change.evidence,
            )
        )
        activity = activity.model_copy(update={"stage": change.to, "stage_since": len(activity.log)})
    return activity, decisions


def _advance(
    activity: ActivityState, pattern: MovementPattern, rules: ProgressionRules
) -> tuple[ActivityState, Decision | None]:
    at_level = [attempt(r, pattern, rules) for r in activity.log[activity.level_since :]]
    n = rules.mastery.consecutive_sessions
    streak = mastery_streak(at_level, n)
    if streak is None:
        return activity, None
    dim = choose_dimension(activity, pattern, rules)
    if dim is None:
        return activity, None
    old = activity.levels.get(dim, 0)
    reason = (
        f"{label(activity, pattern)}: mastered - {n} consecutive sessions within target, pain <= "
        f"{rules.mastery.max_pain}/10, no 24-hour flare - advancing {DIMENSION_DISPLAY[dim].lower()} "
        f"{old} -> {old + 1} ('{pattern.step(dim, old + 1).description}')"
    )
    size = len(activity.log)
    updated = activity.model_copy(
        update={
            "levels": {**activity.levels, dim: old + 1},
            "advanced": (*activity.advanced, dim),
            "level_since": size,
            "dose_since": size,
        }
    )
    evidence = tuple(dict.fromkeys(ref for a in streak for ref in a.evidence))
    return updated, Decision(
        activity=activity.id,
        pattern=pattern.code,
        kind="advance",
        dimension=dim,
        from_value=old,
        to_value=old + 1,
        reason=reason,
        evidence=evidence,
    )


def _load_step(
    activity: ActivityState, pattern: MovementPattern, rules: ProgressionRules
) -> tuple[ActivityState, Decision | None]:
    rule = rules.load
    if not rule.enabled:
        return activity, None
    records = activity.log[max(activity.level_since, activity.dose_since) :]
    k = rule.consecutive_sessions
    if len(records) < k:
        return activity, None
    tail = records[-k:]
    for r in tail:
        target = r.target_reps or r.prescribed_reps
        if r.load_kg <= 0 or not r.reps or r.reps[-1] < target + rule.reps_over_target:
            return activity, None
        if pain_zone(r.pain_after, rules) != "safe" or r.flare:
            return activity, None
    pct = rule.increase_pct if rule.increase_pct is not None else pattern.dosing.load_progression_pct
    base = tail[-1].load_kg
    new = max(
        _round_load(base * (1 + pct / 100), rule.increment_kg),
        _round_load(base + rule.increment_kg, rule.increment_kg),
    )
    reason = (
        f"{label(activity, pattern)}: last set beat the target by >= {rule.reps_over_target} reps in {k} "
        f"consecutive sessions (2-for-2) - load {base:g} kg -> {new:g} kg (+{pct:g} %, rounded to "
        f"{rule.increment_kg:g} kg)"
    )
    updated = activity.model_copy(
        update={"dose": activity.dose.model_copy(update={"load_kg": new}), "dose_since": len(activity.log)}
    )
    evidence = tuple(dict.fromkeys(ref for r in tail for ref in record_evidence(r)))
    return updated, Decision(
        activity=activity.id,
        pattern=pattern.code,
        kind="dose-change",
        from_value=base,
        to_value=new,
        reason=reason,
        evidence=evidence,
    )


def evaluate(
    activity: ActivityState,
    pattern: MovementPattern,
    rules: ProgressionRules,
    *,
    index: int,
    trigger: Trigger,
    at: datetime,
) -> tuple[ActivityState, list[Decision]]:
    """Re-judge one activity after the record at ``index`` changed (logged, 24-h response, metric)."""
    record = activity.log[index]
    decisions: list[Decision] = []
    zone = _symptom_zone(record, trigger, rules)
    if zone != "safe":
        activity, decision = _on_symptoms(activity, pattern, rules, index, zone, trigger)
        decisions.append(decision)
    else:
        activity, decisions = _stage_changes(
            activity, pattern, rules, record if trigger == "session" else None
        )
        activity, advanced = _advance(activity, pattern, rules)
        if advanced is not None:
            decisions.append(advanced)
        elif trigger == "session":
            activity, dosed = _load_step(activity, pattern, rules)
            if dosed is not None:
                decisions.append(dosed)
    if decisions:
        note = ChangeNote(
            at=at,
            reason="; ".join(d.reason for d in decisions),
            evidence=tuple(dict.fromkeys(ref for d in decisions for ref in d.evidence)),
        )
        activity = activity.model_copy(update={"last_change": note})
    return activity, decisions


def _version(
    plan: PlanState,
    decisions: list[Decision],
    *,
    at: datetime,
    trigger: str,
    ignored: list[str],
    original: PlanState,
) -> Outcome:
    if not decisions:
        return Outcome(plan, (), tuple(ignored), changed=False)
    kind: ChangeKind = "symptoms" if any(d.kind in ("hold", "regress") for d in decisions) else "progressed"
    plan = plan.recorded(
        at=at,
        kind=kind,
        reason="; ".join(d.reason for d in decisions),
        evidence=[ref for d in decisions for ref in d.evidence],
        trigger=trigger,
        decisions=decisions,
    )
    return Outcome(plan, tuple(decisions), tuple(ignored), changed=plan.version != original.version)


def _fallback_time(plan: PlanState) -> datetime:
    return plan.history[-1].at if plan.history else plan.created


def _has_check(pattern: MovementPattern, kind: str) -> bool:
    return any(c.kind == kind for c in pattern.mastery.checks())


def _belongs(
    metric: MetricEvidence, record: SessionRecord, pattern: MovementPattern, listed: set[str]
) -> bool:
    """A metric is evidence for a record when its stream was used for that exercise, or when it comes from
    the same session on a stream no exercise claimed and the pattern has a criterion on that metric."""
    if metric.stream and metric.stream in record.streams:
        return True
    return (
        metric.session == record.session
        and not (metric.stream and metric.stream in listed)
        and _has_check(pattern, metric.kind)
    )


def _with_metric(record: SessionRecord, metric: MetricEvidence) -> SessionRecord | None:
    """The record holding ``metric`` (a replayed window replaces its earlier value), or None if unchanged."""
    kept = [m for m in record.metrics if m.key != metric.key]
    if len(kept) != len(record.metrics) and metric in record.metrics:
        return None
    return record.model_copy(update={"metrics": (*kept, metric)})


def apply_session(
    plan: PlanState,
    session: SessionLogged,
    *,
    catalogue: Catalogue,
    rules: ProgressionRules = DEFAULT_RULES,
) -> Outcome:
    """Count a ``session.logged.v1`` against each activity it names, then judge those activities."""
    if plan.status != "active":
        return Outcome(plan, ignored=(f"plan {plan.id} is {plan.status}, not active",))
    if session.patient != plan.patient or (session.care_plan and session.care_plan != plan.reference):
        return Outcome(plan, ignored=(f"session {session.session} is for another plan or patient",))
    at = session.end or session.start or _fallback_time(plan)
    decisions: list[Decision] = []
    ignored: list[str] = []
    current = plan
    pending = list(plan.pending_metrics)
    listed = {s for ex in session.exercises for s in ex.device_streams}
    for exercise in session.exercises:
        activity = current.find_activity(exercise.activity)
        if activity is None:
            ignored.append(f"activity {exercise.activity} is not in plan {plan.id}")
            continue
        if activity.status != "active":
            ignored.append(f"activity {activity.id} is {activity.status}")
            continue
        if exercise.pattern and exercise.pattern != activity.pattern:
            ignored.append(
                f"activity {activity.id} is {activity.pattern}, the session says {exercise.pattern}"
            )
            continue
        if activity.record_for(session.session) is not None:
            ignored.append(f"session {session.session} is already counted for activity {activity.id}")
            continue
        pattern = catalogue.find(activity.pattern)
        if pattern is None:
            ignored.append(f"pattern {activity.pattern} is not in catalogue {catalogue.version}")
            continue
        record = record_from_exercise(session, exercise, activity)
        mine = [m for m in pending if _belongs(m, record, pattern, listed)]
        if mine:
            record = record.model_copy(update={"metrics": tuple(mine)})
            pending = [m for m in pending if m not in mine]
        activity = activity.model_copy(update={"log": (*activity.log, record)})
        activity, made = evaluate(
            activity,
            pattern,
            activity_rules(current, pattern, rules),
            index=len(activity.log) - 1,
            trigger="session",
            at=record.at or at,
        )
        decisions.extend(made)
        current = current.with_activities([activity])
    current = current.model_copy(update={"pending_metrics": tuple(pending)})
    return _version(current, decisions, at=at, trigger=session.session, ignored=ignored, original=plan)


def apply_symptoms(
    plan: PlanState,
    symptoms: SymptomsRecorded,
    *,
    catalogue: Catalogue,
    rules: ProgressionRules = DEFAULT_RULES,
) -> Outcome:
    """Record a ``session.symptoms-recorded.v1`` (24-hour response); judge that session's activities."""
    if plan.status != "active":
        return Outcome(plan, ignored=(f"plan {plan.id} is {plan.status}, not active",))
    if symptoms.patient != plan.patient:
        return Outcome(plan, ignored=(f"symptoms of {symptoms.session} are for another patient",))
    decisions: list[Decision] = []
    ignored: list[str] = []
    current = plan
    found = False
    for activity in plan.activities:
        hit = activity.record_for(symptoms.session)
        if hit is None:
            continue
        found = True
        index, record = hit
        if record.pain_24h == symptoms.pain24h and record.flare == symptoms.flare:
            ignored.append(
                f"24-hour response of {symptoms.session} already recorded for activity {activity.id}"
            )
            continue
        pattern = catalogue.find(activity.pattern)
        if pattern is None:
            ignored.append(f"pattern {activity.pattern} is not in catalogue {catalogue.version}")
            continue
        updated = _replace_record(
            activity,
            index,
            record.model_copy(
                update={
                    "pain_24h": symptoms.pain24h,
                    "flare": symptoms.flare,
                    "symptoms_at": symptoms.recorded_at,
                }
            ),
        )
        if activity.status == "active":
            updated, made = evaluate(
                updated,
                pattern,
                activity_rules(current, pattern, rules),
                index=index,
                trigger="symptoms",
                at=symptoms.recorded_at,
            )
            decisions.extend(made)
        current = current.with_activities([updated])
    if not found:
        ignored.append(f"no activity of plan {plan.id} has session {symptoms.session}")
    return _version(
        current, decisions, at=symptoms.recorded_at, trigger=symptoms.session, ignored=ignored, original=plan
    )


def apply_metric(
    plan: PlanState,
    metric: DeviceMetricComputed,
    *,
    catalogue: Catalogue,
    rules: ProgressionRules = DEFAULT_RULES,
    observation: str | None = None,
) -> Outcome:
    """Attach a ``device.metric-computed.v1`` to the session records it is evidence for and re-judge them.

    ``observation`` is the Observation that stores the metric (the evaluation service derives its id from
    patient, device, metric and window); it becomes the evidence reference. A metric for a session not yet
    logged waits in ``plan.pending_metrics`` until the session arrives.
    """
    if metric.patient != plan.patient:
        return Outcome(plan, ignored=(f"metric for patient {metric.patient}, plan is {plan.patient}",))
    evidence = metric_from_event(metric, catalogue.vocabulary, observation)
    if evidence is None:
        return Outcome(
            plan, ignored=(f"metric '{metric.metric}' is not a mastery criterion of the catalogue",)
        )
    decisions: list[Decision] = []
    ignored: list[str] = []
    current = plan
    attached = False
    listed = {s for a in plan.activities for r in a.log if r.session == evidence.session for s in r.streams}
    for activity in plan.activities:
        pattern = catalogue.find(activity.pattern)
        if pattern is None:
            continue
        for index in range(len(activity.log)):
            record = current.activity(activity.id).log[index]
            if not _belongs(evidence, record, pattern, listed):
                continue
            attached = True
            changed = _with_metric(record, evidence)
            if changed is None:
                ignored.append(f"metric window already held for activity {activity.id}")
                continue
            updated = _replace_record(current.activity(activity.id), index, changed)
            if plan.status == "active" and updated.status == "active":
                updated, made = evaluate(
                    updated,
                    pattern,
                    activity_rules(current, pattern, rules),
                    index=index,
                    trigger="metric",
                    at=metric.window.end,
                )
                decisions.extend(made)
            current = current.with_activities([updated])
    if not attached:
        if evidence.session is None:
            return Outcome(plan, ignored=(f"metric '{metric.metric}' names no session and no logged stream",))
        kept = [m for m in plan.pending_metrics if m.key != evidence.key]
        if evidence in plan.pending_metrics:
            return Outcome(plan, ignored=("metric window already waiting for its session",))
        current = plan.model_copy(update={"pending_metrics": (*kept, evidence)})
        return Outcome(
            current, ignored=(f"session {evidence.session} not logged yet: metric kept until it is",)
        )
    trigger = evidence.observation or evidence.session or metric.device
    return _version(current, decisions, at=metric.window.end, trigger=trigger, ignored=ignored, original=plan)
