"""One CarePlan version per decision.

The engine records one plan change per event, however many decisions it took (a stage change and an advance
from the same 24-hour response). Readers of the plan's events keep only an event whose ``versionId`` is newer
than the last they saw, and an EHR reads the CarePlan history, so each decision becomes its own version here:
version ``k`` shows the plan with decisions ``1..k`` applied, its own reason and its own evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

from relearn.plan.domain.progression import change_kind
from relearn.plan.domain.stages import CompetenceStage
from relearn.plan.domain.state import ActivityState, ChangeKind, ChangeNote, Decision, PlanChange, PlanState


@dataclass(frozen=True)
class PlanVersion:
    """One version to write: the plan as it stands at that version, and the decision it carries (if any)."""

    plan: PlanState
    decision: Decision | None


def _kind(change: PlanChange, decision: Decision) -> ChangeKind:
    if change.kind in ("progressed", "symptoms", "held"):
        return change_kind([decision])
    return change.kind


def _partial(
    before: ActivityState | None, after: ActivityState, applied: tuple[Decision, ...], change: PlanChange
) -> ActivityState:
    """``after`` with only ``applied`` of its decisions visible in level, stage, dose and latest change."""
    if before is None:
        return after
    levels = dict(before.levels)
    stage, dose, note = before.stage, before.dose, before.last_change
    for d in applied:
        if d.kind in ("advance", "regress") and d.dimension is not None and isinstance(d.to_value, int):
            levels[d.dimension] = d.to_value
        elif d.kind == "stage-change" and isinstance(d.to_value, str):
            stage = CompetenceStage(d.to_value)
        elif d.kind == "dose-change":
            dose = after.dose  # at most one dose change per activity and event: the final dose
        note = ChangeNote(at=change.at, reason=d.reason, evidence=d.evidence)
    return after.model_copy(update={"levels": levels, "stage": stage, "dose": dose, "last_change": note})


def split_versions(before: PlanState, after: PlanState) -> list[PlanVersion]:
    """The versions that take ``before`` to ``after`` (whose latest change may hold several decisions).

    The last version's plan is ``after`` itself with the history split per decision and the version counted
    on; persist that one. Nothing changed (same version): no versions.
    """
    change = after.latest_change
    if change is None or after.version == before.version:
        return []
    if after.version != before.version + 1:
        raise ValueError(f"plan {after.id}: expected one change after version {before.version}")
    decisions = change.decisions
    if len(decisions) <= 1:
        return [PlanVersion(after, decisions[0] if decisions else None)]
    previous = {a.id: a for a in before.activities}
    history = list(before.history)
    versions: list[PlanVersion] = []
    for k, decision in enumerate(decisions, start=1):
        applied = decisions[:k]
        history.append(
            PlanChange(
                version=before.version + k,
                at=change.at,
                kind=_kind(change, decision),
                reason=decision.reason,
                evidence=decision.evidence,
                by=change.by,
                trigger=change.trigger,
                decisions=(decision,),
            )
        )
        activities = tuple(
            a
            if k == len(decisions) or all(d.activity != a.id for d in decisions)
            else _partial(previous.get(a.id), a, tuple(d for d in applied if d.activity == a.id), change)
            for a in after.activities
        )
        plan = after.model_copy(
            update={"activities": activities, "version": before.version + k, "history": tuple(history)}
        )
        versions.append(PlanVersion(plan, decision))
    return versions
