"""The plan as the progression engine holds it: immutable, JSON-serialisable, one version per change.

The lead persists :class:`PlanState` as JSON (``model_dump_json`` / ``model_validate_json``) next to the FHIR
resources mapped from it (:mod:`relearn.plan.mapper`). Every change that an EHR should see bumps
``version`` and appends a :class:`PlanChange` with its reason, evidence and decisions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from relearn.plan.domain.patterns import Dimension, DoseDefaults
from relearn.plan.domain.stages import CompetenceStage

PlanStatus = Literal["draft", "active", "on-hold", "revoked", "completed", "entered-in-error"]
ActivityStatus = Literal["active", "on-hold", "completed", "cancelled"]
Side = Literal["left", "right", "bilateral"]
DecisionKind = Literal["advance", "hold", "regress", "stage-change", "dose-change", "task"]
MetricStatus = Literal["measured", "not-detected", "not-computable"]
CriterionStatus = Literal["pass", "fail", "missing", "waived", "pending"]
TaskStatus = Literal["requested", "completed", "rejected", "cancelled"]
TaskKind = Literal["approve-advance", "review-failed-advance"]
ChangeKind = Literal[
    "drafted",
    "activated",
    "progressed",
    "symptoms",
    "override",
    "edited",
    "reassessed",
    "rules",
    "status",
    "waiver",
    "task",
    "held",
    "discharged",
]
GoalLifecycle = Literal["proposed", "active", "completed", "cancelled"]
GoalAchievement = Literal["in-progress", "improving", "worsening", "no-change", "achieved", "not-achieved"]
Comparator = Literal["<", "<=", ">=", ">"]


class PlanError(ValueError):
    """An edit the plan cannot take (unknown activity, level off the ladder, wrong status ...)."""


class StateModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class Dose(StateModel):
    sets: int = Field(ge=1, le=50)
    reps: int = Field(ge=1, le=1000)
    hold_s: float = Field(default=0, ge=0, le=600)
    rest_s: float = Field(default=60, ge=0, le=1800)
    frequency_per_week: int = Field(ge=1, le=21)
    load_kg: float = Field(default=0, ge=0, le=500)

    @classmethod
    def from_defaults(cls, d: DoseDefaults) -> Dose:
        return cls(
            sets=d.sets,
            reps=d.reps,
            hold_s=d.hold_s,
            rest_s=d.rest_s,
            frequency_per_week=d.frequency_per_week,
        )

    def text(self) -> str:
        parts = [f"{self.sets} x {self.reps}"]
        if self.hold_s:
            parts.append(f"hold {self.hold_s:g} s")
        if self.load_kg:
            parts.append(f"{self.load_kg:g} kg")
        parts.append(f"rest {self.rest_s:g} s")
        parts.append(f"{self.frequency_per_week}/week")
        return ", ".join(parts)


class MetricEvidence(StateModel):
    """A device metric (or measured value) that counts as evidence for a mastery criterion."""

    kind: str = Field(
        description="catalogue metric kind: rom, emg-onset-latency, co-contraction, sway-area, ..."
    )
    code: str = Field(description="the metric code as published")
    value: float | None = Field(default=None, description="None unless status is measured")
    status: MetricStatus = "measured"
    reason: str | None = Field(default=None, description="why it is not-detected / not-computable")
    unit: str | None = None
    session: str | None = None
    stream: str | None = None
    device: str | None = None
    channel: str | None = Field(default=None, description="the sensor channel (EMG muscle), when per channel")
    muscle: str | None = Field(default=None, description="SENIAM muscle the channel is bound to")
    antagonist: str | None = Field(default=None, description="co-contraction: the antagonist muscle")
    reference_kind: str | None = Field(default=None, description="onset latency: synergist or cue")
    reference_muscle: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    observation: str | None = Field(default=None, description="Observation/<id> that stores it, when known")

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """Identity of one metric window of one channel: a replay replaces rather than adds."""
        start = self.window_start.isoformat() if self.window_start else ""
        end = self.window_end.isoformat() if self.window_end else ""
        return (self.stream or self.device or self.session or "", self.channel or "", self.code, start, end)


class RomMeasure(StateModel):
    """Active range of motion achieved in one exercise (goniometer, inclinometer or device)."""

    value_deg: float = Field(ge=0, le=360)
    method: str | None = None
    motion: str | None = None
    observation: str | None = Field(default=None, description="Observation/<id> that stores it")


class SessionRecord(StateModel):
    """One session's performance of one activity, with what arrived later (24-h response, metrics)."""

    session: str = Field(description="Encounter/<id>; home practice: the Procedure/<id> of its exercise")
    procedure: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    level: dict[Dimension, int] = Field(default_factory=dict, description="the level stated for the session")
    plan_level: dict[Dimension, int] = Field(default_factory=dict, description="the plan's level at the time")
    prescribed_sets: int = Field(ge=1, description="the plan's dose at the time")
    prescribed_reps: int = Field(ge=1)
    sets: int
    reps: tuple[int, ...]
    target_reps: int | None = None
    load_kg: float = 0
    assistance: str = "none"
    quality: int | None = Field(default=None, description="therapist's rating 0-4; None for home practice")
    self_rating: int | None = None
    pain_before: int | None = None
    pain_after: int
    with_feedback: bool
    dual_task: bool = False
    dual_task_cost_pct: float | None = Field(
        default=None, description="computed by the sessions service from paired single/dual measurements"
    )
    retention_attempt: bool = Field(default=False, description="marked as a feedback-free retention attempt")
    rom: RomMeasure | None = None
    streams: tuple[str, ...] = ()
    streams_complete: tuple[str, ...] = Field(
        default=(), description="streams whose metrics have all arrived (device.stream-metrics-completed.v1)"
    )
    evidence_due: datetime | None = Field(
        default=None, description="until when a decision waits for the metrics of the session's streams"
    )
    evidence_timed_out: bool = Field(
        default=False, description="the wait ended: what has not arrived is judged missing"
    )
    metrics: tuple[MetricEvidence, ...] = ()
    pain_24h: int | None = None
    flare: bool | None = None
    symptoms_at: datetime | None = None
    regressed: bool = Field(default=False, description="this session already caused a regression")

    @property
    def at(self) -> datetime | None:
        return self.end or self.start

    @property
    def awaiting(self) -> tuple[str, ...]:
        """Streams whose metrics may still arrive (none once the wait has timed out)."""
        if self.evidence_timed_out:
            return ()
        return tuple(s for s in self.streams if s not in self.streams_complete)


class CriterionResult(StateModel):
    """One criterion of the current level as judged on one session: what was measured against what target."""

    criterion: str = Field(
        description="criterion key: sets, reps, quality, assistance, level, pain, rom, ..."
    )
    session: str | None = Field(
        default=None, description="the session (Encounter; home practice: Procedure) it was judged on"
    )
    label: str
    muscle: str | None = None
    target: str
    value: int | float | str | None = None
    unit: str | None = None
    source: str | None = Field(default=None, description="Observation/<id> (or Procedure/Encounter) used")
    status: CriterionStatus
    note: str | None = None


class Waiver(StateModel):
    """A therapist's decision that a criterion is not required for a pattern of this plan (recorded)."""

    pattern: str | None = Field(default=None, description="None: every pattern of the plan")
    criterion: str = Field(description="criterion key, e.g. emg-onset-latency, rom, co-contraction")
    muscle: str | None = Field(default=None, description="None: the criterion for every muscle")
    reason: str = Field(min_length=3, max_length=1000)
    by: str
    at: datetime

    def covers(self, pattern: str, criterion: str, muscle: str | None) -> bool:
        return (
            (self.pattern is None or self.pattern == pattern)
            and self.criterion == criterion
            and (self.muscle is None or self.muscle == muscle)
        )


class Screening(StateModel):
    """Fall-risk screening values of the last evaluation (TUG in s, Berg Balance Scale score)."""

    tug_s: float | None = None
    berg: float | None = None
    tug_observation: str | None = None
    berg_observation: str | None = None
    evaluation: str | None = None


class ProposedStep(StateModel):
    dimension: Dimension
    from_level: int
    to_level: int


class TaskState(StateModel):
    """A question for the therapist (published as a FHIR Task): approve an advance, review a failing one."""

    id: str
    activity: str
    pattern: str
    kind: TaskKind
    status: TaskStatus = "requested"
    reason: str
    proposed: ProposedStep | None = None
    evidence: tuple[str, ...] = ()
    created: datetime
    resolved: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None


class ChangeRef(StateModel):
    """One change the engine made to an activity (an advance or a load increase), for regressions to undo."""

    kind: Literal["advance", "load"]
    dimension: Dimension | None = None
    from_value: float = Field(alias="from")
    to_value: float = Field(alias="to")
    sessions: tuple[str, ...] = Field(default=(), description="the sessions whose evidence justified it")


class OverrideInfo(StateModel):
    by: str
    reason: str


class Decision(StateModel):
    """One thing the engine (or a therapist) changed on one activity, with why and on what evidence."""

    activity: str
    pattern: str
    kind: DecisionKind
    dimension: Dimension | None = None
    from_value: int | float | str | None = Field(default=None, alias="from")
    to_value: int | float | str | None = Field(default=None, alias="to")
    reason: str
    evidence: tuple[str, ...] = ()
    criteria: tuple[CriterionResult, ...] = Field(
        default=(), description="each criterion the decision used: value, target, source, status"
    )
    task: str | None = Field(default=None, description="Task/<id> raised for the therapist")
    cause: Literal["symptoms"] | None = Field(
        default=None,
        description="symptoms: the decision answers pain or a flare (the version's kind says so)",
    )
    override: OverrideInfo | None = None


class DeficitRef(StateModel):
    """A deficit found at evaluation, as the plan remembers it (for goals and re-assessment)."""

    measure: str = Field(description="system|code of the measure")
    display: str | None = None
    side: Side | None = None
    qualifier: str = Field(default="", description="muscle group / test conditions")
    observation: str
    measured: float | None = None
    unit: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.measure, self.side or "", self.qualifier)


class GoalTarget(StateModel):
    measure_system: str | None = None
    measure_code: str | None = None
    measure_display: str | None = None
    side: Side | None = None
    qualifier: str = ""
    comparator: Comparator | None = None
    value: float | None = None
    unit: str | None = None
    due: date | None = None
    baseline: float | None = None
    deficit: str | None = Field(default=None, description="Observation/<id> of the deficit it comes from")

    @property
    def key(self) -> tuple[str, str, str] | None:
        if self.measure_code is None:
            return None
        return (f"{self.measure_system or ''}|{self.measure_code}", self.side or "", self.qualifier)


class GoalState(StateModel):
    id: str
    description: str
    source: Literal["patient", "clinician"]
    targets: tuple[GoalTarget, ...] = ()
    addresses: tuple[str, ...] = ()
    lifecycle: GoalLifecycle = "proposed"
    achievement: GoalAchievement = "in-progress"
    start: date | None = None
    outcome: tuple[str, ...] = Field(default=(), description="evidence of achievement (Observation refs)")


class ReferralRef(StateModel):
    reference: str = Field(description="Condition/<id>, or the Observation that records the condition")
    text: str | None = None


class ChangeNote(StateModel):
    at: datetime
    reason: str
    evidence: tuple[str, ...] = ()


class CriterionMuscles(StateModel):
    """A plan exercise's own choice of muscles for one EMG criterion, over the catalogue pattern's."""

    muscle: str | None = Field(default=None, description="the trained muscle the criterion judges")
    reference_muscle: str | None = Field(default=None, description="onset latency: the synergist")
    antagonist: str | None = Field(default=None, description="co-contraction: the antagonist")


class ActivityState(StateModel):
    id: str = Field(description="CarePlan.activity id = ServiceRequest id")
    pattern: str
    side: Side | None = None
    status: ActivityStatus = "active"
    levels: dict[Dimension, int]
    stage: CompetenceStage = CompetenceStage.UNCONSCIOUS_INCOMPETENCE
    dose: Dose
    deficits: tuple[DeficitRef, ...] = ()
    goals: tuple[str, ...] = Field(default=(), description="Goal ids this activity serves")
    log: tuple[SessionRecord, ...] = ()
    level_since: int = Field(default=0, description="index into log where the current level began")
    dose_since: int = Field(default=0, description="index into log where the current load began")
    stage_since: int = Field(default=0, description="index into log where the current stage began")
    advanced: tuple[Dimension, ...] = Field(default=(), description="dimensions advanced, most recent last")
    changes: tuple[ChangeRef, ...] = Field(
        default=(), description="advances and load increases not undone yet, most recent last"
    )
    failed_advances: dict[str, int] = Field(
        default_factory=dict, description="'<dimension>:<level>' -> times symptoms undid that advance"
    )
    hold: str | None = Field(default=None, description="the reason of the hold in force, if any")
    mastered: bool = Field(
        default=False, description="unconscious competence was reached at some level (kept after re-entry)"
    )
    muscles: dict[str, CriterionMuscles] = Field(
        default_factory=dict, description="criterion kind -> the muscles this exercise judges it on"
    )
    last_change: ChangeNote | None = None

    @property
    def sessions(self) -> tuple[str, ...]:
        """The sessions already counted for this activity (a replay of one of them changes nothing)."""
        return tuple(r.session for r in self.log)

    @property
    def last_advanced(self) -> Dimension | None:
        return self.advanced[-1] if self.advanced else None

    def record_for(self, session: str) -> tuple[int, SessionRecord] | None:
        for i, r in enumerate(self.log):
            if r.session == session:
                return i, r
        return None


class RuleOverrides(StateModel):
    plan: dict[str, Any] = Field(default_factory=dict)
    patterns: dict[str, dict[str, Any]] = Field(default_factory=dict)


class PlanChange(StateModel):
    version: int
    at: datetime
    kind: ChangeKind
    reason: str
    evidence: tuple[str, ...] = ()
    by: str | None = None
    trigger: str | None = Field(default=None, description="what caused it: an event's subject reference")
    decisions: tuple[Decision, ...] = ()


class PlanState(StateModel):
    id: str = Field(description="CarePlan id")
    patient: str = Field(description="Patient id")
    status: PlanStatus = "draft"
    title: str = "Neuromuscular re-education plan"
    created: datetime
    period_start: date
    author: str | None = None
    catalogue_version: str
    evaluation: str | None = Field(default=None, description="Observation/<id> of the evaluation panel")
    referral: tuple[ReferralRef, ...] = Field(default=(), description="the conditions behind the referral")
    activities: tuple[ActivityState, ...] = ()
    goals: tuple[GoalState, ...] = ()
    rule_overrides: RuleOverrides = RuleOverrides()
    waivers: tuple[Waiver, ...] = ()
    screening: Screening | None = None
    tasks: tuple[TaskState, ...] = ()
    completed_streams: tuple[str, ...] = Field(
        default=(), description="streams whose metrics completed before their session was logged"
    )
    pending_metrics: tuple[MetricEvidence, ...] = Field(
        default=(), description="metrics for sessions not logged yet"
    )
    version: int = 1
    history: tuple[PlanChange, ...] = ()

    @property
    def reference(self) -> str:
        return f"CarePlan/{self.id}"

    def activity(self, activity_id: str) -> ActivityState:
        for a in self.activities:
            if a.id == activity_id:
                return a
        raise PlanError(f"plan {self.id} has no activity '{activity_id}'")

    def find_activity(self, activity_id: str) -> ActivityState | None:
        return next((a for a in self.activities if a.id == activity_id), None)

    def goal(self, goal_id: str) -> GoalState:
        for g in self.goals:
            if g.id == goal_id:
                return g
        raise PlanError(f"plan {self.id} has no goal '{goal_id}'")

    def with_activities(self, activities: Iterable[ActivityState]) -> PlanState:
        changed = {a.id: a for a in activities}
        return self.model_copy(update={"activities": tuple(changed.get(a.id, a) for a in self.activities)})

    def with_tasks(self, tasks: Iterable[TaskState]) -> PlanState:
        changed = {t.id: t for t in tasks}
        kept = tuple(changed.pop(t.id, t) for t in self.tasks)
        return self.model_copy(update={"tasks": (*kept, *changed.values())})

    def task(self, task_id: str) -> TaskState:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise PlanError(f"plan {self.id} has no task '{task_id}'")

    def waived(self, pattern: str, criterion: str, muscle: str | None) -> Waiver | None:
        return next((w for w in self.waivers if w.covers(pattern, criterion, muscle)), None)

    def with_goals(self, goals: Iterable[GoalState]) -> PlanState:
        changed = {g.id: g for g in goals}
        return self.model_copy(update={"goals": tuple(changed.get(g.id, g) for g in self.goals)})

    def recorded(
        self,
        *,
        at: datetime,
        kind: ChangeKind,
        reason: str,
        evidence: Iterable[str] = (),
        by: str | None = None,
        trigger: str | None = None,
        decisions: Iterable[Decision] = (),
    ) -> PlanState:
        """This plan one version later, with the change appended to its history."""
        change = PlanChange(
            version=self.version + 1,
            at=at,
            kind=kind,
            reason=reason,
            evidence=tuple(dict.fromkeys(evidence)),
            by=by,
            trigger=trigger,
            decisions=tuple(decisions),
        )
        return self.model_copy(update={"version": change.version, "history": (*self.history, change)})

    @property
    def latest_change(self) -> PlanChange | None:
        return self.history[-1] if self.history else None
