"""Consumer handlers: a re-assessment applied or a discharge asks for a report of that plan version; a
report requested on demand is drawn here too (CPU work stays out of the API's requests)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlmodel import Session

from relearn.reports.events import PLAN_DISCHARGED, PLAN_UPDATED, REPORT_REQUESTED, decode, decode_request
from relearn.reports.service import ReportService
from relearn.shared.events import CloudEvent, Handler


def handlers(service: ReportService) -> Mapping[str, Handler]:
    """The reports consumer's handler per event type (the processed-events table makes each run once)."""

    def plan_version(session: Session, event: CloudEvent) -> None:
        service.on_plan_version(session, event.type, decode(event))

    def requested(session: Session, event: CloudEvent) -> None:
        service.on_request(session, decode_request(event))

    return {PLAN_UPDATED: plan_version, PLAN_DISCHARGED: plan_version, REPORT_REQUESTED: requested}
