"""Consumer handlers: device metrics and session outcomes become Observations."""

from __future__ import annotations

from collections.abc import Mapping

from sqlmodel import Session

from relearn.evaluation import service
from relearn.evaluation.schemas import MetricComputed, SessionLogged, SymptomsRecorded, TrialSummarized
from relearn.shared.events import CloudEvent, Handler
from relearn.shared.fhir import FhirStore


def handlers(store: FhirStore) -> Mapping[str, Handler]:
    """The evaluation consumer's handler per event type."""

    def metric(session: Session, event: CloudEvent) -> None:
        service.record_metric(session, store, MetricComputed.model_validate(event.data))

    def trial(session: Session, event: CloudEvent) -> None:
        service.record_trial_summary(session, store, TrialSummarized.model_validate(event.data))

    def logged(session: Session, event: CloudEvent) -> None:
        service.record_session_outcomes(session, store, SessionLogged.model_validate(event.data))

    def symptoms(session: Session, event: CloudEvent) -> None:
        service.record_symptoms(session, store, SymptomsRecorded.model_validate(event.data))

    return {
        # No longer produced by the gateway (trial summaries replaced it); events in the log are still read.
        "device.metric-computed.v1": metric,
        "device.trial-summarized.v1": trial,
        "session.logged.v1": logged,
        "session.symptoms-recorded.v1": symptoms,
    }
