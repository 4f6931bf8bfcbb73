"""The FHIR type the reports service serves: DiagnosticReport (progress reports, discharge summaries)."""

from __future__ import annotations

from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from relearn.shared.fhir import Interaction, ResourceDefinition, date, reference, token

_SP = "http://hl7.org/fhir/SearchParameter/"
_US_CORE_SP = "http://hl7.org/fhir/us/core/SearchParameter/"

# Reports are generated (POST /reports, or a plan event): over FHIR they are read, searched and their history
# followed, never written.
READ_ONLY: frozenset[Interaction] = frozenset(
    {"read", "vread", "search-type", "history-instance", "history-type"}
)

DIAGNOSTIC_REPORT = ResourceDefinition(
    type="DiagnosticReport",
    model=DiagnosticReport,
    search_params=[
        reference(
            "patient",
            "subject",
            targets=("Patient",),
            definition=f"{_US_CORE_SP}us-core-diagnosticreport-patient",
        ),
        reference("subject", "subject", definition=f"{_SP}DiagnosticReport-subject"),
        token("category", "category", definition=f"{_US_CORE_SP}us-core-diagnosticreport-category"),
        token("code", "code", definition=f"{_US_CORE_SP}us-core-diagnosticreport-code"),
        token("status", "status", definition=f"{_US_CORE_SP}us-core-diagnosticreport-status"),
        token("identifier", "identifier", definition=f"{_SP}DiagnosticReport-identifier"),
        date(
            "date",
            "effectiveDateTime",
            "effectivePeriod",
            definition=f"{_US_CORE_SP}us-core-diagnosticreport-date",
        ),
        reference("based-on", "basedOn", definition=f"{_SP}DiagnosticReport-based-on"),
        reference("result", "result", targets=("Observation",), definition=f"{_SP}DiagnosticReport-result"),
    ],
    compartment_param="patient",
    interactions=READ_ONLY,
    documentation="Progress reports (at each re-assessment, or on demand) and discharge summaries, each with "
    "its PDF and HTML in presentedForm.",
)

DEFINITIONS = [DIAGNOSTIC_REPORT]
