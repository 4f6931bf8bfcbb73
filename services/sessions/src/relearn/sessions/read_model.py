"""The local read model of care plans: one row per plan, kept current from the plan service's events.

Sessions are validated against these rows instead of calling the plan service on every request.
The rules (which events, which versions win) are :func:`relearn.sessions.plan_view.apply_plan_event`;
this module only loads and stores its result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, Session, SQLModel, col, select

from relearn.sessions.plan_view import ActivityView, PlanView, apply_plan_event
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.fhir.validation import ID_PATTERN


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


def care_plan_id(reference: str) -> str:
    """``CarePlan/<id>`` or ``<id>`` -> ``<id>``."""
    return reference.removeprefix("CarePlan/")


def load_plan(session: Session, care_plan: str) -> PlanView | None:
    """The view of ``care_plan`` (a reference or an id), or None if no event named it yet."""
    row = session.get(PlanRecord, care_plan_id(care_plan))
    return row.view() if row is not None else None


def plans_of_patient(session: Session, patient: str) -> list[PlanView]:
    rows = session.exec(
        select(PlanRecord).where(PlanRecord.patient_id == patient).order_by(col(PlanRecord.care_plan_id))
    ).all()
    return [r.view() for r in rows]


def on_plan_event(session: Session, event: CloudEvent) -> None:
    """Consumer handler for every plan event: apply it to the plan's row (stale versions change nothing).

    Data that cannot be read raises, and the consumer sends the event to the dead-letter topic.
    """
    pid = care_plan_id(str(event.data.get("carePlan") or ""))
    if not ID_PATTERN.match(pid):
        raise ValueError(
            f"{event.type} {event.id}: carePlan {event.data.get('carePlan')!r} is not a CarePlan reference"
        )
    row = session.exec(select(PlanRecord).where(PlanRecord.care_plan_id == pid).with_for_update()).first()
    before = row.view() if row is not None else None
    after = apply_plan_event(before, event.type, event.data)
    if after is before:
        return  # not newer than what we have
    if row is None:
        row = PlanRecord(
            care_plan_id=pid,
            patient_id=after.patient,
            status=after.status,
            version=after.version,
            last_event_id=event.id,
        )
    row.patient_id = after.patient
    row.status = after.status
    row.version = after.version
    row.activities = {k: a.model_dump(mode="json") for k, a in after.activities.items()}
    row.last_event_id = event.id
    row.updated_at = datetime.now(UTC)
    session.add(row)
