"""FHIR mapping: a course and its rendering as a DiagnosticReport (and its presented forms back out).

Codes: LOINC 11508-9 *Physical therapy Progress note* with 11506-3 *Progress note* for a progress report,
18842-5 *Discharge summary* for a discharge summary (LOINC Document Ontology); category ``PT`` *Physical
Therapy* of HL7 v2 table 0074 (Diagnostic Service Section ID). The PDF and the HTML view are the two
``presentedForm`` attachments; ``result`` lists the Observations the report drew (bounded).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from html import escape
from typing import Any

from relearn.reports.domain.course import Course, ReportKind
from relearn.reports.domain.render import Rendered
from relearn.shared.fhir import CANONICAL_URL

LOINC = "http://loinc.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
SID_REPORT = f"{CANONICAL_URL}/sid/report"
EXT_GAP = f"{CANONICAL_URL}/StructureDefinition/report-gap"
MAX_RESULTS = 500

CODES: dict[ReportKind, list[dict[str, str]]] = {
    "progress": [
        {"system": LOINC, "code": "11508-9", "display": "Physical therapy Progress note"},
        {"system": LOINC, "code": "11506-3", "display": "Progress note"},
    ],
    "discharge": [{"system": LOINC, "code": "18842-5", "display": "Discharge summary"}],
}
CATEGORY = {"coding": [{"system": V2_0074, "code": "PT", "display": "Physical Therapy"}]}
PDF = "application/pdf"
HTML = "text/html"


def _dt(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def diagnostic_report(
    report_id: str, course: Course, rendered: Rendered, *, issued: datetime, key: str
) -> dict[str, Any]:
    title = f"{course.title} - Patient/{course.patient}"
    results = list(dict.fromkeys(o for o in course.observations if o.startswith("Observation/")))[
        :MAX_RESULTS
    ]
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{escape(course.title)}</b></p>'
            f"<p>{escape(course.conclusion())}</p></div>",
        },
        "identifier": [{"system": SID_REPORT, "value": key}],
        "status": "final",
        "category": [CATEGORY],
        "code": {"coding": CODES[course.kind], "text": course.title},
        "subject": {"reference": f"Patient/{course.patient}"},
        "issued": _dt(issued),
        "performer": [{"display": "Relearn reports service"}],
        "conclusion": course.conclusion(),
        "presentedForm": [
            {
                "contentType": PDF,
                "language": "en",
                "data": base64.b64encode(rendered.pdf).decode("ascii"),
                "size": len(rendered.pdf),
                "title": f"{title} (PDF, {rendered.pages} pages)",
                "creation": _dt(issued),
            },
            {
                "contentType": HTML,
                "language": "en",
                "data": base64.b64encode(rendered.html.encode()).decode("ascii"),
                "size": len(rendered.html.encode()),
                "title": f"{title} (HTML)",
                "creation": _dt(issued),
            },
        ],
    }
    if course.start and course.end and course.end > course.start:
        resource["effectivePeriod"] = {"start": _dt(course.start), "end": _dt(course.end)}
    else:
        resource["effectiveDateTime"] = _dt(course.end or issued)
    if course.care_plan:
        resource["basedOn"] = [{"reference": course.care_plan}]
    if results:
        resource["result"] = [{"reference": r} for r in results]
    if course.gaps:
        resource["extension"] = [
            {"url": EXT_GAP, "valueString": f"{g.section}: {g.what}"} for g in course.gaps[:50]
        ]
    return resource


def presented(resource: dict[str, Any], content_type: str) -> bytes | None:
    """The decoded attachment of that content type, or None."""
    for form in resource.get("presentedForm", []):
        if form.get("contentType") == content_type and form.get("data"):
            return base64.b64decode(form["data"])
    return None


def kind_of(resource: dict[str, Any]) -> ReportKind:
    codes = {c.get("code") for c in (resource.get("code") or {}).get("coding", [])}
    return "discharge" if "18842-5" in codes else "progress"
