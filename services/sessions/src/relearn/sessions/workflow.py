"""A session's life as pure state transitions: start, record exercises, close, 24-hour symptoms.

    start_session ──> in-progress ──record_exercise──> in-progress ──close_session──> finished
    log_home_practice ──────────────────────────────────────────────────────────────> finished
    finished ──record_symptoms (once)──> finished + symptoms ──amend_symptoms──> corrected symptoms

Every function returns a new :class:`SessionState` (states are frozen) and raises
:class:`Conflict` (409) for a step the session is not in a state to take, or
:class:`UnprocessableEntity` (422) when the plan refuses it. Nothing here reads a clock:
callers pass ``now``, used only where the client left a time out.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from relearn.sessions.plan_view import PlanView, check_activity, require_plan
from relearn.sessions.schemas import (
    Assistance,
    DualTaskTrial,
    ExercisePerformed,
    HomePractice,
    RomMethod,
    SessionClose,
    SessionStart,
    Setting,
    SymptomResponse,
)
from relearn.shared.fhir.errors import Conflict, UnprocessableEntity

SessionStatus = Literal["in-progress", "finished"]
PainZone = Literal["safe", "acceptable", "not-acceptable"]

# Namespace of the ids this service derives (uuid5), so replays give the same ids.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://relearn.health/fhir/sessions")


def derived_id(*parts: str) -> str:
    """A deterministic FHIR id for the thing named by ``parts`` (e.g. session, exercise, measure)."""
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(parts)))


def rom_observation_id(procedure_id: str) -> str:
    """The id of the ROM Observation of an exercise: uuid5 of its Procedure id and "rom"."""
    return derived_id(procedure_id, "rom")


class RecordedRom(BaseModel):
    """The active ROM reached in an exercise and the Observation the evaluation service stores it as."""

    model_config = ConfigDict(frozen=True)

    value_deg: float
    method: RomMethod
    motion: str | None = None
    observation_id: str = Field(description="derived from the Procedure id, so a replay names the same one")

    @property
    def observation(self) -> str:
        return f"Observation/{self.observation_id}"


class RecordedExercise(BaseModel):
    """An exercise as performed, resolved against the plan (pattern, level, target reps filled in)."""

    model_config = ConfigDict(frozen=True)

    procedure_id: str
    activity: str
    pattern: str
    level: dict[str, int]
    sets: int
    reps: tuple[int, ...]
    target_reps: int | None
    load_kg: float
    assistance: Assistance
    cues: tuple[str, ...] = ()
    quality: int | None = None
    self_rating: int | None = None
    difficulty: int | None = None
    pain_before: int | None = None
    pain_after: int
    with_feedback: bool
    dual_task: bool = False
    # Computed from dual_task_trial (sessions recorded before it existed kept the client's figure).
    dual_task_cost_pct: float | None = None
    dual_task_trial: DualTaskTrial | None = None
    retention_attempt: bool = False
    rom: RecordedRom | None = None
    device_streams: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    notes: str | None = None

    @property
    def target_met(self) -> bool | None:
        """Every set reached the target; None when there is no target."""
        if self.target_reps is None:
            return None
        return all(r >= self.target_reps for r in self.reps)


class SymptomRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    recorded_at: datetime
    pain24h: int
    flare: bool
    notes: str | None = None
    amendment: int = Field(default=0, description="0 for the first record, then 1, 2, ... per correction")


class SessionSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    exercises: int
    sets: int
    reps: int
    targets_met: int
    targets_missed: int
    pain_before_max: int | None
    pain_after_max: int | None
    pain_increase_max: int | None = Field(description="largest rise from before to after, over the exercises")
    pain_zone: PainZone | None = Field(description="Silbernagel: 0-3 safe, 4-5 acceptable, >5 not acceptable")
    mean_quality: float | None
    duration_minutes: float


class SessionState(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    patient: str
    care_plan: str
    plan_version: int
    setting: Setting
    practitioner: str | None = None
    reasons: tuple[str, ...] = ()
    start: datetime
    end: datetime | None = None
    status: SessionStatus
    exercises: tuple[RecordedExercise, ...] = ()
    notes: str | None = None
    summary: SessionSummary | None = None
    symptoms: SymptomRecord | None = None
    symptom_history: tuple[SymptomRecord, ...] = Field(default=(), description="records since corrected")

    @property
    def reference(self) -> str:
        return f"Encounter/{self.id}"


def pain_zone(pain: int) -> PainZone:
    return "safe" if pain <= 3 else "acceptable" if pain <= 5 else "not-acceptable"


def summarize(exercises: Sequence[RecordedExercise], start: datetime, end: datetime) -> SessionSummary:
    before = [e.pain_before for e in exercises if e.pain_before is not None]
    after = [e.pain_after for e in exercises]
    rises = [e.pain_after - e.pain_before for e in exercises if e.pain_before is not None]
    qualities = [e.quality for e in exercises if e.quality is not None]
    return SessionSummary(
        exercises=len(exercises),
        sets=sum(e.sets for e in exercises),
        reps=sum(sum(e.reps) for e in exercises),
        targets_met=sum(1 for e in exercises if e.target_met is True),
        targets_missed=sum(1 for e in exercises if e.target_met is False),
        pain_before_max=max(before, default=None),
        pain_after_max=max(after, default=None),
        pain_increase_max=max(rises, default=None),
        pain_zone=pain_zone(max(after)) if after else None,
        mean_quality=round(sum(qualities) / len(qualities), 2) if qualities else None,
        duration_minutes=round((end - start).total_seconds() / 60, 1),
    )


def start_session(
    session_id: str, request: SessionStart, plan: PlanView | None, *, now: datetime
) -> SessionState:
    """A new in-progress session against the patient's active plan."""
    view = require_plan(plan, request.care_plan, request.patient)
    return SessionState(
        id=session_id,
        patient=request.patient,
        care_plan=view.care_plan,
        plan_version=view.version,
        setting=request.setting,
        practitioner=request.practitioner,
        reasons=tuple(request.reason_reference),
        start=request.start or now,
        status="in-progress",
        notes=request.notes,
    )


def _in_progress(state: SessionState, action: str) -> None:
    if state.status != "in-progress":
        raise Conflict(
            f"{state.reference} is {state.status}: {action} only while the session is in progress",
            expression="status",
        )


def _same_plan(state: SessionState, plan: PlanView) -> None:
    if plan.care_plan != state.care_plan:
        raise ValueError(f"{state.reference} follows {state.care_plan}, not {plan.care_plan}")


def _resolve(
    state: SessionState, exercise: ExercisePerformed, plan: PlanView, field: str, index: int
) -> RecordedExercise:
    activity = check_activity(plan, exercise.activity, field=f"{field}activity")
    procedure_id = derived_id(state.id, "exercise", str(index))
    trial = exercise.dual_task_trial
    rom = exercise.rom
    return RecordedExercise(
        procedure_id=procedure_id,
        activity=activity.id,
        pattern=activity.pattern,
        level={**activity.level, **exercise.level.given()},
        sets=exercise.sets,
        reps=tuple(exercise.reps),
        target_reps=exercise.target_reps or activity.dose.reps,
        load_kg=exercise.load_kg,
        assistance=exercise.assistance,
        cues=tuple(exercise.cues),
        quality=exercise.quality,
        self_rating=exercise.self_rating,
        pain_before=exercise.pain_before,
        pain_after=exercise.pain_after,
        with_feedback=exercise.with_feedback,
        dual_task=exercise.dual_task,
        dual_task_cost_pct=trial.cost_pct if trial is not None else None,
        dual_task_trial=trial,
        retention_attempt=exercise.retention_attempt,
        rom=None
        if rom is None
        else RecordedRom(
            value_deg=rom.value_deg,
            method=rom.method,
            motion=rom.motion,
            observation_id=rom_observation_id(procedure_id),
        ),
        device_streams=tuple(exercise.device_streams),
        start=exercise.start,
        end=exercise.end,
        notes=exercise.notes,
    )


def record_exercises(
    state: SessionState, exercises: Sequence[ExercisePerformed], plan: PlanView, *, field: str = "exercises"
) -> SessionState:
    """Add exercises (all or none); a refused activity is named as ``exercises[i].activity``."""
    _in_progress(state, "exercises can be recorded")
    _same_plan(state, plan)
    first = len(state.exercises)
    added = tuple(_resolve(state, e, plan, f"{field}[{i}].", first + i) for i, e in enumerate(exercises))
    return state.model_copy(update={"exercises": state.exercises + added})


def record_exercise(
    state: SessionState, exercise: ExercisePerformed, plan: PlanView, *, field: str = ""
) -> SessionState:
    """Add one exercise; a refused activity is named as ``<field>activity`` (``activity`` by default)."""
    _in_progress(state, "exercises can be recorded")
    _same_plan(state, plan)
    added = _resolve(state, exercise, plan, field, len(state.exercises))
    return state.model_copy(update={"exercises": (*state.exercises, added)})


def close_session(state: SessionState, request: SessionClose, *, now: datetime) -> SessionState:
    """Finish the session and compute its summary; the caller then emits ``session.logged.v1``."""
    _in_progress(state, "it can be closed")
    end = request.end or now
    if end < state.start:
        raise UnprocessableEntity(
            f"end: {end.isoformat()} is before the session started ({state.start.isoformat()})",
            expression="end",
        )
    notes = "\n".join(n for n in (state.notes, request.notes) if n) or None
    return state.model_copy(
        update={
            "status": "finished",
            "end": end,
            "notes": notes,
            "summary": summarize(state.exercises, state.start, end),
        }
    )


def _symptom_record(
    state: SessionState, response: SymptomResponse, now: datetime, amendment: int
) -> SymptomRecord:
    if state.status != "finished" or state.end is None:
        raise Conflict(
            f"{state.reference} is {state.status}: "
            "the 24-hour symptom response is recorded after the session is closed",
            expression="status",
        )
    at = response.recorded_at or now
    if at < state.end:
        raise UnprocessableEntity(
            f"recordedAt: {at.isoformat()} is before the session ended ({state.end.isoformat()})",
            expression="recordedAt",
        )
    return SymptomRecord(
        recorded_at=at,
        pain24h=response.pain24h,
        flare=response.flare,
        notes=response.notes,
        amendment=amendment,
    )


def record_symptoms(state: SessionState, response: SymptomResponse, *, now: datetime) -> SessionState:
    """The 24-hour symptom response, once per closed session (a correction goes through amend_symptoms)."""
    record = _symptom_record(state, response, now, 0)
    if state.symptoms is not None:
        raise Conflict(
            f"{state.reference} already has its 24-hour symptom response "
            f"(recorded {state.symptoms.recorded_at.isoformat()}); send a correction as an amendment",
            expression="pain24h",
        )
    return state.model_copy(update={"symptoms": record})


def amend_symptoms(state: SessionState, response: SymptomResponse, *, now: datetime) -> SessionState:
    """Correct the recorded 24-hour response; the previous record is kept in ``symptom_history``."""
    if state.symptoms is None:
        _symptom_record(state, response, now, 0)  # 409 first if the session is still open
        raise Conflict(
            f"{state.reference} has no 24-hour symptom response to amend; record it first",
            expression="pain24h",
        )
    record = _symptom_record(state, response, now, state.symptoms.amendment + 1)
    return state.model_copy(
        update={"symptoms": record, "symptom_history": (*state.symptom_history, state.symptoms)}
    )


def log_home_practice(
    session_id: str, practice: HomePractice, plan: PlanView | None, *, now: datetime
) -> SessionState:
    """Home practice from the patient's app: a one-exercise session, finished at once."""
    view = require_plan(plan, practice.care_plan, practice.patient)
    activity = check_activity(view, practice.activity)
    start = practice.start or now
    end = practice.end or start
    exercise = RecordedExercise(
        procedure_id=derived_id(session_id, "exercise", "0"),
        activity=activity.id,
        pattern=activity.pattern,
        level=dict(activity.level),
        sets=practice.sets,
        reps=tuple(practice.reps),
        target_reps=activity.dose.reps,
        load_kg=practice.load_kg if practice.load_kg is not None else activity.dose.load_kg or 0.0,
        assistance=practice.assistance,
        self_rating=practice.self_rating,
        difficulty=practice.difficulty,
        pain_before=practice.pain_before,
        pain_after=practice.pain_after,
        with_feedback=practice.with_feedback,
        device_streams=tuple(practice.device_streams),
        start=practice.start,
        end=practice.end,
        notes=practice.notes,
    )
    return SessionState(
        id=session_id,
        patient=practice.patient,
        care_plan=view.care_plan,
        plan_version=view.version,
        setting="home",
        start=start,
        end=end,
        status="finished",
        exercises=(exercise,),
        summary=summarize((exercise,), start, end),
    )
