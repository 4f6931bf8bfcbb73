"""Event handlers of the plan service (consumer group ``plan``), each run in the consumer's transaction.

- ``evaluation.completed.v1``: draft a plan (status ``draft``) for the therapist to review;
- ``evaluation.reassessed.v1``: a proposal of changes kept for the therapist (applied through the API);
- ``session.logged.v1``, ``session.symptoms-recorded.v1``, ``device.metric-computed.v1``,
  ``device.stream-metrics-completed.v1``: the progression engine on the patient's active plan, one CarePlan
  version and one event per decision.

:func:`sweep_evidence` (a periodic job, not an event) judges sessions whose wait for their streams' metrics
has passed.

Replays change nothing: the consumer's processed-event table, then the domain's own guards (a plan drafted
from an evaluation exists already; a session already in the log; a metric window already held).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sqlmodel import Session

from relearn.plan import persistence
from relearn.plan.catalogue import Catalogue
from relearn.plan.drafting import draft_plan, propose_changes, screening_of
from relearn.plan.ids import stable_id
from relearn.plan.inbound import (
    DeviceMetricComputed,
    EvaluationCompleted,
    SessionLogged,
    StreamMetricsCompleted,
    SymptomsRecorded,
    bare_id,
)
from relearn.plan.persistence import PlanRecord, ProposalRecord
from relearn.plan.progression import (
    Outcome,
    apply_metric,
    apply_session,
    apply_stream_completed,
    apply_symptoms,
    expire_evidence,
)
from relearn.plan.state import PlanState
from relearn.plan.writer import PlanWriter
from relearn.shared.events.contracts import device_metric_observation_id
from relearn.shared.events.envelope import CloudEvent

logger = logging.getLogger(__name__)

Handler = Callable[[Session, CloudEvent], None]


def metric_observation(m: DeviceMetricComputed) -> str:
    """The Observation the evaluation service stores this metric as (the shared id contract)."""
    obs_id = device_metric_observation_id(
        m.patient, m.device, m.metric, m.window.start, m.window.end, m.channel
    )
    return f"Observation/{obs_id}"


def _ignored(event: CloudEvent, why: str | tuple[str, ...]) -> None:
    reasons = [why] if isinstance(why, str) else list(why)
    logger.info(
        "event ignored", extra={"event_type": event.type, "patient": event.subject, "reasons": reasons}
    )


def plan_handlers(writer: PlanWriter) -> Mapping[str, Handler]:
    catalogue: Catalogue = writer.catalogue

    def drafted(session: Session, event: CloudEvent) -> None:
        evaluation = EvaluationCompleted.model_validate(event.data)
        plan = draft_plan(evaluation, catalogue=catalogue, ids=stable_id)
        if persistence.load(session, plan.id) is not None:
            _ignored(event, f"plan {plan.id} was already drafted from {evaluation.evaluation}")
            return
        writer.create(session, plan)
        logger.info("plan drafted", extra={"care_plan": plan.reference, "evaluation": evaluation.evaluation})

    def reassessed(session: Session, event: CloudEvent) -> None:
        evaluation = EvaluationCompleted.model_validate(event.data)
        record = None
        if evaluation.care_plan:
            record = persistence.load(session, bare_id(evaluation.care_plan))
        record = record or persistence.active_for(session, evaluation.patient)
        if record is None:
            drafts = [r for r in persistence.plans_of(session, evaluation.patient) if r.status == "draft"]
            record = drafts[0] if drafts else None
        if record is None or record.patient_id != evaluation.patient:
            _ignored(event, f"patient {evaluation.patient} has no active or draft plan to re-assess")
            return
        screening = screening_of(evaluation)
        if screening is not None and record.plan().screening != screening:
            # Fall risk is judged on the last evaluation: kept at once, whatever the therapist does with the
            # proposal.
            persistence.save(session, record.plan().model_copy(update={"screening": screening}), record)
        proposal = propose_changes(record.plan(), evaluation, catalogue=catalogue, ids=stable_id)
        pid = stable_id("Proposal", f"{record.id}|{evaluation.evaluation}")
        if session.get(ProposalRecord, pid) is not None:
            _ignored(event, f"re-assessment {evaluation.evaluation} already proposed for {record.id}")
            return
        session.add(
            ProposalRecord(
                id=pid,
                plan_id=record.id,
                patient_id=record.patient_id,
                evaluation=evaluation.evaluation,
                status="empty" if proposal.empty else "open",
                proposal=proposal.model_dump_json(by_alias=True),
            )
        )
        logger.info("re-assessment proposal kept", extra={"care_plan": record.id, "reason": proposal.reason})

    def progress(
        session: Session, event: CloudEvent, record: PlanRecord | None, step: Callable[[PlanState], Outcome]
    ) -> None:
        if record is None:
            _ignored(event, f"patient {event.subject} has no active plan")
            return
        before = record.plan()
        outcome = step(before)
        writer.apply(session, record, before, outcome)
        if outcome.ignored:
            _ignored(event, outcome.ignored)

    def session_logged(session: Session, event: CloudEvent) -> None:
        logged = SessionLogged.model_validate(event.data)
        record = None
        if logged.care_plan:
            record = persistence.load(session, bare_id(logged.care_plan))
            if record is not None and record.patient_id != logged.patient:
                record = None
        record = record or persistence.active_for(session, logged.patient)
        progress(session, event, record, lambda p: apply_session(p, logged, catalogue=catalogue))

    def symptoms(session: Session, event: CloudEvent) -> None:
        recorded = SymptomsRecorded.model_validate(event.data)
        record = persistence.active_for(session, recorded.patient)
        progress(session, event, record, lambda p: apply_symptoms(p, recorded, catalogue=catalogue))

    def metric(session: Session, event: CloudEvent) -> None:
        m = DeviceMetricComputed.model_validate(event.data)
        record = persistence.active_for(session, m.patient)
        progress(
            session,
            event,
            record,
            lambda p: apply_metric(p, m, catalogue=catalogue, observation=metric_observation(m)),
        )

    def stream_completed(session: Session, event: CloudEvent) -> None:
        completed = StreamMetricsCompleted.model_validate(event.data)
        record = persistence.active_for(session, completed.patient)
        at = event.time
        progress(
            session,
            event,
            record,
            lambda p: apply_stream_completed(p, completed, catalogue=catalogue, at=at),
        )

    return {
        "evaluation.completed.v1": drafted,
        "evaluation.reassessed.v1": reassessed,
        "session.logged.v1": session_logged,
        "session.symptoms-recorded.v1": symptoms,
        "device.metric-computed.v1": metric,
        "device.stream-metrics-completed.v1": stream_completed,
    }


def sweep_evidence(
    writer: PlanWriter, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Callable[[Session], None]:
    """The periodic job: sessions whose wait for their streams' metrics has ended are judged on what
    arrived."""

    def sweep(session: Session) -> None:
        at = now()
        for record in persistence.evidence_overdue(session, at):
            before = record.plan()
            outcome = expire_evidence(before, now=at, catalogue=writer.catalogue)
            writer.apply(session, record, before, outcome)
            logger.info(
                "evidence wait ended",
                extra={"care_plan": before.reference, "decisions": len(outcome.decisions)},
            )

    return sweep
