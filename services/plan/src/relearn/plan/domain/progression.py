"""The progression engine: sessions, symptoms, device metrics and stream completions in; decisions out.

Pure and deterministic: each function takes the plan and one event and returns an :class:`Outcome` - the new
:class:`~.state.PlanState` and the decisions taken. Persist ``outcome.plan`` every time (it holds
the session log and counters); when ``outcome.changed`` write a new CarePlan version and publish the events of
``outcome.decisions`` (:mod:`relearn.plan.events`).

Per activity and event, in this order (docs/progression-rules.md says the same for therapists):
1. symptoms - pain judged against the absolute zones and the patient's own baseline: acceptable pain holds;
   high-risk pain, a flare or 24-hour pain not back to baseline undoes what was last changed (a level or the
   load, once per session) and drops the stage to conscious competence at most. The same advance undone N
   times asks the therapist (a Task) and is not tried again until the therapist says so;
2. competence stage moves up when its evidence is there (:func:`relearn.plan.domain.stages.next_stage`);
3. a late metric that contradicts the last advance made on its session undoes that advance (a correction);
4. mastery - N consecutive sessions with every criterion measured and met (or waived) - advances exactly one
   dimension whose next step's requirements are met; missing evidence holds and says what it waits for;
   for a patient at fall risk a load-bearing or proprioception advance becomes a Task for the therapist;
5. otherwise the 2-for-2 load rule may raise the load by at most ``load.maxIncreasePct``.

Idempotent by construction: a session already in an activity's log, a symptom response equal to the one
recorded, a metric window already held or a stream already complete changes nothing; a hold repeated for the
same reason writes no new version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import fmean
from typing import Literal

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.evidence import (
    attempt,
    baseline_pain,
    metric_from_event,
    record_evidence,
    record_from_exercise,
)
from relearn.plan.domain.ids import stable_id
from relearn.plan.domain.inputs import (
    DeviceMetricComputed,
    SessionLogged,
    StreamMetricsCompleted,
    SymptomsRecorded,
)
from relearn.plan.domain.patterns import (
    DEFAULT_DIMENSION_ORDER,
    DIMENSION_DISPLAY,
    Dimension,
    MovementPattern,
)
from relearn.plan.domain.rules import (
    DEFAULT_RULES,
    ProgressionRules,
    pain_zone,
    resolve_rules,
    settled_by_next_day,
)
from relearn.plan.domain.stages import Attempt, CompetenceStage, mastery_streak, next_stage
from relearn.plan.domain.state import (
    ActivityState,
    ChangeKind,
    ChangeNote,
    ChangeRef,
    CriterionResult,
    Decision,
    MetricEvidence,
    PlanState,
    ProposedStep,
    Screening,
    SessionRecord,
    TaskState,
    Waiver,
)

Trigger = Literal["session", "symptoms", "metric", "evidence"]
_KEPT_COMPLETED_STREAMS = 200  # completions waiting for their session: enough for a clinic day, bounded


@dataclass(frozen=True)
class Outcome:
    """The plan after one event or edit, what changed on it, and what was ignored and why."""

    plan: PlanState
    decisions: tuple[Decision, ...] = ()
    ignored: tuple[str, ...] = ()
    changed: bool = False  # a new plan version: write the CarePlan and publish events


@dataclass
class Context:
    """What judging one activity needs from its plan, and the Tasks it raises for the therapist."""

    plan_id: str
    waivers: tuple[Waiver, ...] = ()
    screening: Screening | None = None
    tasks: tuple[TaskState, ...] = ()
    raised: list[TaskState] = field(default_factory=list)

    @classmethod
    def of(cls, plan: PlanState) -> Context:
        return cls(plan.id, plan.waivers, plan.screening, plan.tasks)

    def open_task(self, activity: str, kind: str, proposed: ProposedStep | None) -> TaskState | None:
        for t in (*self.tasks, *self.raised):
            if (
                t.activity == activity
                and t.kind == kind
                and t.status == "requested"
                and t.proposed == proposed
            ):
                return t
        return None

    def raise_task(self, task: TaskState) -> TaskState:
        existing = self.open_task(task.activity, task.kind, task.proposed)
        if existing is not None:
            return existing
        self.raised.append(task)
        return task


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


def _failed_key(dimension: Dimension, level: int) -> str:
    return f"{dimension.value}:{level}"


def choose_dimension(
    activity: ActivityState, pattern: MovementPattern, rules: ProgressionRules
) -> tuple[Dimension | None, tuple[str, ...]]:
    """The one dimension to advance next, and why the dimensions before it in the order were passed over.

    A dimension is passed over when its next step's requirements are not met yet (a step that puts weight on
    a limb waits for the load-bearing ladder) or when that same advance already failed
    ``symptoms.failedAdvancesBeforeReview`` times (the therapist decides, through the Task raised then).
    """
    order = rules.advance.dimension_order or DEFAULT_DIMENSION_ORDER
    open_dims = [d for d in order if activity.levels.get(d, 0) < pattern.top_level(d)]
    if not open_dims:
        return None, ()
    candidates = open_dims
    if rules.advance.strategy == "round-robin" and activity.last_advanced in order:
        start = order.index(activity.last_advanced) + 1
        rotated = (*order[start:], *order[:start])
        candidates = [d for d in rotated if d in open_dims]
    passed: list[str] = []
    for d in candidates:
        nxt = activity.levels.get(d, 0) + 1
        unmet = pattern.unmet_requirements(d, nxt, activity.levels)
        if unmet:
            passed.append(f"{DIMENSION_DISPLAY[d].lower()} {nxt}: {'; '.join(unmet)}")
            continue
        failures = activity.failed_advances.get(_failed_key(d, nxt), 0)
        if failures >= rules.symptoms.failed_advances_before_review:
            passed.append(
                f"{DIMENSION_DISPLAY[d].lower()} {nxt}: undone by symptoms {failures} times, "
                "waiting for the therapist's review"
            )
            continue
        return d, tuple(passed)
    return None, tuple(passed)


def _replace_record(activity: ActivityState, index: int, record: SessionRecord) -> ActivityState:
    log = list(activity.log)
    log[index] = record
    return activity.model_copy(update={"log": tuple(log)})


def _attempts(
    activity: ActivityState, pattern: MovementPattern, rules: ProgressionRules, ctx: Context, start: int
) -> list[Attempt]:
    return [
        attempt(r, pattern, rules, ctx.waivers, baseline_pain(activity, i), activity.muscles)
        for i, r in enumerate(activity.log)
        if i >= start
    ]


def _criteria(attempts: tuple[Attempt, ...] | list[Attempt]) -> tuple[CriterionResult, ...]:
    return tuple(c.model_copy(update={"session": a.session}) for a in attempts for c in a.criteria)


def _hold(
    activity: ActivityState,
    pattern: MovementPattern,
    key: str,
    reason: str,
    evidence: tuple[str, ...],
    criteria: tuple[CriterionResult, ...] = (),
    task: str | None = None,
) -> tuple[ActivityState, Decision | None]:
    """A hold, said once: the same hold again (same key) writes nothing new."""
    if activity.hold == key:
        return activity, None
    decision = Decision(
        activity=activity.id,
        pattern=pattern.code,
        kind="hold",
        reason=reason,
        evidence=evidence,
        criteria=criteria,
        task=task,
    )
    return activity.model_copy(update={"hold": key}), decision


def _symptom_zone(activity: ActivityState, index: int, trigger: Trigger, rules: ProgressionRules) -> str:
    record = activity.log[index]
    baseline = baseline_pain(activity, index)
    if trigger == "session":
        return pain_zone(record.pain_after, rules, baseline)
    if trigger == "symptoms":
        if record.flare:
            return "flare"
        if record.pain_24h is not None and not settled_by_next_day(record.pain_24h, rules, baseline):
            return "not-settled"
        return pain_zone(record.pain_24h or 0, rules, baseline)
    return "safe"


def _stage_drop(
    activity: ActivityState, pattern: MovementPattern, why: str, evidence: tuple[str, ...]
) -> tuple[ActivityState, Decision | None]:
    """A stage belongs to the level it was earned at: down to conscious competence at most."""
    cap = CompetenceStage.CONSCIOUS_COMPETENCE
    if activity.stage.rank <= cap.rank:
        return activity, None
    decision = Decision(
        activity=activity.id,
        pattern=pattern.code,
        kind="stage-change",
        from_value=activity.stage.value,
        to_value=cap.value,
        reason=f"{label(activity, pattern)}: {activity.stage.display.lower()} -> {cap.display.lower()}: "
        f"{why}",
        evidence=evidence,
    )
    return activity.model_copy(update={"stage": cap, "stage_since": len(activity.log)}), decision


def stage_reentry(
    activity: ActivityState, pattern: MovementPattern, dim: Dimension, level: int, evidence: tuple[str, ...]
) -> tuple[ActivityState, Decision | None]:
    """After an advance to ``level`` of ``dim``: the stage re-enters at conscious competence (at most)."""
    return _stage_drop(
        activity,
        pattern,
        f"a stage belongs to the level it was earned at; the new level "
        f"'{pattern.step(dim, level).description}' re-enters at conscious competence",
        evidence,
    )


def _last_change(activity: ActivityState) -> ChangeRef | None:
    if activity.changes:
        return activity.changes[-1]
    dim = activity.last_advanced  # plans written before changes were recorded
    if dim is None:
        return None
    level = activity.levels.get(dim, 0)
    return ChangeRef(kind="advance", dimension=dim, from_value=level - 1, to_value=level)


def _undo(
    activity: ActivityState,
    pattern: MovementPattern,
    change: ChangeRef,
    reason: str,
    evidence: tuple[str, ...],
    criteria: tuple[CriterionResult, ...] = (),
) -> tuple[ActivityState, Decision]:
    """``activity`` with ``change`` undone (a level back, or the load back), and the decision saying so."""
    n = len(activity.log)
    changes = tuple(c for c in activity.changes if c != change)
    if change.kind == "load":
        old, new = change.to_value, change.from_value
        updated = activity.model_copy(
            update={
                "dose": activity.dose.model_copy(update={"load_kg": new}),
                "dose_since": n,
                "changes": changes,
                "hold": None,
            }
        )
        return updated, Decision(
            activity=activity.id,
            pattern=pattern.code,
            kind="dose-change",
            from_value=old,
            to_value=new,
            reason=f"{reason}, load {old:g} kg -> {new:g} kg",
            evidence=evidence,
            criteria=criteria,
        )
    dim = change.dimension
    assert dim is not None  # an advance always names its dimension
    old_level = activity.levels[dim]
    new_level = int(change.from_value)
    advanced = list(activity.advanced)
    if dim in advanced:
        del advanced[len(advanced) - 1 - advanced[::-1].index(dim)]
    updated = activity.model_copy(
        update={
            "levels": {**activity.levels, dim: new_level},
            "advanced": tuple(advanced),
            "changes": changes,
            "level_since": n,
            "dose_since": n,
            "hold": None,
        }
    )
    return updated, Decision(
        activity=activity.id,
        pattern=pattern.code,
        kind="regress",
        dimension=dim,
        from_value=old_level,
        to_value=new_level,
        reason=f"{reason}, {DIMENSION_DISPLAY[dim].lower()} {old_level} -> {new_level} "
        f"('{pattern.step(dim, new_level).description}')",
        evidence=evidence,
        criteria=criteria,
    )


def _on_symptoms(
    activity: ActivityState,
    pattern: MovementPattern,
    rules: ProgressionRules,
    ctx: Context,
    index: int,
    zone: str,
    trigger: Trigger,
    at: datetime,
) -> tuple[ActivityState, list[Decision]]:
    record = activity.log[index]
    name = label(activity, pattern)
    evidence = record_evidence(record)
    baseline = baseline_pain(activity, index)
    base_text = f", baseline {baseline}/10" if baseline is not None else ""
    if trigger == "session":
        what = f"pain {record.pain_after}/10 after the session{base_text}"
    elif zone == "flare":
        what = f"a flare not settled by the next day (pain {record.pain_24h}/10 at 24 h)"
    elif zone == "not-settled":
        what = f"pain {record.pain_24h}/10 24 h after the session has not settled back to the baseline"
        what += f" {baseline}/10"
    else:
        what = f"pain {record.pain_24h}/10 24 h after the session{base_text}"
    if zone == "acceptable":
        reason = (
            f"{name}: {what} is acceptable but not safe - holding at the current level; the mastery count "
            "starts again"
        )
        activity, hold = _hold(activity, pattern, "symptoms-acceptable", reason, evidence)
        return activity, [hold.model_copy(update={"cause": "symptoms"})] if hold else []
    action = (
        rules.symptoms.flare_action
        if zone in ("flare", "not-settled")
        else rules.symptoms.unacceptable_action
    )
    change = _last_change(activity)
    decisions: list[Decision] = []
    if action == "hold" or change is None or record.regressed:
        if action == "hold":
            why = "the rules say hold"
        elif record.regressed:
            why = "this session already caused a regression"
        else:
            why = "already at the simplest form and the starting load"
        activity, hold = _hold(
            activity,
            pattern,
            f"symptoms-{why}",
            f"{name}: {what} - holding ({why}); therapist review advised",
            evidence,
        )
        decisions.extend([hold] if hold else [])
    else:
        what_changed = "the last advance" if change.kind == "advance" else "the last load increase"
        activity = _replace_record(activity, index, record.model_copy(update={"regressed": True}))
        activity, undone = _undo(
            activity,
            pattern,
            change,
            f"{name}: {what} - undoing what was last changed ({what_changed})",
            evidence,
        )
        decisions.append(undone)
        if change.kind == "advance" and change.dimension is not None:
            key = _failed_key(change.dimension, int(change.to_value))
            count = activity.failed_advances.get(key, 0) + 1
            activity = activity.model_copy(
                update={"failed_advances": {**activity.failed_advances, key: count}}
            )
            if count >= rules.symptoms.failed_advances_before_review:
                step = ProposedStep(
                    dimension=change.dimension,
                    from_level=int(change.from_value),
                    to_level=int(change.to_value),
                )
                task = ctx.raise_task(
                    TaskState(
                        id=stable_id("Task", f"{ctx.plan_id}|{activity.id}|review|{key}|{count}"),
                        activity=activity.id,
                        pattern=pattern.code,
                        kind="review-failed-advance",
                        reason=f"{name}: the advance of {DIMENSION_DISPLAY[change.dimension].lower()} "
                        f"{int(change.from_value)} -> {int(change.to_value)} was undone by symptoms "
                        f"{count} times; "
                        "it will not be tried again until you review it (approve to allow another try)",
                        proposed=step,
                        evidence=evidence,
                        created=at,
                    )
                )
                decisions.append(
                    Decision(
                        activity=activity.id,
                        pattern=pattern.code,
                        kind="task",
                        reason=task.reason,
                        evidence=evidence,
                        task=f"Task/{task.id}",
                    )
                )
    activity, dropped = _stage_drop(activity, pattern, f"symptomatic ({what})", evidence)
    decisions.extend([dropped] if dropped else [])
    return activity, [d.model_copy(update={"cause": "symptoms"}) for d in decisions]


def _stage_changes(
    activity: ActivityState,
    pattern: MovementPattern,
    rules: ProgressionRules,
    ctx: Context,
    latest: SessionRecord | None,
) -> tuple[ActivityState, list[Decision]]:
    decisions: list[Decision] = []
    name = label(activity, pattern)
    for _ in range(len(CompetenceStage)):
        at_level = _attempts(activity, pattern, rules, ctx, activity.level_since)
        since = _attempts(activity, pattern, rules, ctx, activity.stage_since)
        before = None
        if activity.stage_since:
            k = activity.stage_since - 1
            before = attempt(
                activity.log[k], pattern, rules, ctx.waivers, baseline_pain(activity, k), activity.muscles
            )
        latest_attempt = None
        if latest is not None:
            idx = activity.log.index(latest)
            latest_attempt = attempt(
                latest, pattern, rules, ctx.waivers, baseline_pain(activity, idx), activity.muscles
            )
        change = next_stage(
            activity.stage,
            latest=latest_attempt,
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
        mastered = activity.mastered or change.to is CompetenceStage.UNCONSCIOUS_COMPETENCE
        activity = activity.model_copy(
            update={"stage": change.to, "stage_since": len(activity.log), "mastered": mastered}
        )
    return activity, decisions


def at_fall_risk(screening: Screening | None, rules: ProgressionRules) -> str | None:
    """Why the patient is at fall risk by the last evaluation's screening, or None."""
    if screening is None:
        return None
    why = []
    if screening.tug_s is not None and screening.tug_s > rules.safety.fall_risk_tug_s:
        why.append(f"TUG {screening.tug_s:g} s > {rules.safety.fall_risk_tug_s:g} s")
    if screening.berg is not None and screening.berg < rules.safety.fall_risk_berg_below:
        why.append(f"Berg {screening.berg:g} < {rules.safety.fall_risk_berg_below:g}")
    return " and ".join(why) or None


def _waiting_for_evidence(
    activity: ActivityState, pattern: MovementPattern, rules: ProgressionRules, at_level: list[Attempt]
) -> tuple[ActivityState, Decision | None]:
    """N sessions that would qualify but for missing evidence: hold and say what is missing (once)."""
    n = rules.mastery.consecutive_sessions
    rated = [a for a in at_level if a.rated]
    tail = rated[-n:]
    if len(tail) < n or not all(a.qualifies_but_for_evidence for a in tail):
        return activity, None
    if any(c.status == "pending" for a in tail for c in a.criteria):
        return activity, None  # the session's streams may still deliver it: wait without a word
    missing = list(dict.fromkeys(c.label for a in tail for c in a.criteria if c.status == "missing"))
    if not missing:
        return activity, None
    reason = (
        f"{label(activity, pattern)}: {n} sessions within target, but the advance waits for evidence: "
        f"{', '.join(missing)} (not measured in every one of them; measure it, or a therapist may waive it "
        "for this plan with a reason)"
    )
    evidence = tuple(dict.fromkeys(ref for a in tail for ref in a.evidence))
    return _hold(activity, pattern, "evidence:" + "|".join(missing), reason, evidence, _criteria(tail))


def _advance(
    activity: ActivityState, pattern: MovementPattern, rules: ProgressionRules, ctx: Context, at: datetime
) -> tuple[ActivityState, list[Decision]]:
    at_level = _attempts(activity, pattern, rules, ctx, activity.level_since)
    n = rules.mastery.consecutive_sessions
    streak = mastery_streak(at_level, n)
    if streak is None:
        activity, waiting = _waiting_for_evidence(activity, pattern, rules, at_level)
        return activity, [waiting] if waiting else []
    name = label(activity, pattern)
    evidence = tuple(dict.fromkeys(ref for a in streak for ref in a.evidence))
    criteria = _criteria(streak)
    dim, passed = choose_dimension(activity, pattern, rules)
    if dim is None:
        if not passed:
            return activity, []  # at the top of every ladder the rules allow
        reason = f"{name}: mastered, but no dimension can advance now - " + "; ".join(passed)
        activity, hold = _hold(activity, pattern, "blocked:" + "|".join(passed), reason, evidence, criteria)
        return activity, [hold] if hold else []
    old = activity.levels.get(dim, 0)
    step = ProposedStep(dimension=dim, from_level=old, to_level=old + 1)
    risk = at_fall_risk(ctx.screening, rules) if dim in rules.safety.approve_dimensions else None
    if risk is not None:
        approved = next(
            (
                t
                for t in ctx.tasks
                if t.activity == activity.id
                and t.kind == "approve-advance"
                and t.status == "completed"
                and t.proposed == step
            ),
            None,
        )
        declined = next(
            (
                t
                for t in ctx.tasks
                if t.activity == activity.id
                and t.kind == "approve-advance"
                and t.status == "rejected"
                and t.proposed == step
            ),
            None,
        )
        if approved is None and declined is not None:
            reason = (
                f"{name}: mastered, but the therapist declined the advance of "
                f"{DIMENSION_DISPLAY[dim].lower()} "
                f"{old} -> {old + 1} (Task/{declined.id}: {declined.resolution}); holding"
            )
            activity, hold = _hold(
                activity,
                pattern,
                f"declined:{declined.id}",
                reason,
                evidence,
                criteria,
                f"Task/{declined.id}",
            )
            return activity, [hold] if hold else []
        if approved is None:
            task = ctx.raise_task(
                TaskState(
                    id=stable_id("Task", f"{ctx.plan_id}|{activity.id}|approve|{dim.value}:{old + 1}"),
                    activity=activity.id,
                    pattern=pattern.code,
                    kind="approve-advance",
                    reason=f"{name}: mastered; proposed advance of {DIMENSION_DISPLAY[dim].lower()} {old} -> "
                    f"{old + 1} ('{pattern.step(dim, old + 1).description}') needs your approval: the "
                    "patient is "
                    f"at fall risk ({risk})",
                    proposed=step,
                    evidence=evidence,
                    created=at,
                )
            )
            activity, hold = _hold(
                activity, pattern, f"approval:{task.id}", task.reason, evidence, criteria, f"Task/{task.id}"
            )
            return activity, [hold] if hold else []
    reason = (
        f"{name}: mastered - {n} consecutive sessions with every criterion met "
        f"({'; '.join(_criteria_summary(streak[-1]))}), pain in the safe zone, no 24-hour flare - advancing "
        f"{DIMENSION_DISPLAY[dim].lower()} {old} -> {old + 1} ('{pattern.step(dim, old + 1).description}')"
    )
    if passed:
        reason += f"; passed over: {'; '.join(passed)}"
    size = len(activity.log)
    change = ChangeRef(
        kind="advance",
        dimension=dim,
        from_value=old,
        to_value=old + 1,
        sessions=tuple(a.session for a in streak),
    )
    updated = activity.model_copy(
        update={
            "levels": {**activity.levels, dim: old + 1},
            "advanced": (*activity.advanced, dim),
            "changes": (*activity.changes, change),
            "level_since": size,
            "dose_since": size,
            "hold": None,
        }
    )
    decisions = [
        Decision(
            activity=activity.id,
            pattern=pattern.code,
            kind="advance",
            dimension=dim,
            from_value=old,
            to_value=old + 1,
            reason=reason,
            evidence=evidence,
            criteria=criteria,
        )
    ]
    if rules.stages.on_advance == "conscious-competence":
        updated, dropped = stage_reentry(updated, pattern, dim, old + 1, evidence)
        decisions.extend([dropped] if dropped else [])
    return updated, decisions


def _criteria_summary(a: Attempt) -> list[str]:
    out = []
    for c in a.criteria:
        if c.criterion in ("sets", "reps", "assistance", "level"):
            continue
        value = f"{c.value}{' ' + c.unit if c.unit and isinstance(c.value, float | int) else ''}"
        out.append(f"{c.label} {value if c.value is not None else c.status} ({c.status})")
    return out


def _round_down(value: float, increment: float) -> float:
    return round(int(value / increment + 1e-9) * increment, 3)


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
    if len({r.load_kg for r in tail}) != 1:
        return activity, None  # 2-for-2 counts sessions at the same load
    for r in tail:
        target = r.target_reps or r.prescribed_reps
        if r.load_kg <= 0 or not r.reps or r.reps[-1] < target + rule.reps_over_target:
            return activity, None
        if pain_zone(r.pain_after, rules, r.pain_before) != "safe" or r.flare:
            return activity, None
    pct = rule.increase_pct if rule.increase_pct is not None else pattern.dosing.load_progression_pct
    pct = min(pct, rule.max_increase_pct)
    base = tail[-1].load_kg
    new = _round_down(base * (1 + pct / 100), rule.increment_kg)
    if new <= base and 100 * rule.increment_kg / base <= rule.max_increase_pct + 1e-9:
        # The pattern's step rounds to nothing, but the smallest increment is within the cap: take it.
        new = round(base + rule.increment_kg, 3)
    evidence = tuple(dict.fromkeys(ref for r in tail for ref in record_evidence(r)))
    name = label(activity, pattern)
    if new <= base:
        smallest = base + rule.increment_kg
        reason = (
            f"{name}: last set beat the target by >= {rule.reps_over_target} reps in {k} consecutive "
            "sessions "
            f"(2-for-2), but the smallest load step {base:g} kg -> {smallest:g} kg would be "
            f"+{100 * rule.increment_kg / base:.0f} % (at most {rule.max_increase_pct:g} %) - the load stays "
            f"{base:g} kg; progress another dimension instead (more repetitions, or a slower tempo)"
        )
        held, hold = _hold(activity, pattern, f"load-step:{base:g}", reason, evidence)
        return held, hold
    true_pct = 100 * (new - base) / base
    reason = (
        f"{name}: last set beat the target by >= {rule.reps_over_target} reps in {k} consecutive sessions "
        f"(2-for-2) - load {base:g} kg -> {new:g} kg (+{true_pct:.1f} %; rule {pct:g} %, at most "
        f"{rule.max_increase_pct:g} %, in steps of {rule.increment_kg:g} kg)"
    )
    change = ChangeRef(kind="load", from_value=base, to_value=new, sessions=tuple(r.session for r in tail))
    updated = activity.model_copy(
        update={
            "dose": activity.dose.model_copy(update={"load_kg": new}),
            "dose_since": len(activity.log),
            "changes": (*activity.changes, change),
            "hold": None,
        }
    )
    return updated, Decision(
        activity=activity.id,
        pattern=pattern.code,
        kind="dose-change",
        from_value=base,
        to_value=new,
        reason=reason,
        evidence=evidence,
    )


def _weekly_rise(activity: ActivityState, index: int, rules: ProgressionRules) -> str | None:
    """Pain before sessions rising week on week (Silbernagel): the mean of the last 7 days against the 7
    before."""
    t = activity.log[index].at
    if t is None:
        return None
    week, earlier = [], []
    for r in activity.log[: index + 1]:
        if r.at is None or r.pain_before is None:
            continue
        age = t - r.at
        if timedelta(0) <= age < timedelta(days=7):
            week.append(r.pain_before)
        elif timedelta(days=7) <= age < timedelta(days=14):
            earlier.append(r.pain_before)
    if not week or not earlier:
        return None
    rise = fmean(week) - fmean(earlier)
    if rise <= rules.symptoms.weekly_rise_max:
        return None
    return (
        f"pain before sessions rose from {fmean(earlier):.1f}/10 to {fmean(week):.1f}/10 week on week "
        f"(more than {rules.symptoms.weekly_rise_max:g})"
    )


def _correction(
    activity: ActivityState, pattern: MovementPattern, rules: ProgressionRules, ctx: Context, index: int
) -> tuple[ActivityState, Decision | None]:
    """A metric that arrived late and contradicts the last advance made on its session undoes that advance."""
    record = activity.log[index]
    change = activity.changes[-1] if activity.changes else None
    if change is None or change.kind != "advance" or record.session not in change.sessions:
        return activity, None
    if change.dimension is None or activity.levels.get(change.dimension) != int(change.to_value):
        return activity, None
    judged = attempt(record, pattern, rules, ctx.waivers, baseline_pain(activity, index), activity.muscles)
    failed = [
        c for c in judged.criteria if c.status == "fail" and c.criterion not in ("sets", "reps", "quality")
    ]
    if not failed:
        return activity, None
    what = "; ".join(
        f"{c.label} {c.value} {c.unit or ''} outside {c.target}".replace("  ", " ") for c in failed
    )
    return _undo(
        activity,
        pattern,
        change,
        f"{label(activity, pattern)}: correction - a metric of {record.session} that arrived after the "
        "advance "
        f"contradicts it ({what})",
        record_evidence(record),
        _criteria([judged]),
    )


def evaluate(
    activity: ActivityState,
    pattern: MovementPattern,
    rules: ProgressionRules,
    *,
    index: int,
    trigger: Trigger,
    at: datetime,
    ctx: Context | None = None,
) -> tuple[ActivityState, list[Decision]]:
    """Re-judge one activity after the record at ``index`` changed (logged, 24-h response, metric,
    evidence)."""
    ctx = ctx or Context(plan_id="")
    record = activity.log[index]
    decisions: list[Decision] = []
    zone = _symptom_zone(activity, index, trigger, rules)
    if zone != "safe":
        activity, decisions = _on_symptoms(activity, pattern, rules, ctx, index, zone, trigger, at)
    else:
        if trigger == "session" and activity.hold == "symptoms-acceptable":
            # A session in the safe zone ends a symptom hold: the next symptoms are news again.
            activity = activity.model_copy(update={"hold": None})
        activity, decisions = _stage_changes(
            activity, pattern, rules, ctx, record if trigger == "session" else None
        )
        corrected = None
        if trigger in ("metric", "evidence"):
            activity, corrected = _correction(activity, pattern, rules, ctx, index)
        rising = _weekly_rise(activity, index, rules) if corrected is None else None
        if rising is None and activity.hold == "weekly-rise":
            activity = activity.model_copy(update={"hold": None})
        if corrected is not None:
            decisions.append(corrected)
        elif rising is not None:
            activity, hold = _hold(
                activity,
                pattern,
                "weekly-rise",
                f"{label(activity, pattern)}: {rising} - holding every advance; therapist review advised",
                record_evidence(record),
            )
            decisions.extend([hold.model_copy(update={"cause": "symptoms"})] if hold else [])
        else:
            activity, advanced = _advance(activity, pattern, rules, ctx, at)
            decisions.extend(advanced)
            if not any(d.kind in ("advance", "hold") for d in advanced) and trigger == "session":
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
    kind = change_kind(decisions)
    plan = plan.recorded(
        at=at,
        kind=kind,
        reason="; ".join(d.reason for d in decisions),
        evidence=[ref for d in decisions for ref in d.evidence],
        trigger=trigger,
        decisions=decisions,
    )
    return Outcome(plan, tuple(decisions), tuple(ignored), changed=plan.version != original.version)


def change_kind(decisions: Sequence[Decision]) -> ChangeKind:
    """What a CarePlan version records: symptoms (pain, a flare), held (waiting for evidence, a therapist's
    answer), or progressed (advances, corrections, stages, doses)."""
    if any(d.cause == "symptoms" for d in decisions):
        return "symptoms"
    if all(d.kind in ("hold", "task") for d in decisions):
        return "held"
    return "progressed"


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


def _finish(
    current: PlanState,
    ctx: Context,
    decisions: list[Decision],
    *,
    at: datetime,
    trigger: str,
    ignored: list[str],
    original: PlanState,
) -> Outcome:
    if ctx.raised:
        current = current.with_tasks(ctx.raised)
    return _version(current, decisions, at=at, trigger=trigger, ignored=ignored, original=original)


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
    ctx = Context.of(plan)
    pending = list(plan.pending_metrics)
    completed = list(plan.completed_streams)
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
        rules_now = activity_rules(current, pattern, rules)
        record = record_from_exercise(session, exercise, activity, rules_now.mastery.evidence_wait_minutes)
        mine = [m for m in pending if _belongs(m, record, pattern, listed)]
        if mine:
            record = record.model_copy(update={"metrics": tuple(mine)})
            pending = [m for m in pending if m not in mine]
        done = tuple(s for s in record.streams if s in completed)
        if done:
            record = record.model_copy(update={"streams_complete": done})
        activity = activity.model_copy(update={"log": (*activity.log, record)})
        activity, made = evaluate(
            activity,
            pattern,
            rules_now,
            index=len(activity.log) - 1,
            trigger="session",
            at=record.at or at,
            ctx=ctx,
        )
        decisions.extend(made)
        current = current.with_activities([activity])
    used = {s for a in current.activities for r in a.log if r.session == session.session for s in r.streams}
    current = current.model_copy(
        update={
            "pending_metrics": tuple(pending),
            "completed_streams": tuple(s for s in completed if s not in used),
        }
    )
    return _finish(current, ctx, decisions, at=at, trigger=session.session, ignored=ignored, original=plan)


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
    ctx = Context.of(plan)
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
            current.activity(activity.id),
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
                ctx=ctx,
            )
            decisions.extend(made)
        current = current.with_activities([updated])
    if not found:
        ignored.append(f"no activity of plan {plan.id} has session {symptoms.session}")
    return _finish(
        current,
        ctx,
        decisions,
        at=symptoms.recorded_at,
        trigger=symptoms.session,
        ignored=ignored,
        original=plan,
    )


def _rejudge(
    plan: PlanState,
    catalogue: Catalogue,
    rules: ProgressionRules,
    ctx: Context,
    change: dict[str, list[tuple[int, SessionRecord]]],
    *,
    trigger: Trigger,
    at: datetime,
) -> tuple[PlanState, list[Decision]]:
    """Put the changed records into their activities and judge each changed record once."""
    current = plan
    decisions: list[Decision] = []
    for activity_id, records in change.items():
        activity = current.activity(activity_id)
        pattern = catalogue.find(activity.pattern)
        if pattern is None:
            continue
        for index, record in records:
            activity = _replace_record(activity, index, record)
        for index, _ in records:
            if plan.status == "active" and activity.status == "active":
                activity, made = evaluate(
                    activity,
                    pattern,
                    activity_rules(current, pattern, rules),
                    index=index,
                    trigger=trigger,
                    at=at,
                    ctx=ctx,
                )
                decisions.extend(made)
        current = current.with_activities([activity])
    return current, decisions


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
    ignored: list[str] = []
    ctx = Context.of(plan)
    attached = False
    change: dict[str, list[tuple[int, SessionRecord]]] = {}
    listed = {s for a in plan.activities for r in a.log if r.session == evidence.session for s in r.streams}
    for activity in plan.activities:
        pattern = catalogue.find(activity.pattern)
        if pattern is None:
            continue
        for index, record in enumerate(activity.log):
            if not _belongs(evidence, record, pattern, listed):
                continue
            attached = True
            changed = _with_metric(record, evidence)
            if changed is None:
                ignored.append(f"metric window already held for activity {activity.id}")
                continue
            change.setdefault(activity.id, []).append((index, changed))
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
    current, decisions = _rejudge(plan, catalogue, rules, ctx, change, trigger="metric", at=metric.window.end)
    trigger = evidence.observation or evidence.session or metric.device
    return _finish(
        current, ctx, decisions, at=metric.window.end, trigger=trigger, ignored=ignored, original=plan
    )


def apply_stream_completed(
    plan: PlanState,
    completed: StreamMetricsCompleted,
    *,
    catalogue: Catalogue,
    rules: ProgressionRules = DEFAULT_RULES,
    at: datetime,
) -> Outcome:
    """A stream's metrics have all been sent: the sessions that used it stop waiting and are judged."""
    if completed.patient != plan.patient:
        return Outcome(plan, ignored=(f"stream {completed.stream} is for another patient",))
    ctx = Context.of(plan)
    change: dict[str, list[tuple[int, SessionRecord]]] = {}
    seen = False
    for activity in plan.activities:
        for index, record in enumerate(activity.log):
            if completed.stream not in record.streams:
                continue
            seen = True
            if completed.stream in record.streams_complete:
                continue
            done = (*record.streams_complete, completed.stream)
            change.setdefault(activity.id, []).append(
                (index, record.model_copy(update={"streams_complete": done}))
            )
    if not seen:
        if completed.stream in plan.completed_streams:
            return Outcome(plan, ignored=(f"stream {completed.stream} already complete",))
        kept = (*plan.completed_streams, completed.stream)[-_KEPT_COMPLETED_STREAMS:]
        return Outcome(
            plan.model_copy(update={"completed_streams": kept}),
            ignored=(f"stream {completed.stream} complete before its session was logged: kept until it is",),
        )
    if not change:
        return Outcome(plan, ignored=(f"stream {completed.stream} already complete",))
    current, decisions = _rejudge(plan, catalogue, rules, ctx, change, trigger="evidence", at=at)
    return _finish(current, ctx, decisions, at=at, trigger=completed.stream, ignored=[], original=plan)


def evidence_due(plan: PlanState) -> datetime | None:
    """The earliest time a session of this plan stops waiting for its streams' metrics (None: none waits)."""
    dues = [
        r.evidence_due for a in plan.activities for r in a.log if r.awaiting and r.evidence_due is not None
    ]
    return min(dues) if dues else None


def expire_evidence(
    plan: PlanState, *, now: datetime, catalogue: Catalogue, rules: ProgressionRules = DEFAULT_RULES
) -> Outcome:
    """Sessions whose wait for their streams' metrics has passed: what has not arrived is judged missing."""
    ctx = Context.of(plan)
    change: dict[str, list[tuple[int, SessionRecord]]] = {}
    for activity in plan.activities:
        for index, record in enumerate(activity.log):
            if record.awaiting and record.evidence_due is not None and record.evidence_due <= now:
                change.setdefault(activity.id, []).append(
                    (index, record.model_copy(update={"evidence_timed_out": True}))
                )
    if not change:
        return Outcome(plan)
    current, decisions = _rejudge(plan, catalogue, rules, ctx, change, trigger="evidence", at=now)
    return _finish(current, ctx, decisions, at=now, trigger="evidence-timeout", ignored=[], original=plan)
