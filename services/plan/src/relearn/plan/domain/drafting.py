"""Drafting a plan from an evaluation, and proposing changes from a re-assessment.

Each deficit is matched to the catalogue patterns that target it (body site, motion and measure kind, per
side); every chosen pattern starts at its simplest form (level 0 on every ladder) with its default dose. Goals
are the patient's own, with measurable targets - the one they gave, else derived from the norms of the
deficits the goal is about - plus one clinician goal per deficit no patient goal covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.editing import new_activity
from relearn.plan.domain.ids import IdFactory
from relearn.plan.domain.inputs import Deficit, EvaluationCompleted, GoalTargetIn, PatientGoal
from relearn.plan.domain.patterns import MovementPattern, slug
from relearn.plan.domain.progression import Outcome
from relearn.plan.domain.stages import CompetenceStage
from relearn.plan.domain.state import (
    ActivityState,
    DeficitRef,
    GoalAchievement,
    GoalLifecycle,
    GoalState,
    GoalTarget,
    PlanChange,
    PlanError,
    PlanState,
    ReferralRef,
    Screening,
    Side,
    StateModel,
)

DeficitKey = tuple[str, str, str]


class DraftingOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_patterns_per_deficit: int = Field(default=1, ge=1, le=5)
    due_weeks: dict[str, int] = Field(default_factory=lambda: {"mild": 4, "moderate": 8, "severe": 12})
    default_due_weeks: int = Field(default=8, ge=1, le=104)
    ignored_severities: tuple[str, ...] = ("none", "normal", "within-normal-limits")
    # Pain is a symptom the engine watches, not a movement deficit a pattern trains.
    ignored_kinds: tuple[str, ...] = ("pain",)
    title: str = "Neuromuscular re-education plan"


DEFAULT_OPTIONS = DraftingOptions()

# The evaluation's measure kinds, for measure keys the vocabulary does not recognise.
_EVALUATION_KINDS = {"range-of-motion": "rom", "strength": "strength"}


@dataclass(frozen=True)
class DeficitFeatures:
    body_site: str | None
    motion: str | None
    kind: str | None


def features(deficit: Deficit, catalogue: Catalogue) -> DeficitFeatures:
    """Body site, motion and measure kind of a deficit: from its joint, motion and muscle group, else from the
    words of its measure code."""
    v = catalogue.vocabulary
    c = deficit.coding
    site_texts = [deficit.joint, deficit.muscle_group]
    if deficit.body_site is not None:
        site_texts += [deficit.body_site.code, deficit.body_site.display]
    site_texts += [deficit.measure, c.code, c.display]
    motion_texts = [deficit.motion, deficit.muscle_group, deficit.measure, c.code, c.display]
    kind = (
        v.measure_kind(deficit.measure) or v.measure_kind(c.code) or _EVALUATION_KINDS.get(deficit.kind or "")
    )
    return DeficitFeatures(body_site=v.body_site(*site_texts), motion=v.motion(*motion_texts), kind=kind)


def match_patterns(deficit: Deficit, catalogue: Catalogue, limit: int = 1) -> list[MovementPattern]:
    """The best-matching patterns for a deficit (catalogue order breaks ties), at most ``limit``.

    A pattern target matches when the deficit's measure kind is one it lists and its body site and motion
    (where the target names them) agree; a target naming more of them scores higher.
    """
    f = features(deficit, catalogue)
    if f.kind is None:
        return []
    scored: list[tuple[int, int, MovementPattern]] = []
    for order, pattern in enumerate(catalogue.patterns):
        best = -1
        for t in pattern.targets:
            if f.kind not in t.measures:
                continue
            if t.body_site is not None and t.body_site != f.body_site:
                continue
            if t.motion is not None and t.motion != f.motion:
                continue
            best = max(best, 1 + (4 if t.body_site else 0) + (2 if t.motion else 0))
        if best >= 0:
            scored.append((-best, order, pattern))
    if not scored:
        return []
    scored.sort(key=lambda s: (s[0], s[1]))
    top = scored[0][0]
    return [p for score, _, p in scored if score == top][:limit]


def _observation(d: Deficit, evaluation: str) -> str:
    # A deficit sent without its member Observation id points at the evaluation panel.
    return d.observation or evaluation


def _deficit_ref(d: Deficit, evaluation: str) -> DeficitRef:
    return DeficitRef(
        measure=d.coding.token,
        display=d.label,
        side=d.side,
        qualifier=d.qualifier,
        observation=_observation(d, evaluation),
        measured=d.measured,
        unit=d.unit,
    )


def _due(effective: datetime, severity: str | None, options: DraftingOptions) -> date:
    weeks = options.due_weeks.get(severity or "", options.default_due_weeks)
    return effective.date() + timedelta(weeks=weeks)


def _derived_target(
    d: Deficit, effective: datetime, evaluation: str, options: DraftingOptions
) -> GoalTarget | None:
    target = d.target()
    if target is None:
        return None
    comparator, value = target
    c = d.coding
    return GoalTarget(
        measure_system=c.system,
        measure_code=c.code,
        measure_display=d.label,
        side=d.side,
        qualifier=d.qualifier,
        comparator=comparator,
        value=value,
        unit=d.unit,
        due=_due(effective, d.severity, options),
        baseline=d.measured,
        deficit=_observation(d, evaluation),
    )


def _targets_deficit(t: GoalTargetIn, d: Deficit) -> bool:
    coding = t.coding
    if coding is None:
        return False
    same_measure = coding.code in (d.coding.code, d.measure) or t.measure == d.measure
    return (
        same_measure
        and (t.side is None or d.side is None or d.side == t.side)
        and (t.muscle_group is None or t.muscle_group == d.muscle_group)
    )


def _given_target(
    t: GoalTargetIn,
    deficits: Sequence[Deficit],
    effective: datetime,
    evaluation: str,
    options: DraftingOptions,
) -> GoalTarget:
    linked = next((d for d in deficits if _targets_deficit(t, d)), None)
    coding = t.coding
    display = linked.label if linked else (coding.display if coding else None)
    return GoalTarget(
        measure_system=coding.system if coding else None,
        measure_code=coding.code if coding else None,
        measure_display=display,
        side=t.side or (linked.side if linked else None),
        qualifier=linked.qualifier if linked else (t.muscle_group or ""),
        comparator=t.comparator,
        value=t.value,
        unit=t.unit or (linked.unit if linked else None),
        due=t.due or _due(effective, linked.severity if linked else None, options),
        baseline=linked.measured if linked else None,
        deficit=_observation(linked, evaluation) if linked else None,
    )


def _mentions(text: str, phrase: str) -> bool:
    hay, needle = slug(text), slug(phrase)
    return bool(needle) and f"-{needle}-" in f"-{hay}-"


def _goal_deficits(
    goal: PatientGoal,
    deficits: Sequence[Deficit],
    matches: dict[DeficitKey, list[MovementPattern]],
    catalogue: Catalogue,
) -> list[Deficit]:
    """The deficits a patient goal is about: named, measured by its targets, or mentioned in its words
    (a body site, or a functional keyword of a pattern chosen for the deficit); else all of them."""
    named = set(goal.deficits)
    linked = [
        d
        for d in deficits
        if (d.observation is not None and d.observation in named)
        or any(_targets_deficit(t, d) for t in goal.targets)
    ]
    if linked or goal.targets:
        return linked
    for d in deficits:
        site = features(d, catalogue).body_site
        words = [kw for p in matches.get(d.key, []) for kw in p.keywords]
        if (site and _mentions(goal.text, site)) or any(_mentions(goal.text, kw) for kw in words):
            linked.append(d)
    return linked or list(deficits)


def _side_text(side: Side | None) -> str:
    return f" ({side})" if side else ""


def _clinician_goal_text(d: Deficit) -> str:
    target = d.target()
    if target is None:
        return f"Resolve the deficit in {d.label}{_side_text(d.side)}"
    comparator, value = target
    unit = f" {d.unit}" if d.unit else ""
    return f"Restore {d.label}{_side_text(d.side)} to {comparator} {value:g}{unit}"


def _goals(
    plan_id: str,
    evaluation: str,
    patient_goals: Sequence[PatientGoal],
    effective: datetime,
    deficits: Sequence[Deficit],
    matches: dict[DeficitKey, list[MovementPattern]],
    *,
    catalogue: Catalogue,
    ids: IdFactory,
    options: DraftingOptions,
    lifecycle: GoalLifecycle,
    skip_keys: frozenset[DeficitKey] = frozenset(),
) -> list[GoalState]:
    goals: list[GoalState] = []
    covered: set[DeficitKey] = set()
    start = effective.date()
    for i, g in enumerate(patient_goals):
        about = _goal_deficits(g, deficits, matches, catalogue)
        covered.update(d.key for d in about)
        if g.targets:
            targets = [_given_target(t, deficits, effective, evaluation, options) for t in g.targets]
        else:
            targets = [t for t in (_derived_target(d, effective, evaluation, options) for d in about) if t]
        goals.append(
            GoalState(
                id=ids("Goal", f"{plan_id}|goal|patient|{i}|{g.text}"),
                description=g.text,
                source="patient",
                targets=tuple(targets),
                addresses=tuple(dict.fromkeys(_observation(d, evaluation) for d in about)),
                lifecycle=lifecycle,
                start=start,
            )
        )
    for d in deficits:
        if d.key in covered or d.key in skip_keys:
            continue
        target = _derived_target(d, effective, evaluation, options)
        goals.append(
            GoalState(
                id=ids("Goal", f"{plan_id}|goal|deficit|{'|'.join(d.key)}"),
                description=_clinician_goal_text(d),
                source="clinician",
                targets=(target,) if target else (),
                addresses=(_observation(d, evaluation),),
                lifecycle=lifecycle,
                start=start,
            )
        )
    return goals


def _relevant(evaluation: EvaluationCompleted, options: DraftingOptions) -> list[Deficit]:
    return [
        d
        for d in evaluation.deficits
        if (d.severity or "") not in options.ignored_severities
        and (d.kind or "") not in options.ignored_kinds
    ]


def _group(
    deficits: Iterable[Deficit], catalogue: Catalogue, options: DraftingOptions
) -> tuple[
    dict[tuple[str, Side | None], list[Deficit]], dict[DeficitKey, list[MovementPattern]], list[Deficit]
]:
    groups: dict[tuple[str, Side | None], list[Deficit]] = {}
    matches: dict[DeficitKey, list[MovementPattern]] = {}
    unmatched: list[Deficit] = []
    for d in deficits:
        found = match_patterns(d, catalogue, options.max_patterns_per_deficit)
        matches[d.key] = found
        if not found:
            unmatched.append(d)
        for p in found:
            groups.setdefault((p.code, d.side if p.sided else None), []).append(d)
    return groups, matches, unmatched


def _initial_stage(deficits: Sequence[Deficit]) -> CompetenceStage:
    # Conscious incompetence only when the evaluation recorded that the patient's self-rating agreed.
    if deficits and all(d.self_rating_agrees for d in deficits):
        return CompetenceStage.CONSCIOUS_INCOMPETENCE
    return CompetenceStage.UNCONSCIOUS_INCOMPETENCE


def _activity_for(
    plan_id: str,
    evaluation: str,
    code: str,
    side: Side | None,
    deficits: Sequence[Deficit],
    goals: Sequence[GoalState],
    *,
    catalogue: Catalogue,
    ids: IdFactory,
) -> ActivityState:
    refs = {_observation(d, evaluation) for d in deficits}
    return new_activity(
        plan_id,
        code,
        side=side,
        catalogue=catalogue,
        ids=ids,
        deficits=tuple(_deficit_ref(d, evaluation) for d in deficits),
        goals=tuple(g.id for g in goals if refs & set(g.addresses)),
        stage=_initial_stage(deficits),
    )


def _unmatched_text(unmatched: Sequence[Deficit]) -> str:
    if not unmatched:
        return ""
    names = ", ".join(f"{d.label}{_side_text(d.side)}" for d in unmatched)
    return f"; no catalogue pattern for: {names} (add by hand)"


def draft_plan(
    evaluation: EvaluationCompleted,
    *,
    catalogue: Catalogue,
    ids: IdFactory,
    options: DraftingOptions = DEFAULT_OPTIONS,
) -> PlanState:
    """A draft plan (status ``draft``, version 1) targeting the evaluation's deficits, for review."""
    plan_id = ids("CarePlan", f"evaluation|{evaluation.evaluation}")
    deficits = _relevant(evaluation, options)
    groups, matches, unmatched = _group(deficits, catalogue, options)
    goals = _goals(
        plan_id,
        evaluation.evaluation,
        evaluation.goals,
        evaluation.effective,
        deficits,
        matches,
        catalogue=catalogue,
        ids=ids,
        options=options,
        lifecycle="proposed",
    )
    activities = [
        _activity_for(plan_id, evaluation.evaluation, code, side, ds, goals, catalogue=catalogue, ids=ids)
        for (code, side), ds in groups.items()
    ]
    reason = (
        f"drafted from evaluation {evaluation.evaluation}: {len(activities)} exercise(s) for "
        f"{len(deficits) - len(unmatched)} deficit(s), every pattern at its simplest form"
        f"{_unmatched_text(unmatched)}"
    )
    evidence = (evaluation.evaluation, *(_observation(d, evaluation.evaluation) for d in deficits))
    return PlanState(
        id=plan_id,
        patient=evaluation.patient,
        status="draft",
        title=options.title,
        created=evaluation.effective,
        period_start=evaluation.effective.date(),
        author=evaluation.practitioner,
        catalogue_version=catalogue.version,
        evaluation=evaluation.evaluation,
        referral=tuple(
            ReferralRef(reference=ref, text=r.text) for r in evaluation.referral if (ref := r.ref) is not None
        ),
        activities=tuple(activities),
        goals=tuple(goals),
        screening=screening_of(evaluation),
        version=1,
        history=(
            PlanChange(
                version=1,
                at=evaluation.effective,
                kind="drafted",
                reason=reason,
                evidence=tuple(dict.fromkeys(evidence)),
                by=evaluation.practitioner,
                trigger=evaluation.evaluation,
            ),
        ),
    )


# ---------------------------------------------------------------------------------------------- re-assessment


class GoalUpdate(StateModel):
    goal: str
    achievement: GoalAchievement
    lifecycle: GoalLifecycle
    reason: str
    evidence: tuple[str, ...] = ()


class ActivityDeficits(StateModel):
    activity: str
    deficits: tuple[DeficitRef, ...]


class PlanProposal(StateModel):
    """What a re-assessment suggests; nothing changes until a therapist applies it."""

    plan: str
    evaluation: str
    at: datetime
    add_activities: tuple[ActivityState, ...] = ()
    add_deficits: tuple[ActivityDeficits, ...] = ()
    add_goals: tuple[GoalState, ...] = ()
    goal_updates: tuple[GoalUpdate, ...] = ()
    complete_activities: tuple[str, ...] = ()
    reason: str

    @property
    def empty(self) -> bool:
        return not (
            self.add_activities
            or self.add_deficits
            or self.add_goals
            or self.goal_updates
            or self.complete_activities
        )


def _still_open(now: dict[DeficitKey, Deficit], key: DeficitKey) -> Deficit | None:
    # A target without a side (or qualifier) stays open while any deficit on that measure remains.
    if key in now:
        return now[key]
    return next(
        (d for k, d in now.items() if k[0] == key[0] and key[1] in ("", k[1]) and key[2] in ("", k[2])), None
    )


def _goal_progress(
    goal: GoalState, now: dict[DeficitKey, Deficit], evaluation: str
) -> tuple[GoalAchievement, str] | None:
    keys = [(t, k) for t in goal.targets if (k := t.key) is not None]
    if not keys:
        return None
    met, better, worse = 0, 0, 0
    for target, key in keys:
        current = _still_open(now, key)
        if current is None:
            met += 1
            continue
        if target.value is not None and target.baseline is not None and current.measured is not None:
            before, after = abs(target.baseline - target.value), abs(current.measured - target.value)
            better += after < before
            worse += after > before
    if met == len(keys):
        return "achieved", f"every target of '{goal.description}' is back within its norm at {evaluation}"
    if met or better:
        return "improving", f"{met} of {len(keys)} target(s) met, {better} closer to the norm at {evaluation}"
    if worse:
        return "worsening", f"further from the norm at {evaluation}"
    return "no-change", f"no target met yet at {evaluation}"


def propose_changes(
    plan: PlanState,
    reassessment: EvaluationCompleted,
    *,
    catalogue: Catalogue,
    ids: IdFactory,
    options: DraftingOptions = DEFAULT_OPTIONS,
) -> PlanProposal:
    """Compare a re-assessment with the plan.

    New deficits get patterns at their simplest form (or join the activity that already trains that pattern
    and side) and clinician goals; a goal whose deficits are no longer reported is achieved (the re-assessment
    lists deficits only); an activity that reached unconscious competence whose deficits are all gone may be
    completed.
    """
    deficits = _relevant(reassessment, options)
    now: dict[DeficitKey, Deficit] = {d.key: d for d in deficits}
    known = {ref.key for a in plan.activities for ref in a.deficits}
    goal_keys = frozenset(k for g in plan.goals for t in g.targets if (k := t.key) is not None)
    new = [d for d in deficits if d.key not in known]
    groups, matches, unmatched = _group(new, catalogue, options)
    lifecycle: GoalLifecycle = "active" if plan.status == "active" else "proposed"
    have_goals = {g.id for g in plan.goals}
    add_goals = [
        g
        for g in _goals(
            plan.id,
            reassessment.evaluation,
            (),
            reassessment.effective,
            new,
            matches,
            catalogue=catalogue,
            ids=ids,
            options=options,
            lifecycle=lifecycle,
            skip_keys=goal_keys,
        )
        if g.id not in have_goals
    ]
    add_activities: list[ActivityState] = []
    add_deficits: list[ActivityDeficits] = []
    for (code, side), ds in groups.items():
        candidate = _activity_for(
            plan.id, reassessment.evaluation, code, side, ds, add_goals, catalogue=catalogue, ids=ids
        )
        existing = plan.find_activity(candidate.id)
        if existing is None:
            add_activities.append(candidate)
        else:
            add_deficits.append(ActivityDeficits(activity=existing.id, deficits=candidate.deficits))
    updates: list[GoalUpdate] = []
    for goal in plan.goals:
        if goal.lifecycle in ("completed", "cancelled"):
            continue
        progress = _goal_progress(goal, now, reassessment.evaluation)
        if progress is None or progress[0] == goal.achievement:
            continue
        achievement, why = progress
        updates.append(
            GoalUpdate(
                goal=goal.id,
                achievement=achievement,
                lifecycle="completed" if achievement == "achieved" else goal.lifecycle,
                reason=why,
                evidence=(reassessment.evaluation,),
            )
        )
    complete = [
        a.id
        for a in plan.activities
        if a.status == "active"
        and a.deficits
        # Mastery reached (unconscious competence at some level: a later advance re-enters at conscious
        # competence, which does not undo it).
        and (a.stage is CompetenceStage.UNCONSCIOUS_COMPETENCE or a.mastered)
        and all(_still_open(now, ref.key) is None for ref in a.deficits)
    ]
    achieved = sum(u.achievement == "achieved" for u in updates)
    reason = (
        f"re-assessment {reassessment.evaluation}: {len(add_activities)} new exercise(s), "
        f"{len(add_goals)} new goal(s), {achieved} goal(s) achieved, {len(complete)} exercise(s) complete"
        f"{_unmatched_text(unmatched)}"
    )
    return PlanProposal(
        plan=plan.id,
        evaluation=reassessment.evaluation,
        at=reassessment.effective,
        add_activities=tuple(add_activities),
        add_deficits=tuple(add_deficits),
        add_goals=tuple(add_goals),
        goal_updates=tuple(updates),
        complete_activities=tuple(complete),
        reason=reason,
    )


def apply_proposal(plan: PlanState, proposal: PlanProposal, *, by: str, at: datetime) -> Outcome:
    """Accept a re-assessment's proposal as one new plan version."""
    if proposal.plan != plan.id:
        raise PlanError(f"proposal is for plan {proposal.plan}, not {plan.id}")
    if proposal.empty:
        return Outcome(plan, ignored=("the re-assessment proposes no change",))
    have = {a.id for a in plan.activities}
    extra = {x.activity: x.deficits for x in proposal.add_deficits}
    completing = set(proposal.complete_activities)
    activities = []
    for a in plan.activities:
        if a.id in extra:
            known = {r.key for r in a.deficits}
            a = a.model_copy(
                update={"deficits": (*a.deficits, *(r for r in extra[a.id] if r.key not in known))}
            )
        if a.id in completing:
            a = a.model_copy(update={"status": "completed"})
        activities.append(a)
    activities.extend(a for a in proposal.add_activities if a.id not in have)
    have_goals = {g.id for g in plan.goals}
    by_goal = {u.goal: u for u in proposal.goal_updates}
    goals = []
    for g in plan.goals:
        u = by_goal.get(g.id)
        if u is not None:
            outcome = (*g.outcome, *u.evidence) if u.achievement == "achieved" else g.outcome
            g = g.model_copy(
                update={"achievement": u.achievement, "lifecycle": u.lifecycle, "outcome": outcome}
            )
        goals.append(g)
    goals.extend(g for g in proposal.add_goals if g.id not in have_goals)
    updated = plan.model_copy(update={"activities": tuple(activities), "goals": tuple(goals)})
    updated = updated.recorded(
        at=at,
        kind="reassessed",
        reason=proposal.reason,
        evidence=(proposal.evaluation, *(r.observation for a in proposal.add_activities for r in a.deficits)),
        by=by,
        trigger=proposal.evaluation,
    )
    return Outcome(updated, changed=True)


def screening_of(evaluation: EvaluationCompleted) -> Screening | None:
    """Fall-risk screening values of an evaluation: its ``screening`` (TUG, Berg), else its TUG / Berg
    deficits."""
    tug = evaluation.screening.tug if evaluation.screening else None
    berg = evaluation.screening.berg if evaluation.screening else None
    tug_s, tug_obs = (tug.value, tug.observation) if tug else (None, None)
    berg_v, berg_obs = (berg.value, berg.observation) if berg else (None, None)
    for d in evaluation.deficits:
        key = (d.code.code if d.code else d.measure).lower()
        if tug_s is None and d.measured is not None and (key in ("89423-8", "tug") or d.measure == "tug"):
            tug_s, tug_obs = d.measured, d.observation
        if (
            berg_v is None
            and d.measured is not None
            and (key.startswith("berg") or d.measure.startswith("berg"))
        ):
            berg_v, berg_obs = d.measured, d.observation
    if tug_s is None and berg_v is None:
        return None
    return Screening(
        tug_s=tug_s,
        berg=berg_v,
        tug_observation=tug_obs,
        berg_observation=berg_obs,
        evaluation=evaluation.evaluation,
    )
