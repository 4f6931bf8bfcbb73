"""What the reports service cannot read is a gap written into the report, never a silent omission: here the
platform does not answer at all (nothing listens at the configured front door), and every section says so."""

from __future__ import annotations

from relearn.devtools.broker import free_port
from relearn.reports.config import Settings
from relearn.reports.domain.course import SECTIONS, apply_plan_history
from relearn.reports.domain.render import render
from relearn.reports.resources import DEFINITIONS
from relearn.reports.service import ReportService
from relearn.shared.service import fhir_store


def test_an_unreachable_platform_gives_a_report_of_gaps() -> None:
    port = free_port()  # nothing listens there
    settings = Settings(
        platform_url=f"http://127.0.0.1:{port}",
        token_url=f"http://127.0.0.1:{port}/auth/token",
        http_timeout_s=2,
    )
    service = ReportService(fhir_store(DEFINITIONS, settings), settings)
    course = service.gather("pat-1", "progress")
    sections = {g.section for g in course.gaps}
    assert sections >= {
        SECTIONS[0],
        SECTIONS[1],
        SECTIONS[3],
        SECTIONS[4],
        SECTIONS[5],
        SECTIONS[6],
        SECTIONS[7],
    }
    assert all("token endpoint" in g.what for g in course.gaps)
    assert "Gaps:" in course.conclusion()
    rendered = render(course, max_bytes=settings.max_report_bytes)
    assert rendered.pages == len(SECTIONS)


def test_stage_times_read_in_order_when_an_answer_is_recorded_after_the_course() -> None:
    from relearn.reports.domain.course import EXT_PLAN_CHANGE, Course, Limits

    def version(n: int, at: str, stage: str) -> dict[str, object]:
        return {
            "id": "cp",
            "meta": {"versionId": str(n), "lastUpdated": "2026-12-06T10:00:00Z"},
            "status": "active",
            "extension": [
                {
                    "url": EXT_PLAN_CHANGE,
                    "extension": [
                        {"url": "kind", "valueCode": "progressed"},
                        {"url": "at", "valueDateTime": at},
                        {"url": "reason", "valueString": f"v{n}"},
                    ],
                }
            ],
            "activity": [
                {
                    "extension": [
                        {
                            "url": "https://relearn.health/fhir/StructureDefinition/exercise-progression",
                            "extension": [{"url": "pattern", "valueCoding": {"code": "balance"}}],
                        }
                    ],
                    "outcomeCodeableConcept": [
                        {
                            "coding": [
                                {
                                    "system": "https://relearn.health/fhir/CodeSystem/competence-stage",
                                    "code": stage,
                                }
                            ]
                        }
                    ],
                }
            ],
        }

    course = Course(kind="progress", patient="p")
    apply_plan_history(
        course,
        [
            version(1, "2026-11-10T09:00:00Z", "conscious-competence"),
            version(2, "2026-12-06T09:00:00Z", "unconscious-competence"),  # approved today
            version(3, "2026-11-12T09:00:00Z", "conscious-competence"),
        ],
        Limits(),
    )
    [pattern] = course.patterns
    times = [s.at for s in pattern.steps]
    assert times == sorted(times)
    assert [d.reason for d in course.decisions] == ["v1", "v2", "v3"]
