"""The use cases of the session log, each inside the caller's transaction (the request's).

Every step loads the session (locked for update), applies the pure workflow, stores the new
state and stages the event the step produces. The FHIR view follows the session's milestones:
the Encounter is written when the session starts (in-progress) and when it closes, the
Procedures when it closes (final: period, outcome) and again when the 24-hour response adds a
complication; a resource gets a new version only when its content changed. While a session is
open its exercises are in the session log (``GET /sessions/{id}``), not yet in FHIR. A refusal
anywhere raises a ``FhirError`` and the caller's transaction rolls back: nothing is half-written.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session

from relearn.sessions import workflow
from relearn.sessions.adherence import WeekAdherence, iso_week, weekly_adherence
from relearn.sessions.encounter_fhir import encounter_resource, procedure_resources
from relearn.sessions.events import stage_session_logged, stage_symptoms_recorded
from relearn.sessions.plan_view import require_plan
from relearn.sessions.read_model import load_plan, plans_of_patient
from relearn.sessions.resources import ENCOUNTER, PROCEDURE
from relearn.sessions.schemas import (
    ExercisePerformed,
    HomePractice,
    SessionClose,
    SessionStart,
    SymptomResponse,
)
from relearn.sessions.session_log import add_session, closed_sessions, load_session, save_session
from relearn.sessions.workflow import SessionState
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.store import FhirStore

# A session counts in the week of its local start date; UTC offsets reach ±14 h, so the UTC
# query window is widened by a day on each side and the local date decides.
_OFFSET_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class PlanAdherence:
    care_plan: str
    status: str
    weeks: list[WeekAdherence]


@dataclass(frozen=True)
class AdherenceReport:
    patient: str
    first: date
    last: date
    weeks: list[WeekAdherence]
    plans: list[PlanAdherence]


@dataclass(frozen=True)
class SessionRecorder:
    """The session log's use cases over one FHIR store (the service's)."""

    store: FhirStore

    # -- the clinic workflow ------------------------------------------------------------------
    def start(self, db: Session, request: SessionStart, *, now: datetime) -> SessionState:
        plan = load_plan(db, request.care_plan)
        state = workflow.start_session(str(uuid.uuid4()), request, plan, now=now)
        add_session(db, state)
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
        state = load_session(db, session_id, for_update=True)
        # The workflow refuses a closed session (409) before it looks at the plan (422).
        plan = load_plan(db, state.care_plan) or require_plan(None, state.care_plan)
        if batch:
            state = workflow.record_exercises(state, exercises, plan)
        else:
            (exercise,) = exercises
            state = workflow.record_exercise(state, exercise, plan)
        save_session(db, state)
        return state

    def close(self, db: Session, session_id: str, request: SessionClose, *, now: datetime) -> SessionState:
        state = workflow.close_session(load_session(db, session_id, for_update=True), request, now=now)
        save_session(db, state)
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
        state = load_session(db, session_id, patient=patient, for_update=True)
        step = workflow.amend_symptoms if amend else workflow.record_symptoms
        state = step(state, response, now=now)
        save_session(db, state)
        self._publish(db, state)
        stage_symptoms_recorded(db, state)
        return state

    # -- home practice ------------------------------------------------------------------------
    def log_home_practice(self, db: Session, practice: HomePractice, *, now: datetime) -> SessionState:
        plan = load_plan(db, practice.care_plan)
        state = workflow.log_home_practice(str(uuid.uuid4()), practice, plan, now=now)
        add_session(db, state)
        self._publish(db, state)
        stage_session_logged(db, state)
        return state

    # -- reads --------------------------------------------------------------------------------
    def get(self, db: Session, session_id: str, *, patient: str | None = None) -> SessionState:
        return load_session(db, session_id, patient=patient)

    def adherence(self, db: Session, patient: str, first: date, last: date) -> AdherenceReport:
        """Per ISO week from ``first``'s to ``last``'s: bouts done vs prescribed, per plan and in all."""
        monday = first - timedelta(days=first.weekday())
        after = last - timedelta(days=last.weekday()) + timedelta(weeks=1)  # the Monday after `last`
        window_start = datetime.combine(monday, time(), UTC) - _OFFSET_MARGIN
        window_end = datetime.combine(after, time(), UTC) + _OFFSET_MARGIN
        sessions = [
            s
            for s in closed_sessions(db, patient, window_start, window_end)
            if monday <= s.start.date() < after
        ]
        used = {s.care_plan for s in sessions}
        plans = [p for p in plans_of_patient(db, patient) if p.status == "active" or p.care_plan in used]
        per_plan = [
            PlanAdherence(p.care_plan, p.status, weekly_adherence(sessions, p, first=monday, last=last))
            for p in plans
        ]
        return AdherenceReport(patient, first, last, _combined(monday, last, per_plan), per_plan)

    # -- FHIR representation ------------------------------------------------------------------
    def _publish(self, db: Session, state: SessionState) -> None:
        self._put(db, ENCOUNTER, encounter_resource(state))
        for procedure in procedure_resources(state):
            self._put(db, PROCEDURE, procedure)

    def _put(self, db: Session, rdef: ResourceDefinition, resource: dict[str, Any]) -> None:
        rid = str(resource["id"])
        current = self.store.get(db, rdef.type, rid)
        if current is None:
            self.store.create(db, rdef, resource, id=rid)
        elif current.deleted or not _same_content(current.text, resource):
            self.store.update(db, rdef, rid, resource)


def _same_content(stored_text: str, resource: dict[str, Any]) -> bool:
    stored = json.loads(stored_text)
    stored.pop("meta", None)
    fresh = json.loads(json.dumps(resource))
    fresh.pop("meta", None)
    return bool(stored == fresh)


def _combined(monday: date, last: date, plans: Sequence[PlanAdherence]) -> list[WeekAdherence]:
    """The patient's weeks over all plans (zero rows for weeks without a plan or a session)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for plan in plans:
        for row in plan.weeks:
            t = totals[row.week]
            t[0] += row.prescribed
            t[1] += row.done
            t[2] += row.clinic
            t[3] += row.home
    weeks: list[WeekAdherence] = []
    day = monday
    while day <= last:
        prescribed, done, clinic, home = totals[iso_week(day)]
        weeks.append(
            WeekAdherence(
                week=iso_week(day),
                prescribed=prescribed,
                done=done,
                clinic=clinic,
                home=home,
                percent=round(100 * done / prescribed, 1) if prescribed else None,
            )
        )
        day += timedelta(weeks=1)
    return weeks
