"""The plan service's own tables: each plan's state (the engine's source of truth) and proposals.

``plan_state`` holds one row per plan with the :class:`~relearn.plan.state.PlanState` JSON; its ``version``
equals the CarePlan's ``meta.versionId`` in the FHIR store (every plan version is one CarePlan write). At most
one plan per patient is ``active`` (a partial unique index), which is the plan sessions and metrics go to.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Index, Text, text
from sqlmodel import Field, Session, SQLModel, col, select

from relearn.plan.drafting import PlanProposal
from relearn.plan.progression import evidence_due
from relearn.plan.state import PlanState


def _now() -> datetime:
    return datetime.now(UTC)


class PlanRecord(SQLModel, table=True):
    __tablename__ = "plan_state"
    __table_args__ = (
        Index("ix_plan_state_patient_status", "patient_id", "status"),
        Index(
            "uq_plan_state_one_active",
            "patient_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=64, description="CarePlan id")
    patient_id: str = Field(max_length=64)
    status: str = Field(max_length=32)
    version: int = Field(description="PlanState.version = the CarePlan versionId")
    evaluation: str | None = Field(default=None, max_length=128)
    # The earliest time a session of this plan stops waiting for its streams' metrics (the sweeper's index).
    evidence_due: datetime | None = Field(default=None, index=True)
    state: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    def plan(self) -> PlanState:
        return PlanState.model_validate_json(self.state)


class ProposalRecord(SQLModel, table=True):
    __tablename__ = "plan_proposal"
    __table_args__ = (Index("ix_plan_proposal_plan", "plan_id", "status"),)

    id: str = Field(primary_key=True, max_length=64)
    plan_id: str = Field(max_length=64)
    patient_id: str = Field(max_length=64)
    evaluation: str = Field(max_length=128)
    status: str = Field(max_length=16, description="open | applied | empty")
    proposal: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=_now)
    applied_at: datetime | None = None
    applied_version: int | None = None

    def parsed(self) -> PlanProposal:
        return PlanProposal.model_validate_json(self.proposal)


def load(session: Session, plan_id: str, *, lock: bool = True) -> PlanRecord | None:
    """The plan's row, locked for the rest of the transaction (writers of one plan queue up)."""
    query = select(PlanRecord).where(PlanRecord.id == plan_id)
    if lock:
        query = query.with_for_update()
    return session.exec(query).first()


def active_for(session: Session, patient: str, *, lock: bool = True) -> PlanRecord | None:
    query = select(PlanRecord).where(PlanRecord.patient_id == patient, PlanRecord.status == "active")
    if lock:
        query = query.with_for_update()
    return session.exec(query).first()


def plans_of(session: Session, patient: str) -> list[PlanRecord]:
    query = (
        select(PlanRecord)
        .where(PlanRecord.patient_id == patient)
        .order_by(col(PlanRecord.created_at).desc(), col(PlanRecord.id))
    )
    return list(session.exec(query).all())


def save(session: Session, plan: PlanState, record: PlanRecord | None = None) -> PlanRecord:
    """Write ``plan`` into its row (a new row when ``record`` is None)."""
    if record is None:
        record = PlanRecord(
            id=plan.id,
            patient_id=plan.patient,
            status=plan.status,
            version=plan.version,
            evaluation=plan.evaluation,
            state="",
        )
    record.status = plan.status
    record.version = plan.version
    due = evidence_due(plan) if plan.status == "active" else None
    record.evidence_due = due.astimezone(UTC) if due is not None else None
    record.state = plan.model_dump_json(by_alias=True)
    record.updated_at = _now()
    session.add(record)
    session.flush()
    return record


def evidence_overdue(session: Session, now: datetime, limit: int = 50) -> list[PlanRecord]:
    """Active plans with a session whose wait for its streams' metrics has ended, locked, oldest first; rows
    another worker holds are skipped (it is judging them)."""
    query = (
        select(PlanRecord)
        .where(
            PlanRecord.status == "active",
            col(PlanRecord.evidence_due).is_not(None),
            col(PlanRecord.evidence_due) <= now,
        )
        .order_by(col(PlanRecord.evidence_due))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.exec(query).all())


def proposals_of(session: Session, plan_id: str) -> list[ProposalRecord]:
    query = (
        select(ProposalRecord)
        .where(ProposalRecord.plan_id == plan_id)
        .order_by(col(ProposalRecord.created_at).desc())
    )
    return list(session.exec(query).all())
