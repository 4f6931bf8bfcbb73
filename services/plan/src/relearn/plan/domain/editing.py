"""A therapist's edits of plan state: activate, override an activity, change rules, add or stop an activity.

Also the plan's status. Each is a new plan version with who, why and when.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.ids import IdFactory
from relearn.plan.domain.patterns import DIMENSION_DISPLAY, Dimension
from relearn.plan.domain.progression import Context, Outcome, activity_rules, evaluate, label, stage_reentry
from relearn.plan.domain.rules import DEFAULT_RULES, ProgressionRules, RuleError, RulePatch
from relearn.plan.domain.stages import CompetenceStage
from relearn.plan.domain.state import (
    ActivityState,
    ActivityStatus,
    ChangeNote,
    ChangeRef,
    CriterionMuscles,
    Decision,
    DeficitRef,
    Dose,
    OverrideInfo,
    PlanError,
    PlanState,
    PlanStatus,
    RuleOverrides,
    Side,
    Waiver,
)

# Which plan statuses may follow which (FHIR request-status, as a clinic uses it).
_NEXT_STATUS: dict[PlanStatus, frozenset[PlanStatus]] = {
    "draft": frozenset({"active", "revoked", "entered-in-error"}),
    "active": frozenset({"on-hold", "completed", "revoked", "entered-in-error"}),
    "on-hold": frozenset({"active", "completed", "revoked", "entered-in-error"}),
    "completed": frozenset({"entered-in-error"}),
    "revoked": frozenset({"entered-in-error"}),
    "entered-in-error": frozenset(),
}


def activate(plan: PlanState, *, by: str, at: datetime, reason: str = "reviewed and activated") -> Outcome:
    """A reviewed draft becomes the active plan; its proposed goals become active."""
    if plan.status != "draft":
        raise PlanError(f"only a draft plan can be activated; plan {plan.id} is {plan.status}")
    goals = [g.model_copy(update={"lifecycle": "active"}) for g in plan.goals if g.lifecycle == "proposed"]
    updated = plan.with_goals(goals).model_copy(update={"status": "active", "author": plan.author or by})
    updated = updated.recorded(at=at, kind="activated", reason=reason, by=by)
    return Outcome(updated, changed=True)


def set_status(plan: PlanState, status: PlanStatus, *, by: str, reason: str, at: datetime) -> Outcome:
    """Put the plan on hold, resume, complete or revoke it."""
    if status == plan.status:
        return Outcome(plan, ignored=(f"plan {plan.id} is already {status}",))
    if status == "active" and plan.status == "draft":
        return activate(plan, by=by, at=at, reason=reason)
    if status not in _NEXT_STATUS[plan.status]:
        raise PlanError(f"plan {plan.id} cannot go from {plan.status} to {status}")
    goal_lifecycle = {"completed": "completed", "revoked": "cancelled", "entered-in-error": "cancelled"}.get(
        status
    )
    goals = (
        [g.model_copy(update={"lifecycle": goal_lifecycle}) for g in plan.goals if g.lifecycle != "completed"]
        if goal_lifecycle
        else []
    )
    updated = plan.with_goals(goals).model_copy(update={"status": status})
    updated = updated.recorded(at=at, kind="status", reason=f"plan {status}: {reason}", by=by)
    return Outcome(updated, changed=True)


def discharge(
    plan: PlanState,
    *,
    by: str,
    reason: str,
    at: datetime,
    achieved: Mapping[str, bool] | None = None,
) -> Outcome:
    """Discharge: the plan is completed and every goal closed as achieved or not-achieved.

    A goal already ``achieved`` (a re-assessment met its targets) stays achieved; any other is not-achieved
    unless the therapist's ``achieved`` says otherwise (goal id -> met). Each activity still running is
    completed with the plan."""
    if plan.status not in ("active", "on-hold"):
        raise PlanError(f"plan {plan.id} is {plan.status}: only an active or on-hold plan is discharged")
    verdicts = dict(achieved or {})
    unknown = sorted(set(verdicts) - {g.id for g in plan.goals})
    if unknown:
        raise PlanError(f"goal {unknown[0]!r} is not a goal of plan {plan.id}")
    goals = []
    for g in plan.goals:
        met = verdicts.get(g.id, g.achievement == "achieved")
        goals.append(
            g.model_copy(
                update={
                    "lifecycle": "completed" if g.lifecycle != "cancelled" else "cancelled",
                    "achievement": "achieved" if met else "not-achieved",
                }
            )
        )
    activities = tuple(
        a.model_copy(update={"status": "completed"}) if a.status in ("active", "on-hold") else a
        for a in plan.activities
    )
    met_count = sum(1 for g in goals if g.achievement == "achieved")
    updated = plan.with_goals(goals).model_copy(update={"status": "completed", "activities": activities})
    updated = updated.recorded(
        at=at,
        kind="discharged",
        reason=f"discharged ({met_count} of {len(goals)} goals met): {reason}",
        by=by,
    )
    return Outcome(updated, changed=True)


def _coerce_levels(levels: Mapping[Dimension | str, int]) -> dict[Dimension, int]:
    try:
        return {Dimension(k): int(v) for k, v in levels.items()}
    except ValueError as exc:
        raise PlanError(f"unknown dimension in {dict(levels)}: {exc}") from None


def _stack_after(activity: ActivityState, levels: Mapping[Dimension, int]) -> tuple[Dimension, ...]:
    # Keep "last advanced" meaningful: each dimension appears in the stack at most as often as its level.
    stack = list(activity.advanced)
    for dim, new in levels.items():
        old = activity.levels.get(dim, 0)
        if new > old:
            stack.extend([dim] * (new - old))
        while stack.count(dim) > new:
            last = len(stack) - 1 - stack[::-1].index(dim)
            del stack[last]
    return tuple(stack)


def override(
    plan: PlanState,
    activity_id: str,
    *,
    by: str,
    reason: str,
    at: datetime,
    catalogue: Catalogue,
    levels: Mapping[Dimension | str, int] | None = None,
    stage: CompetenceStage | str | None = None,
    dose: Dose | Mapping[str, Any] | None = None,
) -> Outcome:
    """A therapist sets an activity's level (any dimensions), stage and/or dose; recorded as an override."""
    if not reason.strip():
        raise PlanError("an override needs a reason")
    activity = plan.activity(activity_id)
    pattern = catalogue.find(activity.pattern)
    if pattern is None:
        raise PlanError(f"pattern {activity.pattern} is not in catalogue {catalogue.version}")
    info = OverrideInfo(by=by, reason=reason)
    name = label(activity, pattern)
    decisions: list[Decision] = []
    update: dict[str, Any] = {}
    size = len(activity.log)
    if levels:
        wanted = _coerce_levels(levels)
        for dim, new in wanted.items():
            if not 0 <= new <= pattern.top_level(dim):
                raise PlanError(
                    f"{dim.value} level {new} is off the ladder of {pattern.code} "
                    f"(0-{pattern.top_level(dim)})"
                )
        changed = {d: v for d, v in wanted.items() if v != activity.levels.get(d, 0)}
        for dim, new in changed.items():
            old = activity.levels.get(dim, 0)
            decisions.append(
                Decision(
                    activity=activity.id,
                    pattern=pattern.code,
                    kind="advance" if new > old else "regress",
                    dimension=dim,
                    from_value=old,
                    to_value=new,
                    reason=f"{name}: {DIMENSION_DISPLAY[dim].lower()} {old} -> {new} "
                    f"('{pattern.step(dim, new).description}') set by {by}: {reason}",
                    override=info,
                )
            )
        if changed:
            update |= {
                "levels": {**activity.levels, **changed},
                "advanced": _stack_after(activity, changed),
                "changes": (),  # the therapist's levels are the new starting point for regressions
                "hold": None,
                "level_since": size,
                "dose_since": size,
            }
    if stage is not None:
        try:
            new_stage = CompetenceStage(stage)
        except ValueError:
            raise PlanError(f"unknown competence stage '{stage}'") from None
        if new_stage is not activity.stage:
            decisions.append(
                Decision(
                    activity=activity.id,
                    pattern=pattern.code,
                    kind="stage-change",
                    from_value=activity.stage.value,
                    to_value=new_stage.value,
                    reason=f"{name}: stage {activity.stage.display.lower()} -> {new_stage.display.lower()} "
                    f"set by {by}: {reason}",
                    override=info,
                )
            )
            update |= {"stage": new_stage, "stage_since": size}
    if dose is not None:
        try:
            new_dose = (
                dose
                if isinstance(dose, Dose)
                else Dose.model_validate({**activity.dose.model_dump(by_alias=False), **dict(dose)})
            )
        except ValidationError as exc:
            raise PlanError(f"invalid dose: {exc}") from None
        if new_dose != activity.dose:
            decisions.append(
                Decision(
                    activity=activity.id,
                    pattern=pattern.code,
                    kind="dose-change",
                    from_value=activity.dose.text(),
                    to_value=new_dose.text(),
                    reason=f"{name}: dose {activity.dose.text()} -> {new_dose.text()} set by {by}: {reason}",
                    override=info,
                )
            )
            update |= {"dose": new_dose, "dose_since": size}
    if not decisions:
        return Outcome(plan, ignored=(f"override of {activity.id} changes nothing",))
    note = ChangeNote(at=at, reason="; ".join(d.reason for d in decisions))
    updated = plan.with_activities([activity.model_copy(update={**update, "last_change": note})])
    updated = updated.recorded(
        at=at,
        kind="override",
        reason=note.reason,
        by=by,
        trigger=f"override:{activity.id}",
        decisions=decisions,
    )
    return Outcome(updated, tuple(decisions), changed=True)


def set_rule_overrides(
    plan: PlanState,
    *,
    by: str,
    reason: str,
    at: datetime,
    catalogue: Catalogue,
    plan_patch: RulePatch | None = None,
    pattern: str | None = None,
    pattern_patch: RulePatch | None = None,
    base: ProgressionRules = DEFAULT_RULES,
) -> Outcome:
    """Replace the plan-wide rule override and/or one pattern's override; refused whole if any is invalid.

    An empty patch removes that override. The result is checked against every pattern of the plan.
    """
    overrides = plan.rule_overrides
    new_plan = dict(overrides.plan) if plan_patch is None else dict(plan_patch)
    new_patterns = dict(overrides.patterns)
    if pattern is not None:
        if catalogue.find(pattern) is None:
            raise PlanError(f"no pattern '{pattern}' in catalogue {catalogue.version}")
        if pattern_patch:
            new_patterns[pattern] = dict(pattern_patch)
        else:
            new_patterns.pop(pattern, None)
    candidate = plan.model_copy(
        update={"rule_overrides": RuleOverrides(plan=new_plan, patterns=new_patterns)}
    )
    codes = {a.pattern for a in plan.activities} | ({pattern} if pattern else set())
    for code in sorted(codes):
        p = catalogue.find(code)
        if p is None:
            continue
        try:
            activity_rules(candidate, p, base)
        except RuleError as exc:
            raise PlanError(f"rules for {code} would be invalid: {exc}") from None
    if candidate.rule_overrides == overrides:
        return Outcome(plan, ignored=("rule overrides unchanged",))
    scope = f"pattern {pattern}" if pattern is not None and plan_patch is None else "plan"
    updated = candidate.recorded(
        at=at, kind="rules", reason=f"progression rules changed ({scope}): {reason}", by=by
    )
    return Outcome(updated, changed=True)


def set_activity_status(
    plan: PlanState, activity_id: str, status: ActivityStatus, *, by: str, reason: str, at: datetime
) -> Outcome:
    """Pause, resume, complete or cancel one exercise of the plan."""
    activity = plan.activity(activity_id)
    if activity.status == status:
        return Outcome(plan, ignored=(f"activity {activity_id} is already {status}",))
    if activity.status in ("completed", "cancelled"):
        raise PlanError(f"activity {activity_id} is {activity.status}")
    note = ChangeNote(at=at, reason=f"{status} by {by}: {reason}")
    updated = plan.with_activities([activity.model_copy(update={"status": status, "last_change": note})])
    updated = updated.recorded(
        at=at, kind="edited", reason=f"activity {activity_id} {status}: {reason}", by=by, trigger=activity_id
    )
    return Outcome(updated, changed=True)


def new_activity(
    plan_id: str,
    pattern_code: str,
    *,
    side: Side | None,
    catalogue: Catalogue,
    ids: IdFactory,
    deficits: tuple[DeficitRef, ...] = (),
    goals: tuple[str, ...] = (),
    stage: CompetenceStage = CompetenceStage.UNCONSCIOUS_INCOMPETENCE,
) -> ActivityState:
    """A pattern at its simplest form (level 0 everywhere) with the catalogue's default dose."""
    pattern = catalogue.find(pattern_code)
    if pattern is None:
        raise PlanError(f"no pattern '{pattern_code}' in catalogue {catalogue.version}")
    if side is not None and not pattern.sided:
        side = None
    return ActivityState(
        id=ids("ServiceRequest", f"{plan_id}|activity|{pattern.code}|{side or '-'}"),
        pattern=pattern.code,
        side=side,
        levels={d: 0 for d in Dimension},
        stage=stage,
        dose=Dose.from_defaults(pattern.dosing),
        deficits=deficits,
        goals=goals,
    )


def add_activity(
    plan: PlanState,
    pattern_code: str,
    *,
    side: Side | None,
    by: str,
    reason: str,
    at: datetime,
    catalogue: Catalogue,
    ids: IdFactory,
    goals: tuple[str, ...] = (),
) -> Outcome:
    """A therapist adds a pattern to the plan, at its simplest form."""
    activity = new_activity(plan.id, pattern_code, side=side, catalogue=catalogue, ids=ids, goals=goals)
    if plan.find_activity(activity.id) is not None:
        raise PlanError(f"plan {plan.id} already has {pattern_code} ({side or 'no side'})")
    updated = plan.model_copy(update={"activities": (*plan.activities, activity)})
    updated = updated.recorded(
        at=at, kind="edited", reason=f"added {pattern_code} ({side or 'no side'}): {reason}", by=by
    )
    return Outcome(updated, changed=True)


def remove_activity(plan: PlanState, activity_id: str, *, by: str, reason: str, at: datetime) -> Outcome:
    """Take an exercise out of a draft under review (an active plan's exercise is stopped, not removed)."""
    if plan.status != "draft":
        raise PlanError(
            f"only a draft's exercises can be removed; plan {plan.id} is {plan.status}: set the exercise's "
            "status instead"
        )
    activity = plan.activity(activity_id)
    side = f" ({activity.side})" if activity.side else ""
    updated = plan.model_copy(update={"activities": tuple(a for a in plan.activities if a.id != activity_id)})
    updated = updated.recorded(
        at=at,
        kind="edited",
        reason=f"removed {activity.pattern}{side}: {reason}",
        by=by,
        trigger=activity_id,
    )
    return Outcome(updated, changed=True)


def _criterion_keys(catalogue: Catalogue, patterns: set[str]) -> dict[str, set[str | None]]:
    """criterion kind -> the muscles it is judged on, over the given patterns."""
    keys: dict[str, set[str | None]] = {}
    for code in patterns:
        p = catalogue.find(code)
        if p is None:
            continue
        for check in p.mastery.checks():
            keys.setdefault(check.kind, set()).add(check.muscle)
    return keys


def set_waivers(
    plan: PlanState,
    waivers: list[Waiver],
    *,
    by: str,
    reason: str,
    at: datetime,
    catalogue: Catalogue,
    base: ProgressionRules = DEFAULT_RULES,
) -> Outcome:
    """Replace the plan's criterion waivers (each with its own reason), then re-judge the activities they
    touch: a streak that only waited for the waived evidence advances now, naming the waived criteria."""
    patterns = {a.pattern for a in plan.activities}
    for i, w in enumerate(waivers):
        if w.pattern is not None and w.pattern not in patterns:
            raise PlanError(f"waivers[{i}].pattern: '{w.pattern}' is not a pattern of plan {plan.id}")
        keys = _criterion_keys(catalogue, {w.pattern} if w.pattern else patterns)
        if w.criterion not in keys:
            raise PlanError(
                f"waivers[{i}].criterion: '{w.criterion}' is not a criterion of "
                f"{w.pattern or 'this plan'} (one of {', '.join(sorted(keys)) or 'none'})"
            )
        if w.muscle is not None and w.muscle not in keys[w.criterion]:
            raise PlanError(f"waivers[{i}].muscle: '{w.muscle}' is not judged by {w.criterion} here")
    if tuple(waivers) == plan.waivers:
        return Outcome(plan, ignored=("waivers unchanged",))
    updated = plan.model_copy(update={"waivers": tuple(waivers)})
    ctx = Context.of(updated)
    decisions: list[Decision] = []
    touched = {w.pattern for w in waivers} | {w.pattern for w in plan.waivers}
    for activity in updated.activities:
        if activity.status != "active" or not activity.log or updated.status != "active":
            continue
        if None not in touched and activity.pattern not in touched:
            continue
        pattern = catalogue.find(activity.pattern)
        if pattern is None:
            continue
        judged, made = evaluate(
            activity.model_copy(update={"hold": None})
            if activity.hold and activity.hold.startswith("evidence:")
            else activity,
            pattern,
            activity_rules(updated, pattern, base),
            index=len(activity.log) - 1,
            trigger="evidence",
            at=at,
            ctx=ctx,
        )
        if made:
            decisions.extend(made)
            updated = updated.with_activities([judged])
    if ctx.raised:
        updated = updated.with_tasks(ctx.raised)
    listed = "; ".join(
        f"{w.criterion}{' of ' + w.muscle if w.muscle else ''} for {w.pattern or 'every pattern'} "
        f"({w.reason})"
        for w in waivers
    )
    text = f"criterion waivers set by {by}: {listed or 'none'} - {reason}"
    updated = updated.recorded(
        at=at,
        kind="waiver",
        reason="; ".join([text, *(d.reason for d in decisions)]),
        evidence=[ref for d in decisions for ref in d.evidence],
        by=by,
        trigger="waivers",
        decisions=decisions,
    )
    return Outcome(updated, tuple(decisions), changed=True)


def resolve_task(
    plan: PlanState,
    task_id: str,
    *,
    approve: bool,
    by: str,
    reason: str,
    at: datetime,
    catalogue: Catalogue,
) -> Outcome:
    """The therapist answers a Task: approve or reject an advance for a patient at fall risk, or allow
    (approve) or not (reject) another try of an advance that symptoms undid repeatedly."""
    if not reason.strip():
        raise PlanError("answering a task needs a reason")
    task = plan.task(task_id)
    if task.status != "requested":
        raise PlanError(f"Task/{task_id} is already {task.status}")
    activity = plan.activity(task.activity)
    pattern = catalogue.find(activity.pattern)
    if pattern is None:
        raise PlanError(f"pattern {activity.pattern} is not in catalogue {catalogue.version}")
    done = task.model_copy(
        update={
            "status": "completed" if approve else "rejected",
            "resolved": at,
            "resolved_by": by,
            "resolution": reason,
        }
    )
    name = label(activity, pattern)
    decisions: list[Decision] = []
    info = OverrideInfo(by=by, reason=reason)
    step = task.proposed
    if approve and task.kind == "approve-advance" and step is not None:
        if activity.levels.get(step.dimension, 0) != step.from_level:
            raise PlanError(
                f"Task/{task_id}: {step.dimension.value} is no longer at level {step.from_level}; "
                "the proposal is out of date"
            )
        size = len(activity.log)
        dim = step.dimension
        decisions.append(
            Decision(
                activity=activity.id,
                pattern=pattern.code,
                kind="advance",
                dimension=dim,
                from_value=step.from_level,
                to_value=step.to_level,
                reason=f"{name}: advance of {DIMENSION_DISPLAY[dim].lower()} {step.from_level} -> "
                f"{step.to_level} "
                f"('{pattern.step(dim, step.to_level).description}') approved by {by}: {reason}",
                evidence=task.evidence,
                task=f"Task/{task.id}",
                override=info,
            )
        )
        activity = activity.model_copy(
            update={
                "levels": {**activity.levels, dim: step.to_level},
                "advanced": (*activity.advanced, dim),
                "changes": (
                    *activity.changes,
                    ChangeRef(
                        kind="advance", dimension=dim, from_value=step.from_level, to_value=step.to_level
                    ),
                ),
                "level_since": size,
                "dose_since": size,
                "hold": None,
            }
        )
        if activity_rules(plan, pattern).stages.on_advance == "conscious-competence":
            activity, reentry = stage_reentry(activity, pattern, dim, step.to_level, task.evidence)
            decisions.extend([reentry] if reentry else [])
    elif task.kind == "review-failed-advance" and step is not None:
        key = f"{step.dimension.value}:{step.to_level}"
        failed = dict(activity.failed_advances)
        if approve:
            failed.pop(key, None)
        activity = activity.model_copy(update={"failed_advances": failed, "hold": None})
        verdict = "may be tried again" if approve else "stays blocked"
        decisions.append(
            Decision(
                activity=activity.id,
                pattern=pattern.code,
                kind="task",
                reason=f"{name}: the advance of {DIMENSION_DISPLAY[step.dimension].lower()} "
                f"{step.from_level} -> "
                f"{step.to_level} {verdict} ({by}: {reason})",
                task=f"Task/{task.id}",
                override=info,
            )
        )
    else:
        decisions.append(
            Decision(
                activity=activity.id,
                pattern=pattern.code,
                kind="task",
                reason=f"{name}: proposal Task/{task.id} rejected by {by}: {reason}",
                task=f"Task/{task.id}",
                override=info,
            )
        )
    updated = plan.with_activities([activity]).with_tasks([done])
    updated = updated.recorded(
        at=at,
        kind="task",
        reason="; ".join(d.reason for d in decisions),
        evidence=task.evidence,
        by=by,
        trigger=f"Task/{task.id}",
        decisions=decisions,
    )
    return Outcome(updated, tuple(decisions), changed=True)


def set_activity_muscles(
    plan: PlanState,
    activity_id: str,
    muscles: Mapping[str, CriterionMuscles],
    *,
    by: str,
    reason: str,
    at: datetime,
    catalogue: Catalogue,
) -> Outcome:
    """The muscles this exercise's EMG criteria judge (``{criterion: {muscle, referenceMuscle,
    antagonist}}``), replacing the catalogue pattern's choice; ``{}`` goes back to the pattern's."""
    activity = plan.activity(activity_id)
    pattern = catalogue.find(activity.pattern)
    if pattern is None:
        raise PlanError(f"pattern {activity.pattern} is not in catalogue {catalogue.version}")
    known = set(catalogue.vocabulary.muscles)
    kinds = {c.kind: c for c in pattern.mastery.checks()}
    for kind, chosen in muscles.items():
        check = kinds.get(kind)
        if check is None or kind not in ("emg-onset-latency", "co-contraction"):
            raise PlanError(f"muscles.{kind}: {pattern.code} has no EMG criterion '{kind}'")
        for field, value in (
            ("muscle", chosen.muscle),
            ("referenceMuscle", chosen.reference_muscle),
            ("antagonist", chosen.antagonist),
        ):
            if value is not None and value not in known:
                raise PlanError(f"muscles.{kind}.{field}: '{value}' is not a SENIAM muscle of the catalogue")
        if chosen.reference_muscle is not None and check.reference_kind != "synergist":
            raise PlanError(f"muscles.{kind}.referenceMuscle: the criterion is not timed against a synergist")
        if chosen.antagonist is not None and kind != "co-contraction":
            raise PlanError(f"muscles.{kind}.antagonist: only co-contraction has an antagonist")
        muscle = chosen.muscle or check.muscle
        if muscle is not None and muscle in (chosen.reference_muscle, chosen.antagonist):
            raise PlanError(f"muscles.{kind}: a muscle cannot be its own reference or antagonist")
    if dict(muscles) == activity.muscles:
        return Outcome(plan, ignored=("muscles unchanged",))
    listed = "; ".join(
        f"{kind}: {m.muscle or 'pattern default'}"
        + (f" against {m.reference_muscle}" if m.reference_muscle else "")
        + (f"/{m.antagonist}" if m.antagonist else "")
        for kind, m in muscles.items()
    )
    text = (
        f"{label(activity, pattern)}: EMG criteria judged on {listed or 'the pattern defaults'}, "
        f"set by {by}: {reason}"
    )
    updated = plan.with_activities(
        [
            activity.model_copy(
                update={"muscles": dict(muscles), "last_change": ChangeNote(at=at, reason=text)}
            )
        ]
    )
    updated = updated.recorded(at=at, kind="edited", reason=text, by=by, trigger=f"muscles:{activity.id}")
    return Outcome(updated, changed=True)
