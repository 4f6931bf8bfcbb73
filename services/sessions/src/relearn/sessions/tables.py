"""Every table of the sessions database (imported by the migrations' env.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel

import relearn.shared.tables  # noqa: F401  (the plumbing tables, for the metadata)
from relearn.sessions.domain.plan_view import ActivityView, PlanView


# The session log: one row per session (Encounter id), holding the domain's ``SessionState`` as JSON. The row
# is the source of truth for the workflow (what may be recorded next); the Encounter and Procedures in the
# FHIR store are its published representation. Queryable columns (patient, plan, status, start) sit beside
# the serialised state; ``started_at`` is UTC, the state keeps the offset the client sent (adherence counts a
# session in the patient's local week).
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


# The local read model of care plans: one row per plan, kept current from the plan service's events, so
# sessions are validated without calling the plan service.
class PlanRecord(SQLModel, table=True):
    """One care plan as the sessions service last heard of it."""

    __tablename__ = "plan_view"
    __table_args__ = (Index("ix_plan_view_patient_status", "patient_id", "status"),)

    care_plan_id: str = Field(primary_key=True, max_length=64, description="the CarePlan id")
    patient_id: str = Field(max_length=64)
    status: str = Field(max_length=32)
    version: int = Field(description="CarePlan versionId of the last event applied")
    activities: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False), description="activity id -> view"
    )
    last_event_id: str = Field(max_length=64)
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def view(self) -> PlanView:
        return PlanView(
            care_plan=f"CarePlan/{self.care_plan_id}",
            patient=self.patient_id,
            status=self.status,
            version=self.version,
            activities={k: ActivityView.model_validate(v) for k, v in self.activities.items()},
        )


# Every version of a care plan the read model accepted, with when it took effect (the plan event's time),
# so adherence scores each week against the plan version in force then.
class PlanVersionRecord(SQLModel, table=True):
    """One accepted version of a care plan."""

    __tablename__ = "plan_version"

    care_plan_id: str = Field(primary_key=True, max_length=64, description="the CarePlan id")
    version: int = Field(primary_key=True, description="CarePlan versionId")
    patient_id: str = Field(max_length=64, index=True)
    status: str = Field(max_length=32)
    effective_at: datetime = Field(description="UTC: the time of the plan event that made this version")
    activities: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False), description="activity id -> view"
    )
