"""What an EHR reads through the one FHIR base URL, and what a journey step records of it.

:class:`FhirReader` reads and searches as the read-only EHR client (following Bundle ``next`` links);
:class:`PlanChange`, :func:`exercises` and :func:`goal_achievement` take apart the Relearn extensions and
codes of CarePlan versions and Goals; :class:`Step` is what one step of the course leaves for an EHR to read.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relearn.devtools.journey.client import Api
from relearn.shared.fhir import CANONICAL_URL

EXT_PROGRESSION = f"{CANONICAL_URL}/StructureDefinition/exercise-progression"
EXT_PLAN_CHANGE = f"{CANONICAL_URL}/StructureDefinition/plan-change"
CS_STAGE = f"{CANONICAL_URL}/CodeSystem/competence-stage"
SID_DEVICE_STREAM = f"{CANONICAL_URL}/sid/device-stream"

# Competence stages, lowest first (the plan's CodeSystem competence-stage).
STAGES = (
    "unconscious-incompetence",
    "conscious-incompetence",
    "conscious-competence",
    "unconscious-competence",
)


@dataclass(frozen=True)
class PlanChange:
    """The plan-change extension of one CarePlan version: why it changed (the rule that fired)."""

    version: int
    kind: str
    reason: str
    evidence: tuple[str, ...]
    # Each criterion the decision used: {criterion, status, target, muscle?, session?, value?, source?, note?}
    criteria: tuple[dict[str, Any], ...] = ()

    @classmethod
    def of(cls, care_plan: Mapping[str, Any]) -> PlanChange:
        version = int(care_plan["meta"]["versionId"])
        kind, reason, evidence, criteria = "", "", [], []
        for ext in care_plan.get("extension", []):
            if ext.get("url") != EXT_PLAN_CHANGE:
                continue
            for part in ext.get("extension", []):
                if part["url"] == "kind":
                    kind = str(part["valueCode"])
                elif part["url"] == "reason":
                    reason = str(part["valueString"])
                elif part["url"] == "evidence":
                    evidence.append(str(part["valueReference"]["reference"]))
                elif part["url"] == "criterion":
                    criteria.append({p["url"]: _value(p) for p in part.get("extension", [])})
        return cls(version, kind, reason, tuple(evidence), tuple(criteria))

    def criteria_line(self) -> str:
        """The device and session criteria the decision used, e.g. ``sway-area 0.94 cm2 pass``."""
        out = []
        for c in self.criteria:
            if c.get("criterion") in ("sets", "reps", "quality", "assistance", "level"):
                continue
            value = c.get("value")
            shown = (
                f"{value.get('value')} {value.get('unit', '')}".strip() if isinstance(value, dict) else value
            )
            muscle = f" ({c['muscle']})" if c.get("muscle") else ""
            out.append(
                f"{c.get('criterion')}{muscle} {shown if shown is not None else '-'} {c.get('status')}"
            )
        return "; ".join(dict.fromkeys(out))


def _value(part: Mapping[str, Any]) -> Any:
    if "valueReference" in part:
        return part["valueReference"]["reference"]
    return next((v for k, v in part.items() if k.startswith("value")), None)


@dataclass(frozen=True)
class Exercise:
    """One CarePlan activity as an EHR reads it: pattern, side, levels per dimension, competence stage."""

    activity: str
    pattern: str
    side: str | None
    stage: str
    levels: dict[str, int]
    status: str | None


def exercises(care_plan: Mapping[str, Any]) -> dict[str, Exercise]:
    """Every exercise of a CarePlan version by pattern code (from the exercise-progression extension)."""
    out: dict[str, Exercise] = {}
    for activity in care_plan.get("activity", []):
        pattern, side, levels = "", None, {}
        for ext in activity.get("extension", []):
            if ext.get("url") != EXT_PROGRESSION:
                continue
            for part in ext.get("extension", []):
                if part["url"] == "pattern":
                    pattern = str(part["valueCoding"]["code"])
                elif part["url"] == "side":
                    side = str(part["valueCode"])
                elif part["url"] == "level":
                    sub = {p["url"]: p for p in part["extension"]}
                    levels[str(sub["dimension"]["valueCoding"]["code"])] = int(sub["step"]["valueInteger"])
        stage = ""
        for concept in activity.get("outcomeCodeableConcept", []):
            for coding in concept.get("coding", []):
                if coding.get("system") == CS_STAGE:
                    stage = str(coding["code"])
        status = (activity.get("detail") or {}).get("status")
        out[pattern] = Exercise(str(activity.get("id", "")), pattern, side, stage, levels, status)
    return out


LOINC = "http://loinc.org"
PROGRESS_NOTE = "11508-9"  # Physical therapy Progress note (with 11506-3 Progress note)
DISCHARGE_SUMMARY = "18842-5"


def report_codes(report: Mapping[str, Any]) -> set[str]:
    """The LOINC codes of a DiagnosticReport."""
    return {
        str(c.get("code")) for c in (report.get("code") or {}).get("coding", []) if c.get("system") == LOINC
    }


def presented_pdf(report: Mapping[str, Any]) -> bytes | None:
    """The PDF a DiagnosticReport presents (its application/pdf presentedForm), decoded."""
    for form in report.get("presentedForm", []):
        if form.get("contentType") == "application/pdf" and form.get("data"):
            return base64.b64decode(form["data"])
    return None


def goal_achievement(goal: Mapping[str, Any]) -> str | None:
    """A Goal's achievementStatus code (in-progress, improving, achieved, ...)."""
    for coding in (goal.get("achievementStatus") or {}).get("coding", []):
        return str(coding.get("code"))
    return None


@dataclass
class Step:
    """One step of the course and what an EHR reads after it."""

    name: str
    summary: str
    started_s: float  # since the journey began
    duration_s: float
    care_plan: dict[str, Any] | None = None  # the current CarePlan (GET CarePlan/<id>)
    versions: list[dict[str, Any]] = field(default_factory=list)  # CarePlan versions this step produced
    changes: list[PlanChange] = field(default_factory=list)  # their plan-change extensions, oldest first
    stages: dict[str, str] = field(default_factory=dict)  # pattern -> competence stage after the step
    levels: dict[str, dict[str, int]] = field(default_factory=dict)  # pattern -> dimension -> step
    observations: list[dict[str, Any]] = field(default_factory=list)  # the step's own (evaluation/session)
    device_metrics: list[dict[str, Any]] = field(default_factory=list)  # device-metric Observations
    encounter: dict[str, Any] | None = None
    procedures: list[dict[str, Any]] = field(default_factory=list)
    goals: list[dict[str, Any]] = field(default_factory=list)
    session: str | None = None  # the Encounter id of a session step
    streams: list[dict[str, Any]] = field(default_factory=list)  # the gateway's stream bindings, closed
    # pattern -> the device criteria the plan judged this session on, e.g. "sway-area 0.94 cm2 <= 10"
    device_checks: dict[str, list[str]] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(
        default_factory=list
    )  # questions of the engine the therapist answered
    data: dict[str, Any] = field(default_factory=dict)  # step-specific: responses of the domain APIs
    report: dict[str, Any] | None = None  # a DiagnosticReport the step produced (progress, discharge)
    report_pdf: Path | None = None  # its PDF (presentedForm), written to the journey's report directory

    @property
    def rules(self) -> list[str]:
        return [f"v{c.version} {c.kind}: {c.reason}" for c in self.changes]

    def metric_codes(self) -> set[str]:
        return {c["code"] for o in self.device_metrics for c in o["code"]["coding"]}

    def record_plan(self, history: Mapping[int, dict[str, Any]], seen_versions: int) -> None:
        """The CarePlan versions after ``seen_versions``, their plan changes, stages and levels."""
        self.versions = [history[v] for v in sorted(history) if v > seen_versions]
        self.changes = [PlanChange.of(cp) for cp in self.versions]
        self.care_plan = history[max(history)]
        for pattern, ex in exercises(self.care_plan).items():
            self.stages[pattern] = ex.stage
            self.levels[pattern] = ex.levels


class FhirReader:
    """Reads through the one FHIR base URL with the EHR's read-only token."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def read(self, reference: str) -> dict[str, Any]:
        body: dict[str, Any] = self.api.call(
            "GET", f"{self.api.urls.fhir_base}/{reference}", 200, reference, headers=self.api.ehr
        )
        return body

    def _entries(self, path: str, params: Mapping[str, str], what: str) -> Iterator[dict[str, Any]]:
        """The entries of every page of a Bundle, following its ``next`` links."""
        url: str | None = f"{self.api.urls.fhir_base}/{path}"
        query: dict[str, str] | None = {"_count": "100", **params}
        while url:
            bundle = self.api.call("GET", url, 200, what, params=query, headers=self.api.ehr)
            yield from bundle.get("entry", [])
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
            query = None

    def search(self, resource_type: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every match of a search."""
        return [
            e["resource"]
            for e in self._entries(resource_type, params, f"{resource_type} search")
            if e.get("search", {}).get("mode", "match") == "match" and "resource" in e
        ]

    def history(self, reference: str) -> dict[int, dict[str, Any]]:
        """Every version of a resource an EHR can read (``<reference>/_history``), by versionId."""
        return {
            int(e["resource"]["meta"]["versionId"]): e["resource"]
            for e in self._entries(f"{reference}/_history", {}, f"{reference.split('/')[0]} history")
            if "resource" in e
        }

    def device_metrics(self, stream: str) -> list[dict[str, Any]]:
        """The device-metric Observations of one gateway stream."""
        return self.search("Observation", {"identifier": f"{SID_DEVICE_STREAM}|{stream}"})
