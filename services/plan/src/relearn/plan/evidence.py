"""Judging one logged performance against the pattern's mastery criteria and the plan's rules.

A session is *within target* when every prescribed set reached the prescribed reps, the therapist rated the
movement quality high enough, assistance was light enough, it was done at (or above) the current level, and
every device criterion that was measured in that session is met. It *qualifies* for mastery when, in addition,
pain stayed in the safe zone and the 24-hour response shows no flare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from relearn.plan.inbound import DeviceMetricComputed, ExerciseLogged, SessionLogged
from relearn.plan.patterns import MetricCheck, MovementPattern, Vocabulary
from relearn.plan.rules import ProgressionRules, assistance_within
from relearn.plan.stages import Attempt
from relearn.plan.state import ActivityState, MetricEvidence, SessionRecord

# Unit conversions for device metrics whose unit differs from the criterion's.
_CONVERSIONS: dict[tuple[str, str], float] = {
    ("s", "ms"): 1000.0,
    ("ms", "s"): 0.001,
    ("mm2", "cm2"): 0.01,
    ("m2", "cm2"): 10000.0,
    ("mm/s", "cm/s"): 0.1,
    ("m/s", "cm/s"): 100.0,
    ("1", "%"): 100.0,
    ("rad", "deg"): 180.0 / math.pi,
}


def convert(value: float, unit: str | None, to: str) -> float | None:
    """``value`` in ``to`` units; None when the unit is unknown (the criterion is then not assessed)."""
    if unit is None or unit == to or unit.replace("[", "").replace("]", "") == to:
        return value
    factor = _CONVERSIONS.get((unit, to))
    return None if factor is None else value * factor


def record_from_exercise(
    session: SessionLogged, exercise: ExerciseLogged, activity: ActivityState
) -> SessionRecord:
    """The exercise as the activity's log keeps it, with the level and dose in force when it was done."""
    return SessionRecord(
        session=session.session,
        procedure=exercise.procedure,
        start=exercise.start or session.start,
        end=exercise.end or session.end or exercise.start or session.start,
        level=dict(exercise.level),
        plan_level=dict(activity.levels),
        prescribed_sets=activity.dose.sets,
        prescribed_reps=activity.dose.reps,
        sets=exercise.sets,
        reps=exercise.reps,
        target_reps=exercise.target_reps,
        load_kg=exercise.load_kg,
        assistance=exercise.assistance,
        quality=exercise.quality,
        self_rating=exercise.self_rating,
        pain_before=exercise.pain_before,
        pain_after=exercise.pain_after,
        with_feedback=exercise.with_feedback,
        dual_task=exercise.dual_task,
        dual_task_cost_pct=exercise.dual_task_cost_pct if exercise.dual_task else None,
        streams=exercise.device_streams,
    )


def metric_from_event(
    event: DeviceMetricComputed, vocabulary: Vocabulary, observation: str | None = None
) -> MetricEvidence | None:
    """The metric as mastery evidence, or None when no catalogue criterion uses that metric code."""
    kind = vocabulary.metric_kind(event.metric)
    if kind is None or event.value is None:
        return None
    return MetricEvidence(
        kind=kind,
        code=event.metric,
        value=event.value,
        unit=event.unit,
        session=event.session,
        stream=event.stream,
        device=event.device,
        channel=event.channel,
        window_start=event.window.start,
        window_end=event.window.end,
        observation=observation,
    )


@dataclass(frozen=True)
class Assessment:
    within_target: bool
    pain_ok: bool
    flare_ok: bool | None  # None: the 24-hour response has not arrived
    shortfalls: tuple[str, ...]

    def qualifies(self, rules: ProgressionRules) -> bool:
        if not (self.within_target and self.pain_ok):
            return False
        if self.flare_ok is None:
            return not rules.mastery.require_24h_response
        return self.flare_ok


def _check_metric(check: MetricCheck, values: list[float]) -> str | None:
    # Judged on the session's mean value for that metric (several windows may have been computed).
    mean = sum(values) / len(values)
    if check.minimum is not None and mean < check.minimum:
        return f"{check.label} {mean:g} {check.unit} below {check.minimum:g}"
    if check.maximum is not None and mean > check.maximum:
        return f"{check.label} {mean:g} {check.unit} above {check.maximum:g}"
    return None


def assess(record: SessionRecord, pattern: MovementPattern, rules: ProgressionRules) -> Assessment:
    m = rules.mastery
    shortfalls: list[str] = []
    target = record.target_reps or record.prescribed_reps
    needed = math.ceil(target * m.reps_fraction)
    if record.sets < record.prescribed_sets or len(record.reps) < record.prescribed_sets:
        shortfalls.append(f"{record.sets} of {record.prescribed_sets} sets")
    short_sets = [r for r in record.reps if r < needed]
    if short_sets:
        shortfalls.append(f"sets of {', '.join(map(str, short_sets))} reps below {needed}")
    if record.quality is None:
        shortfalls.append("movement quality not rated")
    elif record.quality < m.min_quality:
        shortfalls.append(f"quality {record.quality}/4 below {m.min_quality}")
    if not assistance_within(record.assistance, m.max_assistance):
        shortfalls.append(f"{record.assistance} assistance (at most {m.max_assistance})")
    below = [d.value for d, lvl in record.level.items() if lvl < record.plan_level.get(d, 0)]
    if below:
        shortfalls.append(f"performed below the current level on {', '.join(below)}")
    for check in pattern.mastery.checks():
        values = [
            v
            for v in (convert(e.value, e.unit, check.unit) for e in record.metrics if e.kind == check.kind)
            if v is not None
        ]
        if not values:
            if m.require_device_metrics:
                shortfalls.append(f"{check.label} not measured")
            continue
        failed = _check_metric(check, values)
        if failed:
            shortfalls.append(failed)
    pain_ok = record.pain_after <= m.max_pain and (record.pain_24h is None or record.pain_24h <= m.max_pain)
    flare_ok = None if record.flare is None else not record.flare
    return Assessment(not shortfalls, pain_ok, flare_ok, tuple(shortfalls))


def record_evidence(record: SessionRecord) -> tuple[str, ...]:
    refs = [record.session]
    refs.extend(e.observation for e in record.metrics if e.observation)
    return tuple(dict.fromkeys(refs))


def attempt(record: SessionRecord, pattern: MovementPattern, rules: ProgressionRules) -> Attempt:
    return Attempt(
        session=record.session,
        start=record.start,
        end=record.end,
        qualifies=assess(record, pattern, rules).qualifies(rules),
        with_feedback=record.with_feedback,
        dual_task=record.dual_task,
        dual_task_cost_pct=record.dual_task_cost_pct,
        self_rating=record.self_rating,
        quality=record.quality,
        evidence=record_evidence(record),
    )


def consecutive_successes(activity: ActivityState, pattern: MovementPattern, rules: ProgressionRules) -> int:
    """How many sessions in a row, at the current level, qualify for mastery (most recent backwards)."""
    n = 0
    for record in reversed(activity.log[activity.level_since :]):
        if record.quality is None:
            continue  # home practice, not rated: neither counts nor breaks the run
        if not assess(record, pattern, rules).qualifies(rules):
            break
        n += 1
    return n
