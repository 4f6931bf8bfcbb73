"""Every table of the plan database: plan state and re-assessment proposals (imported by migrations/env.py).

``plan_state`` holds one row per plan with the :class:`~.domain.state.PlanState` JSON; its ``version``
equals the CarePlan's ``meta.versionId`` in the FHIR store (every plan version is one CarePlan write). At most
one plan per patient is ``active`` (a partial unique index), which is the plan sessions and metrics go to.
The FHIR store, outbox, processed-event and idempotency tables come from ``relearn.shared``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Index, Text, text
from sqlmodel import Field, SQLModel

import relearn.shared.tables  # noqa: F401  (the plumbing tables, for the metadata)
from relearn.plan.domain.drafting import PlanProposal
from relearn.plan.domain.state import PlanState


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
