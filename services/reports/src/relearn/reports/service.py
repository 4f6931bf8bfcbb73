"""Use cases of the reports service: generate a progress report or a discharge summary, read one back.

A report reads the course through the platform's front door (``repository.PlatformReader``, its own system
credential), assembles it (``domain.course``), draws it (``domain.render``) and stores it as a
DiagnosticReport with ``report.issued.v1`` in the same transaction. What could not be read is a gap in the
report, never a silent omission; only a report that cannot be drawn at all is refused.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlmodel import Session

from relearn.reports import events
from relearn.reports.config import Settings
from relearn.reports.domain.course import (
    CS_EVALUATION,
    EMG_ENVELOPE_CODE,
    ROM_CODES,
    SECTIONS,
    SESSION_ROM_CODE,
    STRENGTH_CODES,
    SWAY_AREA_CODE,
    Course,
    Limits,
    ReportKind,
    apply_adherence,
    apply_emg,
    apply_encounters,
    apply_goals,
    apply_outcomes,
    apply_plan_history,
    apply_rom_strength,
    apply_sway,
)
from relearn.reports.domain.render import Rendered, ReportTooLarge, render
from relearn.reports.mapper import diagnostic_report
from relearn.reports.repository import PlatformReader, SourceError, SourceNotFound
from relearn.reports.resources import DIAGNOSTIC_REPORT
from relearn.shared.fhir import FhirStore, NotFound, UnprocessableEntity, jsontext

logger = logging.getLogger(__name__)

_REPORT_IDS = uuid.UUID("5d0c6f2e-9a41-4c3b-8f7e-2b1d7a6c9e40")


def report_id_for(care_plan: str, version_id: int, kind: ReportKind) -> str:
    """The id of the report a plan version asks for: a replayed event writes the same DiagnosticReport."""
    return str(uuid.uuid5(_REPORT_IDS, f"{care_plan}|{version_id}|{kind}"))


@dataclass(frozen=True)
class Generated:
    id: str
    resource: dict[str, Any]
    course: Course
    rendered: Rendered


class ReportService:
    def __init__(
        self,
        store: FhirStore,
        settings: Settings,
        reader: Callable[[], PlatformReader] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._reader = reader or (lambda: PlatformReader(settings))
        self.limits = Limits(max_points=settings.max_points_per_plot, max_trials=settings.max_trials)

    # -- gathering ------------------------------------------------------------------------------------------

    def gather(self, patient: str, kind: ReportKind, care_plan: str | None = None) -> Course:
        """The course as the platform tells it now; each read that fails is a gap of its section."""
        course = Course(kind=kind, patient=patient)
        reader = self._reader()
        try:
            self._gather(reader, course, care_plan)
        finally:
            reader.close()
        return course

    def _gather(self, reader: PlatformReader, course: Course, care_plan: str | None) -> None:
        patient, limits = course.patient, self.limits
        plan_ref = _plan_ref(care_plan)
        goal_refs: set[str] | None = None
        try:
            if plan_ref is None:
                plans = reader.search("CarePlan", {"patient": patient})
                if plans:
                    latest = max(
                        plans,
                        key=lambda p: (
                            p.get("status") == "active",
                            (p.get("meta") or {}).get("lastUpdated", ""),
                        ),
                    )
                    plan_ref = f"CarePlan/{latest['id']}"
            if plan_ref is None:
                raise NotFound(f"patient: Patient/{patient} has no CarePlan to report on")
            try:
                versions = reader.history(plan_ref)
            except SourceNotFound:
                raise NotFound(f"carePlan: {plan_ref} is not known") from None
            if not versions:
                raise SourceError(f"{plan_ref} has no readable version")
            if any((v.get("subject") or {}).get("reference") != f"Patient/{patient}" for v in versions):
                raise UnprocessableEntity(f"carePlan: {plan_ref} is not a plan of Patient/{patient}")
            apply_plan_history(course, versions, limits)
            latest_version = max(versions, key=lambda v: int((v.get("meta") or {}).get("versionId", 0)))
            goal_refs = {str(g.get("reference")) for g in latest_version.get("goal", [])}
        except SourceError as exc:
            course.gap(SECTIONS[1], f"the plan could not be read ({exc})")
        targets: dict[str, float] = {}
        try:
            goals = reader.search("Goal", {"patient": patient})
            if goal_refs is not None:
                goals = [g for g in goals if f"Goal/{g.get('id')}" in goal_refs]
            targets = apply_goals(course, goals)
        except SourceError as exc:
            course.gap(SECTIONS[0], f"the goals could not be read ({exc})")
        try:
            apply_outcomes(course, reader.get("/evaluations/outcome-measures", {"patient": patient}), limits)
        except SourceError as exc:
            course.gap(SECTIONS[3], f"the outcome measures could not be read ({exc})")
        codes = [*ROM_CODES, *STRENGTH_CODES, SESSION_ROM_CODE]
        self._observations(
            reader,
            course,
            SECTIONS[4],
            codes,
            lambda found: apply_rom_strength(course, found, targets, limits),
        )
        self._observations(
            reader, course, SECTIONS[5], [SWAY_AREA_CODE], lambda f: apply_sway(course, f, limits)
        )
        self._observations(
            reader, course, SECTIONS[6], [EMG_ENVELOPE_CODE], lambda f: apply_emg(course, f, limits)
        )
        try:
            apply_encounters(course, reader.search("Encounter", {"patient": patient}))
        except SourceError as exc:
            course.gap(SECTIONS[7], f"the sessions could not be read ({exc})")
        for day in course.session_days[:1] + course.session_days[-1:]:
            at = datetime.combine(day, datetime.min.time(), UTC)
            course.start = min(filter(None, (course.start, at)), default=at)
            course.end = max(filter(None, (course.end, at)), default=at)
        try:
            last = (course.end or datetime.now(UTC)).date()
            first = max((course.start or datetime.now(UTC)).date(), last - timedelta(days=700))
            apply_adherence(
                course,
                reader.get(
                    f"/patients/{patient}/adherence",
                    {"from": _monday(first).isoformat(), "to": last.isoformat()},
                ),
            )
        except SourceError as exc:
            course.gap(SECTIONS[7], f"the adherence could not be read ({exc})")

    def _observations(
        self,
        reader: PlatformReader,
        course: Course,
        section: str,
        codes: list[str],
        apply: Callable[[list[dict[str, Any]]], None],
    ) -> None:
        try:
            found = reader.search(
                "Observation",
                {"patient": course.patient, "code": ",".join(f"{CS_EVALUATION}|{c}" for c in codes)},
            )
        except SourceError as exc:
            course.gap(section, f"the Observations could not be read ({exc})")
            return
        if len(found) >= self.settings.max_resources:
            course.gap(section, f"only the first {len(found)} Observations were read")
        apply(found)

    # -- use cases ------------------------------------------------------------------------------------------

    def generate(
        self,
        session: Session,
        *,
        patient: str,
        kind: ReportKind,
        care_plan: str | None = None,
        report_id: str | None = None,
        trigger: str | None = None,
    ) -> Generated:
        """Read, draw and store one report (a new DiagnosticReport, or a new version of ``report_id``)."""
        patient = patient.removeprefix("Patient/")
        course = self.gather(patient, kind, care_plan)
        try:
            rendered = render(course, max_bytes=self.settings.max_report_bytes)
        except ReportTooLarge as exc:
            raise UnprocessableEntity(str(exc)) from None
        rid = report_id or str(uuid.uuid4())
        now = datetime.now(UTC)
        key = trigger or f"on-demand|{rid}"
        resource = diagnostic_report(rid, course, rendered, issued=now, key=key)
        stored = self.store.update(session, DIAGNOSTIC_REPORT, rid, resource)
        events.report_issued(
            session,
            report=stored.relative_url,
            patient=patient,
            care_plan=course.care_plan,
            kind=kind,
            trigger=trigger,
        )
        logger.info(
            "report issued",
            extra={
                "report": stored.relative_url,
                "kind": kind,
                "pages": rendered.pages,
                "gaps": len(course.gaps),
            },
        )
        return Generated(rid, resource, course, rendered)

    def on_plan_version(self, session: Session, event_type: str, data: events.PlanVersionEvent) -> str | None:
        """A re-assessment applied (progress report) or a discharge (discharge summary); other plan
        versions ask for nothing. The report's id derives from the plan version (a replay rewrites it)."""
        if event_type == events.PLAN_DISCHARGED:
            kind: ReportKind = "discharge"
        elif event_type == events.PLAN_UPDATED and data.change == "reassessed":
            kind = "progress"
        else:
            return None
        rid = report_id_for(data.care_plan, data.version_id, kind)
        self.generate(
            session,
            patient=data.patient,
            kind=kind,
            care_plan=data.care_plan,
            report_id=rid,
            trigger=f"{data.care_plan}/_history/{data.version_id}",
        )
        return rid

    def request(
        self, session: Session, *, patient: str, kind: ReportKind, care_plan: str | None = None
    ) -> tuple[str, str | None]:
        """Ask for a report now: the plan it is about is checked (404 when the patient has none, or an unknown
        one; 422 another patient's), then ``report.requested.v1`` is staged and the worker draws it under the
        id returned. When the platform cannot be read now, the worker's report will say what it missed."""
        patient = patient.removeprefix("Patient/")
        plan_ref = _plan_ref(care_plan)
        reader = self._reader()
        try:
            if plan_ref is None:
                plans = reader.search("CarePlan", {"patient": patient})
                if not plans:
                    raise NotFound(f"patient: Patient/{patient} has no CarePlan to report on")
                latest = max(
                    plans,
                    key=lambda p: (p.get("status") == "active", (p.get("meta") or {}).get("lastUpdated", "")),
                )
                plan_ref = f"CarePlan/{latest['id']}"
            else:
                try:
                    plan = reader.read(plan_ref)
                except SourceNotFound:
                    raise NotFound(f"carePlan: {plan_ref} is not known") from None
                if (plan.get("subject") or {}).get("reference") != f"Patient/{patient}":
                    raise UnprocessableEntity(f"carePlan: {plan_ref} is not a plan of Patient/{patient}")
        except SourceError as exc:
            logger.warning("report requested while the platform cannot be read", extra={"error": str(exc)})
        finally:
            reader.close()
        rid = str(uuid.uuid4())
        events.report_requested(session, report=rid, patient=patient, kind=kind, care_plan=plan_ref)
        return rid, plan_ref

    def on_request(self, session: Session, data: events.ReportRequested) -> None:
        """Draw a report requested on demand, under the id its requester was given."""
        self.generate(
            session, patient=data.patient, kind=data.kind, care_plan=data.care_plan, report_id=data.report
        )

    def read(self, session: Session, report_id: str, *, patient: str | None) -> dict[str, Any]:
        stored = self.store.read(session, DIAGNOSTIC_REPORT, report_id, patient_restriction=patient)
        resource: dict[str, Any] = jsontext.loads(stored.text)
        return resource


def _plan_ref(care_plan: str | None) -> str | None:
    if not care_plan:
        return None
    return care_plan if care_plan.startswith("CarePlan/") else f"CarePlan/{care_plan}"


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())
