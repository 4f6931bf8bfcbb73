"""Use cases of the session log: the workflow's steps and the recorder that stores and publishes them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from relearn.sessions import repository
from relearn.sessions.domain.adherence import (
    AdherenceReport,
    PlanAdherence,
    RemoteMonitoring,
    combined_weeks,
    weekly_adherence,
)
from relearn.sessions.domain.plan_view import PlanView, apply_plan_event, check_activity, require_plan
from relearn.sessions.domain.remote_monitoring import DeviceDaysRule, device_days_report, periods_covering
from relearn.sessions.domain.session import (
    RecordedExercise,
    SessionState,
    SymptomRecord,
    derived_id,
    rom_observation_id,
    summarize,
)
from relearn.sessions.events import stage_session_logged, stage_symptoms_recorded
from relearn.sessions.mapper import encounter_resource, procedure_resources
from relearn.sessions.resources import ENCOUNTER, PROCEDURE
from relearn.sessions.schemas import (
    ExercisePerformed,
    HomePractice,
    SessionClose,
    SessionStart,
    SymptomResponse,
)
from relearn.shared.fhir import ID_PATTERN, Conflict, FhirStore, ResourceDefinition, UnprocessableEntity
from relearn.shared.service import touch_patients

# A session counts in the week of its local start date; UTC offsets reach ±14 h, so the UTC
# query window is widened by a day on each side and the local date decides.
_OFFSET_MARGIN = timedelta(days=1)
DEFAULT_RPM_RULE = DeviceDaysRule()


# -- the workflow: a session's life as pure state transitions -----------------------------------------------
#
#     start_session ──> in-progress ──record_exercise──> in-progress ──close_session──> finished
#     log_home_practice ──────────────────────────────────────────────────────────────> finished
#     finished ──record_symptoms (once)──> finished + symptoms ──amend_symptoms──> corrected symptoms
#
# Every step returns a new SessionState (states are frozen) and raises Conflict (409) for a step the session
# is not in a state to take, or UnprocessableEntity (422) when the plan refuses it. Nothing here reads a
# clock: callers pass ``now``, used only where the client left a time out.


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
    trial, rom = exercise.dual_task_trial, exercise.rom
    return RecordedExercise.model_validate(
        exercise.model_dump(exclude={"level", "rom"})
        | {
            "procedure": f"Procedure/{procedure_id}",
            "activity": activity.id,
            "pattern": activity.pattern,
            "cpt": activity.cpt,
            "level": {**activity.level, **exercise.level.given()},
            "target_reps": exercise.target_reps or activity.dose.reps,
            "dual_task_cost_pct": trial.cost_pct if trial is not None else None,
            "rom": None
            if rom is None
            else rom.model_dump() | {"observation": f"Observation/{rom_observation_id(procedure_id)}"},
        }
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
    procedure_id = derived_id(session_id, "exercise", "0")
    exercise = RecordedExercise.model_validate(
        practice.model_dump(exclude={"patient", "care_plan"})
        | {
            "procedure": f"Procedure/{procedure_id}",
            "activity": activity.id,
            "pattern": activity.pattern,
            "level": dict(activity.level),
            "target_reps": activity.dose.reps,
            "load_kg": practice.load_kg if practice.load_kg is not None else activity.dose.load_kg or 0.0,
        }
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


# -- the recorder: each step inside the caller's transaction (the request's) --------------------------------
#
# Every step loads the session (locked for update), applies the workflow, stores the new state and stages the
# event the step produces. The FHIR view follows the session's milestones: the Encounter is written when the
# session starts (in-progress) and when it closes, the Procedures when it closes (final: period, outcome) and
# again when the 24-hour response adds a complication; a resource gets a new version only when its content
# changed. While a session is open its exercises are in the session log (GET /sessions/{id}), not yet in FHIR.
# A refusal anywhere raises a FhirError and the caller's transaction rolls back: nothing is half-written.


@dataclass(frozen=True)
class SessionRecorder:
    """The session log's use cases over one FHIR store (the service's)."""

    store: FhirStore
    rpm_rule: DeviceDaysRule = DEFAULT_RPM_RULE

    # -- the clinic workflow ------------------------------------------------------------------
    def start(self, db: Session, request: SessionStart, *, now: datetime) -> SessionState:
        plan = repository.load_plan(db, request.care_plan)
        state = start_session(str(uuid.uuid4()), request, plan, now=now)
        repository.add_session(db, state)
        if state.setting == "clinic":
            self._put(db, ENCOUNTER, encounter_resource(state))
        return state

    def record(
        self,
        db: Session,
        session_id: str,
        exercises: Sequence[ExercisePerformed],
        *,
        batch: bool,
    ) -> SessionState:
        """Add exercises; ``batch`` names refused fields ``exercises[i].<field>``, else ``<field>``."""
        state = repository.load_session(db, session_id, for_update=True)
        touch_patients(state.patient)
        # The workflow refuses a closed session (409) before it looks at the plan (422).
        plan = repository.load_plan(db, state.care_plan) or require_plan(None, state.care_plan)
        if batch:
            state = record_exercises(state, exercises, plan)
        else:
            (exercise,) = exercises
            state = record_exercise(state, exercise, plan)
        repository.save_session(db, state)
        return state

    def close(self, db: Session, session_id: str, request: SessionClose, *, now: datetime) -> SessionState:
        state = close_session(repository.load_session(db, session_id, for_update=True), request, now=now)
        repository.save_session(db, state)
        self._publish(db, state)
        stage_session_logged(db, state)
        return state

    def record_symptoms(
        self,
        db: Session,
        session_id: str,
        response: SymptomResponse,
        *,
        amend: bool,
        now: datetime,
        patient: str | None = None,
    ) -> SessionState:
        state = repository.load_session(db, session_id, patient=patient, for_update=True)
        step = amend_symptoms if amend else record_symptoms
        state = step(state, response, now=now)
        repository.save_session(db, state)
        self._publish(db, state)
        stage_symptoms_recorded(db, state)
        return state

    # -- home practice ------------------------------------------------------------------------
    def log_home_practice(self, db: Session, practice: HomePractice, *, now: datetime) -> SessionState:
        plan = repository.load_plan(db, practice.care_plan)
        state = log_home_practice(str(uuid.uuid4()), practice, plan, now=now)
        repository.add_session(db, state)
        self._publish(db, state)
        stage_session_logged(db, state)
        return state

    # -- reads --------------------------------------------------------------------------------
    def get(self, db: Session, session_id: str, *, patient: str | None = None) -> SessionState:
        state = repository.load_session(db, session_id, patient=patient)
        touch_patients(state.patient)  # the audit trail: whose session this request read
        return state

    def adherence(
        self, db: Session, patient: str, first: date, last: date, *, tz: ZoneInfo | None = None
    ) -> AdherenceReport:
        """Per ISO week from ``first``'s to ``last``'s: bouts done vs prescribed, per plan and in all; and the
        device data days of each remote-monitoring period (``tz``: the patient's time zone)."""
        monday = first - timedelta(days=first.weekday())
        after = last - timedelta(days=last.weekday()) + timedelta(weeks=1)  # the Monday after `last`
        window_start = datetime.combine(monday, time(), UTC) - _OFFSET_MARGIN
        window_end = datetime.combine(after, time(), UTC) + _OFFSET_MARGIN
        sessions = [
            s
            for s in repository.closed_sessions(db, patient, window_start, window_end)
            if monday <= s.start.date() < after
        ]
        used = {s.care_plan for s in sessions}
        plans = [
            p for p in repository.plans_of_patient(db, patient) if p.status == "active" or p.care_plan in used
        ]
        per_plan = [
            PlanAdherence(
                p.care_plan,
                p.status,
                weekly_adherence(
                    sessions,
                    p,
                    first=monday,
                    last=last,
                    versions=repository.plan_versions(db, p.care_plan),
                ),
            )
            for p in plans
        ]
        periods = periods_covering(first, last, self.rpm_rule.period_days)
        rpm_sessions = repository.closed_sessions(
            db,
            patient,
            datetime.combine(periods[0][0], time(), UTC) - _OFFSET_MARGIN,
            datetime.combine(last + timedelta(days=1), time(), UTC) + _OFFSET_MARGIN,
        )
        remote = RemoteMonitoring(
            self.rpm_rule,
            tz.key if tz is not None else None,
            device_days_report(rpm_sessions, first, last, self.rpm_rule, tz),
        )
        weeks = combined_weeks(monday, last, per_plan)
        return AdherenceReport(patient, first, last, weeks, per_plan, remote)

    # -- FHIR representation ------------------------------------------------------------------
    def _publish(self, db: Session, state: SessionState) -> None:
        # Home practice is patient-reported exercise, not a visit: no Encounter (the evaluation service
        # records it as Physical Activity IG exercise Observations from session.logged.v1).
        if state.setting == "clinic":
            self._put(db, ENCOUNTER, encounter_resource(state))
        for procedure in procedure_resources(state):
            self._put(db, PROCEDURE, procedure)

    def _put(self, db: Session, rdef: ResourceDefinition, resource: dict[str, Any]) -> None:
        repository.put_resource(db, self.store, rdef, resource)


def apply_plan(
    db: Session, event_type: str, event_id: str, data: Mapping[str, Any], *, at: datetime | None = None
) -> None:
    """A plan event applied to the plan's row of the read model (stale versions change nothing).

    Data that cannot be read raises, and the consumer sends the event to the dead-letter topic.
    """
    pid = repository.care_plan_id(str(data.get("carePlan") or ""))
    if not ID_PATTERN.match(pid):
        raise ValueError(
            f"{event_type} {event_id}: carePlan {data.get('carePlan')!r} is not a CarePlan reference"
        )
    before = repository.load_plan(db, pid, for_update=True)
    after = apply_plan_event(before, event_type, data)
    if after is before:
        return  # not newer than what we have
    repository.save_plan(db, pid, after, event_id=event_id)
    repository.add_plan_version(db, after, effective_at=at or datetime.now(UTC))
