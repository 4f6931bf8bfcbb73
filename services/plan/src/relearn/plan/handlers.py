"""Consumer handlers of the plan service (group ``plan``): decode an event, call the service, log ignores.

- ``evaluation.completed.v1``: draft a plan (status ``draft``) for the therapist to review;
- ``evaluation.reassessed.v1``: a proposal of changes kept for the therapist (applied through the API);
- ``session.logged.v1``, ``session.symptoms-recorded.v1``, ``device.trial-summarized.v1`` (each channel's
  whole-trial result as evidence; ``device.metric-computed.v1`` for events already in the log),
  ``device.stream-metrics-completed.v1``: the progression engine on the patient's active plan, one CarePlan
  version and one event per decision.

Each runs in the consumer's transaction. :func:`sweep_evidence` (a periodic job, not an event) judges sessions
whose wait for their streams' metrics has passed.

Replays change nothing: the consumer's processed-event table, then the domain's own guards (a plan drafted
from an evaluation exists already; a session already in the log; a metric window already held).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sqlmodel import Session

from relearn.plan import events
from relearn.plan.events import (
    DeviceMetricComputed,
    EvaluationCompleted,
    SessionLogged,
    StreamMetricsCompleted,
    SymptomsRecorded,
    TrialSummarized,
    decode,
)
from relearn.plan.service import Ignored, PlanService
from relearn.shared.events import CloudEvent, Handler

logger = logging.getLogger(__name__)


def _log_ignored(event: CloudEvent, reasons: Ignored) -> None:
    if reasons:
        logger.info(
            "event ignored",
            extra={"event_type": event.type, "patient": event.subject, "reasons": list(reasons)},
        )


def plan_handlers(service: PlanService) -> Mapping[str, Handler]:
    def drafted(session: Session, event: CloudEvent) -> None:
        _log_ignored(event, service.draft(session, decode(event, EvaluationCompleted)))

    def reassessed(session: Session, event: CloudEvent) -> None:
        _log_ignored(event, service.reassess(session, decode(event, EvaluationCompleted)))

    def session_logged(session: Session, event: CloudEvent) -> None:
        _log_ignored(event, service.session_logged(session, decode(event, SessionLogged)))

    def symptoms(session: Session, event: CloudEvent) -> None:
        _log_ignored(event, service.symptoms(session, decode(event, SymptomsRecorded)))

    def metric(session: Session, event: CloudEvent) -> None:
        m = decode(event, DeviceMetricComputed)
        _log_ignored(event, service.metric(session, m))

    def trial(session: Session, event: CloudEvent) -> None:
        _log_ignored(event, service.trial(session, decode(event, TrialSummarized)))

    def stream_completed(session: Session, event: CloudEvent) -> None:
        completed = decode(event, StreamMetricsCompleted)
        _log_ignored(event, service.stream_completed(session, completed, at=event.time))

    return {
        events.EVALUATION_COMPLETED: drafted,
        events.EVALUATION_REASSESSED: reassessed,
        events.SESSION_LOGGED: session_logged,
        events.SYMPTOMS_RECORDED: symptoms,
        events.METRIC_COMPUTED: metric,
        events.TRIAL_SUMMARIZED: trial,
        events.STREAM_METRICS_COMPLETED: stream_completed,
    }


def sweep_evidence(
    service: PlanService, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Callable[[Session], None]:
    """The periodic job: sessions whose wait for their streams' metrics has ended are judged on what
    arrived."""

    def sweep(session: Session) -> None:
        service.sweep_evidence(session, now())

    return sweep
