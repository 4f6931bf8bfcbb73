"""Judging one logged performance against the current level's criteria, one criterion at a time.

Every criterion ends in one of five statuses, and every decision lists them (value, target, source, status):

- ``pass`` / ``fail``: measured, within / outside the target. A measured failure (the muscle produced no
  onset, activation below threshold: a metric with status ``not-detected``) is a failure, never "missing";
- ``missing``: nothing measured it in this session (or only ``not-computable`` metrics: no reference, no MVC).
  Missing evidence blocks mastery: the engine says what it is waiting for;
- ``pending``: the session's streams may still deliver it (until their metrics complete, or the wait ends);
- ``waived``: a therapist waived that criterion for the plan, with a reason that every decision repeats.

Device evidence is judged per muscle on the channels bound to that muscle, never averaged across channels or
windows: every measured value of the named muscle in the session must be within the target. An onset latency
counts only when it is timed against what the criterion says (a synergist, or the cue).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from relearn.plan.domain.inputs import DeviceMetricComputed, ExerciseLogged, SessionLogged
from relearn.plan.domain.patterns import MetricCheck, MovementPattern, Vocabulary
from relearn.plan.domain.rules import ProgressionRules, assistance_within, pain_zone, settled_by_next_day
from relearn.plan.domain.stages import Attempt
from relearn.plan.domain.state import (
    ActivityState,
    CriterionMuscles,
    CriterionResult,
    MetricEvidence,
    RomMeasure,
    SessionRecord,
    Waiver,
)

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
    """``value`` in ``to`` units; None when the unit is unknown (the value then is not evidence)."""
    if unit is None or unit == to or unit.replace("[", "").replace("]", "") == to:
        return value
    factor = _CONVERSIONS.get((unit, to))
    return None if factor is None else value * factor


def record_from_exercise(
    session: SessionLogged, exercise: ExerciseLogged, activity: ActivityState, wait_minutes: float
) -> SessionRecord:
    """The exercise as the activity's log keeps it, with the level and dose in force when it was done."""
    end = exercise.end or session.end or exercise.start or session.start
    rom = None
    if exercise.rom is not None:
        rom = RomMeasure(
            value_deg=exercise.rom.value_deg,
            method=exercise.rom.method,
            motion=exercise.rom.motion,
            observation=exercise.rom.observation,
        )
    return SessionRecord(
        session=session.session,
        procedure=exercise.procedure,
        start=exercise.start or session.start,
        end=end,
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
        retention_attempt=exercise.retention_attempt and not exercise.with_feedback,
        rom=rom,
        streams=exercise.device_streams,
        evidence_due=(end + timedelta(minutes=wait_minutes)) if exercise.device_streams and end else None,
    )


def metric_from_event(
    event: DeviceMetricComputed, vocabulary: Vocabulary, observation: str | None = None
) -> MetricEvidence | None:
    """The metric as mastery evidence, or None when no catalogue criterion uses that metric code."""
    kind = vocabulary.metric_kind(event.metric)
    if kind is None:
        return None
    status = event.status
    if status == "measured" and (event.value is None or not math.isfinite(event.value)):
        status = "not-computable"
    reference = event.reference
    return MetricEvidence(
        kind=kind,
        code=event.metric,
        value=event.value if status == "measured" else None,
        status=status,
        reason=event.reason,
        unit=event.unit,
        session=event.session,
        stream=event.stream,
        device=event.device,
        channel=event.channel,
        muscle=event.muscle,
        antagonist=event.antagonist,
        reference_kind=reference.kind if reference else None,
        reference_muscle=reference.muscle if reference else None,
        window_start=event.window.start,
        window_end=event.window.end,
        observation=observation,
    )


@dataclass(frozen=True)
class Assessment:
    criteria: tuple[CriterionResult, ...]
    pain_ok: bool
    flare_ok: bool | None  # None: the 24-hour response has not arrived

    def _with(self, *statuses: str) -> tuple[CriterionResult, ...]:
        return tuple(c for c in self.criteria if c.status in statuses)

    @property
    def failed(self) -> tuple[CriterionResult, ...]:
        return self._with("fail")

    @property
    def missing(self) -> tuple[CriterionResult, ...]:
        return self._with("missing")

    @property
    def pending(self) -> tuple[CriterionResult, ...]:
        return self._with("pending")

    @property
    def within_target(self) -> bool:
        return not self._with("fail", "missing", "pending")

    def _symptoms_ok(self, rules: ProgressionRules) -> bool:
        if not self.pain_ok:
            return False
        if self.flare_ok is None:
            return not rules.mastery.require_24h_response
        return self.flare_ok

    def qualifies(self, rules: ProgressionRules) -> bool:
        return self.within_target and self._symptoms_ok(rules)

    def qualifies_but_for_evidence(self, rules: ProgressionRules) -> bool:
        """Nothing failed; only missing (or pending) evidence stands between this session and mastery."""
        return not self.failed and self._symptoms_ok(rules)


def baseline_pain(activity: ActivityState, index: int) -> int | None:
    """The patient's pain before the session at ``index`` (or the latest one recorded before it)."""
    for record in reversed(activity.log[: index + 1]):
        if record.pain_before is not None:
            return record.pain_before
    return None


def _label(check: MetricCheck) -> str:
    if check.muscle and check.muscle not in check.label:
        return f"{check.label} of {check.muscle}"
    return check.label


def activity_checks(
    pattern: MovementPattern, muscles: Mapping[str, CriterionMuscles] | None = None
) -> tuple[MetricCheck, ...]:
    """The pattern's criteria with the muscles this plan exercise names instead, where it names any."""
    out = []
    for check in pattern.mastery.checks():
        chosen = (muscles or {}).get(check.kind)
        if chosen is None:
            out.append(check)
            continue
        muscle = chosen.muscle or check.muscle
        reference = chosen.reference_muscle or check.reference_muscle
        antagonist = chosen.antagonist or check.antagonist
        if check.kind == "co-contraction":
            label = f"co-contraction of {muscle}/{antagonist}"
        elif check.reference_kind == "synergist":
            label = f"EMG onset latency of {muscle} (relative to the synergist {reference})"
        else:
            label = f"{check.label.split(' of ')[0]} of {muscle}"
        out.append(
            check.model_copy(
                update={
                    "muscle": muscle,
                    "reference_muscle": reference,
                    "antagonist": antagonist,
                    "label": label,
                }
            )
        )
    return tuple(out)


def _target(check: MetricCheck) -> str:
    parts = []
    if check.minimum is not None:
        parts.append(f">= {check.minimum:g} {check.unit}")
    if check.maximum is not None:
        parts.append(f"<= {check.maximum:g} {check.unit}")
    text = " and ".join(parts)
    if check.reference_kind == "synergist":
        text += f" relative to the synergist {check.reference_muscle or ''}".rstrip()
    elif check.reference_kind == "cue":
        text += " relative to the cue"
    if check.antagonist:
        text += f" against {check.antagonist}"
    return text


def _matches(e: MetricEvidence, check: MetricCheck) -> bool:
    if e.kind != check.kind:
        return False
    if check.muscle is not None and e.muscle != check.muscle:
        return False
    if check.antagonist is not None and e.antagonist != check.antagonist:
        return False
    if check.reference_kind is not None and e.reference_kind != check.reference_kind:
        return False
    return check.reference_muscle is None or e.reference_muscle in (None, check.reference_muscle)


def _outside(check: MetricCheck, value: float) -> bool:
    return (check.minimum is not None and value < check.minimum) or (
        check.maximum is not None and value > check.maximum
    )


def _judge_check(record: SessionRecord, check: MetricCheck, waiver: Waiver | None) -> CriterionResult:
    base = {
        "criterion": check.kind,
        "label": _label(check),
        "muscle": check.muscle,
        "target": _target(check),
        "unit": check.unit,
    }
    if check.source == "session":
        rom = record.rom
        measured = [(rom.value_deg, rom.observation or record.procedure)] if rom is not None else []
        failed_detect: list[MetricEvidence] = []
        uncomputable: list[MetricEvidence] = []
    else:
        found = [e for e in record.metrics if _matches(e, check)]
        measured = []
        for e in found:
            if e.status == "measured" and e.value is not None:
                v = convert(e.value, e.unit, check.unit)
                if v is not None:
                    measured.append((v, e.observation))
        failed_detect = [e for e in found if e.status == "not-detected"]
        uncomputable = [e for e in found if e.status == "not-computable"]
    if failed_detect:
        e = failed_detect[0]
        result = CriterionResult(
            **base,
            value="not detected",
            source=e.observation,
            status="fail",
            note=e.reason or "the muscle produced no onset above the baseline threshold",
        )
    elif record.awaiting and check.source != "session" and not any(_outside(check, m[0]) for m in measured):
        result = CriterionResult(
            **base,
            value=round(measured[0][0], 3) if measured else None,
            status="pending",
            note=f"waiting for the metrics of {', '.join(record.awaiting)}",
        )
    elif measured:
        worst = max(measured, key=lambda m: _outside(check, m[0]))
        bad = [m for m in measured if _outside(check, m[0])]
        pick = bad[0] if bad else worst
        result = CriterionResult(
            **base,
            value=round(pick[0], 3),
            source=pick[1],
            status="fail" if bad else "pass",
            note=f"{len(measured)} measurement(s), each judged on its own" if len(measured) > 1 else None,
        )
    else:
        why = uncomputable[0].reason if uncomputable else None
        result = CriterionResult(
            **base,
            status="missing",
            source=uncomputable[0].observation if uncomputable else None,
            note=f"not computable: {why}" if why else "not measured in this session",
        )
    if waiver is not None and result.status in ("missing", "pending"):
        # A waiver stands in for evidence nobody can take here; a measured failure stays a failure.
        return result.model_copy(
            update={"status": "waived", "note": f"waived by {waiver.by}: {waiver.reason}"}
        )
    return result


def assess(
    record: SessionRecord,
    pattern: MovementPattern,
    rules: ProgressionRules,
    waivers: Sequence[Waiver] = (),
    baseline: int | None = None,
    muscles: Mapping[str, CriterionMuscles] | None = None,
) -> Assessment:
    m = rules.mastery
    source = record.procedure or record.session
    out: list[CriterionResult] = []

    def add(criterion: str, label: str, target: str, value: int | float | str | None, ok: bool) -> None:
        out.append(
            CriterionResult(
                criterion=criterion,
                label=label,
                target=target,
                value=value,
                source=source,
                status="pass" if ok else "fail",
            )
        )

    add(
        "sets",
        "sets done",
        f">= {record.prescribed_sets}",
        record.sets,
        record.sets >= record.prescribed_sets and len(record.reps) >= record.prescribed_sets,
    )
    target = record.target_reps or record.prescribed_reps
    needed = math.ceil(target * m.reps_fraction)
    add(
        "reps",
        "repetitions in every set",
        f">= {needed}",
        ", ".join(map(str, record.reps)),
        all(r >= needed for r in record.reps),
    )
    if record.quality is None:
        out.append(
            CriterionResult(
                criterion="quality",
                label="movement quality (therapist)",
                target=f">= {m.min_quality}/4",
                source=source,
                status="missing",
                note="not rated (home practice)",
            )
        )
    else:
        add(
            "quality",
            "movement quality (therapist)",
            f">= {m.min_quality}/4",
            record.quality,
            record.quality >= m.min_quality,
        )
    add(
        "assistance",
        "assistance",
        f"at most {m.max_assistance}",
        record.assistance,
        assistance_within(record.assistance, m.max_assistance),
    )
    below = [d.value for d, lvl in record.level.items() if lvl < record.plan_level.get(d, 0)]
    add(
        "level",
        "performed at the current level",
        "every dimension at the plan's level",
        "below on " + ", ".join(below) if below else "at level",
        not below,
    )
    waive_pattern = pattern.code
    for check in activity_checks(pattern, muscles):
        waiver = next((w for w in waivers if w.covers(waive_pattern, check.kind, check.muscle)), None)
        out.append(_judge_check(record, check, waiver))
    pain_ok = pain_zone(record.pain_after, rules, baseline) == "safe" and (
        record.pain_24h is None
        or (
            pain_zone(record.pain_24h, rules, baseline) == "safe"
            and settled_by_next_day(record.pain_24h, rules, baseline)
        )
    )
    flare_ok = None if record.flare is None else not record.flare
    return Assessment(tuple(out), pain_ok, flare_ok)


def record_evidence(record: SessionRecord) -> tuple[str, ...]:
    refs = [record.session]
    if record.rom is not None and record.rom.observation:
        refs.append(record.rom.observation)
    refs.extend(e.observation for e in record.metrics if e.observation)
    return tuple(dict.fromkeys(refs))


def attempt(
    record: SessionRecord,
    pattern: MovementPattern,
    rules: ProgressionRules,
    waivers: Sequence[Waiver] = (),
    baseline: int | None = None,
    muscles: Mapping[str, CriterionMuscles] | None = None,
) -> Attempt:
    a = assess(
        record,
        pattern,
        rules,
        waivers,
        record.pain_before if record.pain_before is not None else baseline,
        muscles,
    )
    return Attempt(
        session=record.session,
        start=record.start,
        end=record.end,
        qualifies=a.qualifies(rules),
        qualifies_but_for_evidence=a.qualifies_but_for_evidence(rules),
        with_feedback=record.with_feedback,
        dual_task=record.dual_task,
        dual_task_cost_pct=record.dual_task_cost_pct,
        retention_attempt=record.retention_attempt,
        self_rating=record.self_rating,
        quality=record.quality,
        evidence=record_evidence(record),
        criteria=a.criteria,
    )
