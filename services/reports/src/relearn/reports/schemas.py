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


class ReportAccepted(_Body):
    """A report requested: the worker draws it; it is readable at ``diagnosticReport`` once written."""

    id: str
    diagnostic_report: str = Field(description="DiagnosticReport/<id> on the FHIR base URL, once written")
    kind: ReportKind
    patient: str
    care_plan: str | None
    status: Literal["requested"] = "requested"
    pdf: str = Field(description="GET this path for the PDF, once written")
    html: str = Field(description="GET this path for the HTML view, once written")
