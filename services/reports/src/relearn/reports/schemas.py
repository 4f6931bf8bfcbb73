"""Bodies of the reports domain API (``/reports``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from relearn.reports.domain.course import ReportKind

_ID = r"^[A-Za-z0-9\-.]{1,64}$"


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ReportIn(_Body):
    """Generate a report now: a progress report (default) or a discharge summary of a patient's plan."""

    patient: str = Field(pattern=_ID, description="Patient id", examples=["pat-1"])
    kind: ReportKind = "progress"
    care_plan: str | None = Field(
        default=None,
        pattern=r"^(CarePlan/)?[A-Za-z0-9\-.]{1,64}$",
        description="CarePlan/<id> (default: the patient's latest plan)",
    )


class GapOut(BaseModel):
    section: str
    what: str


class ReportView(_Body):
    """A generated report: its DiagnosticReport and where its PDF and HTML views are."""

    id: str
    diagnostic_report: str = Field(description="DiagnosticReport/<id> on the FHIR base URL")
    kind: ReportKind
    patient: str
    care_plan: str | None
    status: Literal["final"] = "final"
    pages: int
    pdf: str = Field(description="GET this path for the PDF")
    html: str = Field(description="GET this path for the HTML view")
    results: int = Field(description="Observations the report used (DiagnosticReport.result)")
    gaps: list[GapOut]
    conclusion: str
