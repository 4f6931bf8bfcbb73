"""Events in and out of the reports service (docs/events.md).

In: ``plan.updated.v1`` whose ``change`` is ``reassessed`` (a re-assessment's proposal applied) and
``plan.discharged.v1``: each asks for a report of that plan version; ``report.requested.v1`` (its own,
staged by ``POST /reports``): a report on demand, drawn by the worker. Out: ``report.requested.v1`` and
``report.issued.v1`` ``{diagnosticReport, patient, carePlan, kind, trigger}``, staged in the outbox with the
DiagnosticReport.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from relearn.reports.domain.course import ReportKind
from relearn.shared.events import CloudEvent, stage

SOURCE = "/relearn/reports"
PLAN_UPDATED = "plan.updated.v1"
PLAN_DISCHARGED = "plan.discharged.v1"
REPORT_ISSUED = "report.issued.v1"
REPORT_REQUESTED = "report.requested.v1"


class PlanVersionEvent(BaseModel):
    """The part of a plan event the reports service reads."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    care_plan: str = Field(alias="carePlan", pattern=r"^CarePlan/[A-Za-z0-9\-.]{1,64}$")
    version_id: int = Field(alias="versionId", ge=1)
    patient: str = Field(min_length=1, max_length=80)
    change: str | None = None


class ReportRequested(BaseModel):
    """A report asked for on demand (``POST /reports``): drawn by the worker, under the id already given."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    report: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    patient: str = Field(min_length=1, max_length=80)
    kind: ReportKind
    care_plan: str | None = Field(default=None, alias="carePlan")


def decode(event: CloudEvent) -> PlanVersionEvent:
    return PlanVersionEvent.model_validate(event.data)


def decode_request(event: CloudEvent) -> ReportRequested:
    return ReportRequested.model_validate(event.data)


def report_requested(
    session: Session, *, report: str, patient: str, kind: ReportKind, care_plan: str | None
) -> CloudEvent:
    data: dict[str, Any] = {"report": report, "patient": patient, "kind": kind, "carePlan": care_plan}
    event = CloudEvent.new(SOURCE, REPORT_REQUESTED, patient, data)
    stage(session, event)
    return event


def report_issued(
    session: Session,
    *,
    report: str,
    patient: str,
    care_plan: str | None,
    kind: ReportKind,
    trigger: str | None,
) -> CloudEvent:
    data: dict[str, Any] = {
        "diagnosticReport": report,
        "patient": f"Patient/{patient}",
        "carePlan": care_plan,
        "kind": kind,
        "trigger": trigger,
    }
    event = CloudEvent.new(SOURCE, REPORT_ISSUED, patient, data)
    stage(session, event)
    return event
