"""Events in and out of the plan service (docs/events.md): models read, ``data`` published, outbox staging.

In: ``evaluation.completed.v1`` / ``evaluation.reassessed.v1``, ``session.logged.v1``,
``session.symptoms-recorded.v1``, ``device.metric-computed.v1`` and ``device.stream-metrics-completed.v1``,
read by :func:`decode` into the models of :mod:`relearn.plan.domain.inputs` (the progression engine's inputs,
so the domain never imports this module).

Out, one event per plan version: ``{carePlan, versionId, patient, activity?, pattern?, dimension?, from?, to?,
stage?, reason, evidence}``; every event also carries ``activities[]`` (id, pattern, side, level, stage, dose,
status, cpt) so the sessions service can keep its read model of active plans. ``versionId`` is the CarePlan
version the store assigned to the write carrying the change (an integer, as the store counts).
Every plan event also carries ``goals[]``: the Goals this plan version wrote (created or changed), each
``{goal, versionId, lifecycleStatus, achievementStatus, achieved}`` where ``achieved`` is true when this
version marked the goal achieved (the subscriptions service's goal-achieved topic reads it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlmodel import Session

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.inputs import DeviceMetricComputed as DeviceMetricComputed
from relearn.plan.domain.inputs import EvaluationCompleted as EvaluationCompleted
from relearn.plan.domain.inputs import SessionLogged as SessionLogged
from relearn.plan.domain.inputs import StreamMetricsCompleted as StreamMetricsCompleted
from relearn.plan.domain.inputs import SymptomsRecorded as SymptomsRecorded
from relearn.plan.domain.inputs import TrialSummarized as TrialSummarized
from relearn.plan.domain.patterns import Dimension
from relearn.plan.domain.procedure_codes import cpt_code
from relearn.plan.domain.state import ActivityState, Decision, GoalState, PlanState
from relearn.shared.events import CloudEvent, stage

EVALUATION_COMPLETED = "evaluation.completed.v1"
EVALUATION_REASSESSED = "evaluation.reassessed.v1"
SESSION_LOGGED = "session.logged.v1"
SYMPTOMS_RECORDED = "session.symptoms-recorded.v1"
METRIC_COMPUTED = "device.metric-computed.v1"  # no longer produced; events in the log are still read
TRIAL_SUMMARIZED = "device.trial-summarized.v1"
STREAM_METRICS_COMPLETED = "device.stream-metrics-completed.v1"

_In = TypeVar("_In", bound=BaseModel)


def decode(event: CloudEvent, model: type[_In]) -> _In:
    """The event's ``data`` read as ``model`` (unknown fields ignored; a bad payload raises for the DLQ)."""
    return model.model_validate(event.data)


SOURCE = "/relearn/plan"
PLAN_DRAFTED = "plan.drafted.v1"
PLAN_ACTIVATED = "plan.activated.v1"
PLAN_PROGRESSED = "plan.progressed.v1"
PLAN_STAGE_CHANGED = "plan.stage-changed.v1"
PLAN_UPDATED = "plan.updated.v1"
PLAN_DISCHARGED = "plan.discharged.v1"


def activity_data(activity: ActivityState) -> dict[str, Any]:
    d = activity.dose
    return {
        "id": activity.id,
        "serviceRequest": f"ServiceRequest/{activity.id}",
        "pattern": activity.pattern,
        "side": activity.side,
        "status": activity.status,
        "level": {dim.value: activity.levels.get(dim, 0) for dim in Dimension},
        "stage": activity.stage.value,
        "dose": {
            "sets": d.sets,
            "reps": d.reps,
            "holdSeconds": d.hold_s,
            "restSeconds": d.rest_s,
            "frequencyPerWeek": d.frequency_per_week,
            "loadKg": d.load_kg,
        },
    }


def _base(plan: PlanState, version_id: int, reason: str, evidence: Iterable[str]) -> dict[str, Any]:
    return {
        "carePlan": plan.reference,
        "versionId": version_id,
        "patient": plan.patient,
        "status": plan.status,
        "reason": reason,
        "evidence": list(dict.fromkeys(evidence)),
        # What made this version (drafted, reassessed, discharged, progressed, ...): the plan-change kind.
        "change": plan.latest_change.kind if plan.latest_change else None,
    }


def _with_activities(data: dict[str, Any], plan: PlanState) -> dict[str, Any]:
    return {**data, "activities": [activity_data(a) for a in plan.activities]}


def _latest(plan: PlanState) -> tuple[str, tuple[str, ...]]:
    change = plan.latest_change
    return (change.reason, change.evidence) if change else ("", ())


def plan_drafted(plan: PlanState, *, version_id: int) -> dict[str, Any]:
    reason, evidence = _latest(plan)
    return _with_activities(_base(plan, version_id, reason, evidence), plan)


def plan_activated(plan: PlanState, *, version_id: int) -> dict[str, Any]:
    reason, evidence = _latest(plan)
    return _with_activities(_base(plan, version_id, reason, evidence), plan)


def plan_discharged(plan: PlanState, *, version_id: int) -> dict[str, Any]:
    """The plan completed at discharge, with each goal's verdict (``goals[]``: id, goal, achievement)."""
    reason, evidence = _latest(plan)
    data = _with_activities(_base(plan, version_id, reason, evidence), plan)
    data["goals"] = [
        {"id": g.id, "goal": f"Goal/{g.id}", "description": g.description, "achievement": g.achievement}
        for g in plan.goals
    ]
    return data


def plan_updated(
    plan: PlanState, *, version_id: int, reason: str | None = None, evidence: Iterable[str] | None = None
) -> dict[str, Any]:
    latest_reason, latest_evidence = _latest(plan)
    data = _base(plan, version_id, reason or latest_reason, latest_evidence if evidence is None else evidence)
    return _with_activities(data, plan)


def _decision_data(plan: PlanState, decision: Decision, version_id: int) -> dict[str, Any]:
    activity = plan.find_activity(decision.activity)
    # The snapshot rides along: several decisions share one CarePlan version, and a read model that keeps
    # only the first event per version still ends up with every level and stage.
    data = _with_activities(_base(plan, version_id, decision.reason, decision.evidence), plan)
    data |= {
        "activity": decision.activity,
        "pattern": decision.pattern,
        "kind": decision.kind,
        "dimension": decision.dimension.value if decision.dimension else None,
        "from": decision.from_value,
        "to": decision.to_value,
        "stage": activity.stage.value if activity else None,
    }
    if activity is not None:
        data["level"] = activity_data(activity)["level"]
    if decision.override is not None:
        data["override"] = {"by": decision.override.by, "reason": decision.override.reason}
    if decision.criteria:
        data["criteria"] = [c.model_dump(mode="json", by_alias=True) for c in decision.criteria]
    if decision.task:
        data["task"] = decision.task
    return data


def plan_progressed(plan: PlanState, decision: Decision, *, version_id: int) -> dict[str, Any]:
    """An advance or a regression along one dimension."""
    return _decision_data(plan, decision, version_id)


def plan_stage_changed(plan: PlanState, decision: Decision, *, version_id: int) -> dict[str, Any]:
    return _decision_data(plan, decision, version_id)


def events_for(
    plan: PlanState, decisions: Iterable[Decision], *, version_id: int
) -> list[tuple[str, dict[str, Any]]]:
    """The events of one new plan version: progressed / stage-changed per decision; holds and dose changes in
    one ``plan.updated.v1`` (with the activities, whose dose may have changed)."""
    events: list[tuple[str, dict[str, Any]]] = []
    others: list[Decision] = []
    for d in decisions:
        if d.kind in ("advance", "regress"):
            events.append((PLAN_PROGRESSED, plan_progressed(plan, d, version_id=version_id)))
        elif d.kind == "stage-change":
            events.append((PLAN_STAGE_CHANGED, plan_stage_changed(plan, d, version_id=version_id)))
        else:
            others.append(d)
    if others:
        data = plan_updated(
            plan,
            version_id=version_id,
            reason="; ".join(d.reason for d in others),
            evidence=[ref for d in others for ref in d.evidence],
        )
        criteria = [c.model_dump(mode="json", by_alias=True) for d in others for c in d.criteria]
        if criteria:
            data["criteria"] = criteria
        tasks = [d.task for d in others if d.task]
        if tasks:
            data["tasks"] = tasks
        events.append((PLAN_UPDATED, data))
    return events


def plan_overridden(plan: PlanState, decision: Decision, *, version_id: int) -> dict[str, Any]:
    """A therapist's override of an activity (level, stage or dose): ``plan.updated.v1`` with ``override``."""
    return _decision_data(plan, decision, version_id)


def version_event(plan: PlanState, decision: Decision | None) -> tuple[str, dict[str, Any]]:
    """The one event of one CarePlan version (``plan.version`` is its ``versionId``)."""
    v = plan.version
    if decision is None:
        kind = plan.latest_change.kind if plan.latest_change else "drafted"
        if kind == "drafted":
            return PLAN_DRAFTED, plan_drafted(plan, version_id=v)
        if kind == "activated":
            return PLAN_ACTIVATED, plan_activated(plan, version_id=v)
        if kind == "discharged":
            return PLAN_DISCHARGED, plan_discharged(plan, version_id=v)
        return PLAN_UPDATED, plan_updated(plan, version_id=v)
    if decision.override is not None:
        return PLAN_UPDATED, plan_overridden(plan, decision, version_id=v)
    [event] = events_for(plan, [decision], version_id=v)
    return event


def with_procedure_codes(data: dict[str, Any], plan: PlanState, catalogue: Catalogue) -> dict[str, Any]:
    """Each activity of the snapshot with ``cpt``: the CPT code of its current form
    (:mod:`relearn.plan.domain.procedure_codes`), which the sessions service puts on its Procedures."""
    activities = data.get("activities")
    if not activities:
        return data
    by_id = {a.id: a for a in plan.activities}
    coded = []
    for a in activities:
        state = by_id.get(a["id"])
        pattern = catalogue.find(state.pattern) if state is not None else None
        coded.append(a | {"cpt": cpt_code(pattern, state.levels)} if pattern and state else a)
    return data | {"activities": coded}


@dataclass(frozen=True)
class GoalVersion:
    """A Goal written with a plan version: the version the store gave it, and whether this version marked it
    achieved (it was not before)."""

    goal: GoalState
    version_id: int
    achieved: bool


def goals_data(goals: Sequence[GoalVersion]) -> list[dict[str, Any]]:
    return [
        {
            "goal": f"Goal/{g.goal.id}",
            "versionId": g.version_id,
            "lifecycleStatus": g.goal.lifecycle,
            "achievementStatus": g.goal.achievement,
            "achieved": g.achieved,
        }
        for g in goals
    ]


def stage_version(
    session: Session,
    plan: PlanState,
    decision: Decision | None,
    catalogue: Catalogue | None = None,
    goals: Sequence[GoalVersion] = (),
) -> CloudEvent:
    """Stage the one event of this plan version in the outbox (same transaction as the version), with the
    Goals the version wrote (``goals[]``)."""
    event_type, data = version_event(plan, decision)
    if catalogue is not None:
        data = with_procedure_codes(data, plan, catalogue)
    written = {g["goal"]: g for g in goals_data(goals)}
    if "goals" in data:  # discharge: every goal with its verdict, and the version written where there is one
        data["goals"] = [g | written.get(g["goal"], {}) for g in data["goals"]]
    else:
        data["goals"] = list(written.values())
    event = CloudEvent.new(SOURCE, event_type, plan.patient, data)
    stage(session, event)
    return event
