"""Every query on the plan service's tables: plan rows (locked per writer) and re-assessment proposals."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, col, select

from relearn.plan.domain.drafting import PlanProposal
from relearn.plan.domain.progression import evidence_due
from relearn.plan.domain.state import PlanState
from relearn.plan.tables import PlanRecord, ProposalRecord


def _now() -> datetime:
    return datetime.now(UTC)


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


def proposal(session: Session, proposal_id: str) -> ProposalRecord | None:
    return session.get(ProposalRecord, proposal_id)


def proposals_of(session: Session, plan_id: str) -> list[ProposalRecord]:
    query = (
        select(ProposalRecord)
        .where(ProposalRecord.plan_id == plan_id)
        .order_by(col(ProposalRecord.created_at).desc())
    )
    return list(session.exec(query).all())


def add_proposal(
    session: Session, proposal_id: str, record: PlanRecord, proposal: PlanProposal
) -> ProposalRecord:
    """Keep a re-assessment's proposal for ``record``'s plan (``empty`` when it changes nothing)."""
    row = ProposalRecord(
        id=proposal_id,
        plan_id=record.id,
        patient_id=record.patient_id,
        evaluation=proposal.evaluation,
        status="empty" if proposal.empty else "open",
        proposal=proposal.model_dump_json(by_alias=True),
    )
    session.add(row)
    return row


def mark_applied(session: Session, row: ProposalRecord, version: int) -> None:
    row.status, row.applied_at, row.applied_version = "applied", _now(), version
    session.add(row)
