"""The session log: one row per session (Encounter id), holding the domain's ``SessionState``.

The row is the source of truth for the workflow (what may be recorded next); the Encounter and
Procedures in the FHIR store are its published representation. Queryable columns (patient, plan,
status, start) sit beside the serialised state; ``started_at`` is UTC, the state keeps the offset the
client sent (adherence counts a session in the patient's local week).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, Session, SQLModel, col, select

from relearn.sessions.workflow import SessionState
from relearn.shared.fhir.errors import NotFound


class SessionRecord(SQLModel, table=True):
    __tablename__ = "therapy_session"
    __table_args__ = (Index("ix_therapy_session_patient_started", "patient_id", "started_at"),)

    id: str = Field(primary_key=True, max_length=64, description="the Encounter id")
    patient_id: str = Field(max_length=64)
    care_plan_id: str = Field(max_length=64)
    setting: str = Field(max_length=16)
    status: str = Field(max_length=16)
    started_at: datetime  # stored in UTC (the state keeps the client's offset)
    ended_at: datetime | None = None
    state: str = Field(sa_column=Column(Text, nullable=False), description="SessionState as JSON")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def add_session(session: Session, state: SessionState) -> None:
    session.add(
        SessionRecord(
            id=state.id,
            patient_id=state.patient,
            care_plan_id=state.care_plan.removeprefix("CarePlan/"),
            setting=state.setting,
            status=state.status,
            started_at=state.start,
            ended_at=state.end,
            state=state.model_dump_json(),
        )
    )


def _row(session: Session, session_id: str, *, for_update: bool) -> SessionRecord | None:
    query = select(SessionRecord).where(SessionRecord.id == session_id)
    # FOR UPDATE: two requests on the same session (two exercises at once) take turns, so neither
    # overwrites the other's exercise (SQLite serialises writers anyway).
    return session.exec(query.with_for_update() if for_update else query).first()


def load_session(
    session: Session, session_id: str, *, patient: str | None = None, for_update: bool = False
) -> SessionState:
    """The session ``session_id``; 404 if unknown or, with ``patient``, if it is another patient's."""
    row = _row(session, session_id, for_update=for_update)
    if row is None or (patient is not None and row.patient_id != patient):
        raise NotFound(f"Session {session_id} is not known")
    return SessionState.model_validate_json(row.state)


def save_session(session: Session, state: SessionState) -> None:
    """Store the new state of a session loaded with ``for_update``."""
    row = session.get(SessionRecord, state.id)  # from the identity map: loaded just before
    if row is None:
        raise NotFound(f"Session {state.id} is not known")
    row.status = state.status
    row.started_at = state.start
    row.ended_at = state.end
    row.state = state.model_dump_json()
    row.updated_at = datetime.now(UTC)
    session.add(row)


def closed_sessions(
    session: Session, patient: str, start_from: datetime, start_to: datetime
) -> list[SessionState]:
    """The patient's finished sessions whose start (UTC) lies in ``[start_from, start_to)``."""
    rows = session.exec(
        select(SessionRecord.state)
        .where(
            SessionRecord.patient_id == patient,
            SessionRecord.status == "finished",
            col(SessionRecord.started_at) >= start_from,
            col(SessionRecord.started_at) < start_to,
        )
        .order_by(col(SessionRecord.started_at))
    ).all()
    return [SessionState.model_validate_json(text) for text in rows]
