"""Events out: session.logged.v1 and session.symptoms-recorded.v1 data, staged in the outbox."""

# The patient is the subject, so one patient's events stay in order; they are staged in the transaction that
# stores the session.

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from relearn.sessions.domain.codes import DIMENSIONS
from relearn.sessions.domain.session import RecordedExercise, SessionState
from relearn.shared.events import CloudEvent, stage

SOURCE = "/relearn/sessions"
SESSION_LOGGED = "session.logged.v1"
SYMPTOMS_RECORDED = "session.symptoms-recorded.v1"


# The exercise record as it travels: what a consumer needs of it (not the difficulty, the notes or whether the
# target was met), every progression dimension stated.
_NOT_SENT = {"target_met", "difficulty", "notes", "cpt"}


def _exercise(e: RecordedExercise) -> dict[str, Any]:
    return e.model_dump(mode="json", by_alias=True, exclude=_NOT_SENT) | {
        "level": {d: e.level.get(d, 0) for d in DIMENSIONS},
        # When the exercise itself was timed (null: the session's start/end stand for it).
        "start": e.start.isoformat() if e.start is not None else None,
        "end": e.end.isoformat() if e.end is not None else None,
    }


def session_logged_data(state: SessionState) -> dict[str, Any]:
    """``session.logged.v1`` data for a closed session (or home practice)."""
    if state.status != "finished" or state.end is None:
        raise ValueError(f"{state.reference} is {state.status}: session.logged.v1 is emitted on close")
    return {
        # What records the session in FHIR: Encounter/<id> (clinic) or, for home practice (no visit), the
        # Procedure of its one exercise; `encounter` is null for home practice; `sessionId` is the session
        # log's id (GET /sessions/{id}).
        "session": state.reference,
        "sessionId": state.id,
        "encounter": state.encounter,
        "patient": state.patient,
        "setting": state.setting,
        "start": state.start.isoformat(),
        "end": state.end.isoformat(),
        "carePlan": state.care_plan,
        "exercises": [_exercise(e) for e in state.exercises],
    }


def symptoms_recorded_data(state: SessionState) -> dict[str, Any]:
    """``session.symptoms-recorded.v1`` data; after an amendment it carries the corrected values."""
    symptoms = state.symptoms
    if symptoms is None:
        raise ValueError(f"{state.reference} has no 24-hour symptom response")
    return {
        "session": state.reference,
        "sessionId": state.id,
        "patient": state.patient,
        "recordedAt": symptoms.recorded_at.isoformat(),
        "pain24h": symptoms.pain24h,
        "flare": symptoms.flare,
        "notes": symptoms.notes,
    }


def stage_session_logged(session: Session, state: SessionState) -> CloudEvent:
    event = CloudEvent.new(SOURCE, SESSION_LOGGED, state.patient, session_logged_data(state))
    stage(session, event)
    return event


def stage_symptoms_recorded(session: Session, state: SessionState) -> CloudEvent:
    event = CloudEvent.new(SOURCE, SYMPTOMS_RECORDED, state.patient, symptoms_recorded_data(state))
    stage(session, event)
    return event
