"""One patient's course as a report shows it, assembled from what the platform answered (FHIR JSON, the
evaluation's outcome trends, the sessions service's adherence): pure functions, no HTTP.

What could not be read is a :class:`Gap` the report prints; nothing is dropped silently. Every series is
bounded (``Limits``): the latest points and trials are kept and the cut is said.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from relearn.shared.fhir import CANONICAL_URL

ReportKind = Literal["progress", "discharge"]

EXT_PROGRESSION = f"{CANONICAL_URL}/StructureDefinition/exercise-progression"
EXT_PLAN_CHANGE = f"{CANONICAL_URL}/StructureDefinition/plan-change"
CS_STAGE = f"{CANONICAL_URL}/CodeSystem/competence-stage"
CS_EVALUATION = f"{CANONICAL_URL}/CodeSystem/neuromuscular-evaluation"
SID_DEVICE_STREAM = f"{CANONICAL_URL}/sid/device-stream"

# Competence stages, lowest first (the plan's CodeSystem competence-stage).
STAGES: tuple[str, ...] = (
    "unconscious-incompetence",
    "conscious-incompetence",
    "conscious-competence",
    "unconscious-competence",
)
STAGE_LABELS: tuple[str, ...] = (
    "Unconscious incompetence",
    "Conscious incompetence",
    "Conscious competence",
    "Unconscious competence",
)

# The codes of the evaluation's CodeSystem a report reads as range of motion / strength.
ROM_CODES: tuple[str, ...] = tuple(
    f"rom-{joint}-{motion}"
    for joint, motions in (
        ("shoulder", ("flexion", "extension", "abduction", "internal-rotation", "external-rotation")),
        ("elbow", ("flexion", "extension")),
        ("forearm", ("pronation", "supination")),
        ("wrist", ("flexion", "extension", "radial-deviation", "ulnar-deviation")),
        ("hip", ("flexion", "extension", "abduction", "adduction", "internal-rotation", "external-rotation")),
        ("knee", ("flexion", "extension")),
        ("ankle", ("dorsiflexion", "plantarflexion", "inversion", "eversion")),
    )
    for motion in motions
)
STRENGTH_CODES: tuple[str, ...] = ("mmt-grade",)
SESSION_ROM_CODE = "rom-exercise-active"
SWAY_AREA_CODE = "sway-ellipse-area"
EMG_ENVELOPE_CODE = "emg-envelope-peak"

# Section headings: the PDF's and the HTML's, in order (tests look for each in the PDF's text layer).
SECTIONS: tuple[str, ...] = (
    "Summary and goals",
    "Competence stage of each movement pattern",
    "Progressions and regressions",
    "Outcome measures against MCID",
    "Range of motion and strength against goals",
    "Sway ellipses per trial",
    "EMG envelopes against threshold",
    "Adherence calendar",
)


@dataclass(frozen=True)
class Limits:
    max_points: int = 400
    max_trials: int = 12
    max_decisions: int = 60


@dataclass(frozen=True)
class Gap:
    """Something the report could not read or show, and why (printed in the report and its conclusion)."""

    section: str
    what: str


@dataclass(frozen=True)
class StageStep:
    at: datetime
    stage: int  # index into STAGES


@dataclass(frozen=True)
class PatternCourse:
    pattern: str
    label: str
    steps: tuple[StageStep, ...]


@dataclass(frozen=True)
class DecisionRow:
    at: datetime
    version: int
    kind: str
    reason: str


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float
    text: str | None = None  # as recorded, when the value is a grade (3+)


@dataclass(frozen=True)
class Trend:
    label: str
    unit: str
    points: tuple[Point, ...]
    target: float | None = None
    target_text: str | None = None
    mcid: float | None = None
    mcid_source: str | None = None
    better: Literal["higher", "lower"] = "higher"
    verdict: str | None = None  # improved-beyond-mcid | ... (the evaluation's words) or the goal's

    @property
    def verdict_text(self) -> str:
        if self.verdict:
            return self.verdict.replace("-", " ").replace("mcid", "MCID")
        return "single value" if len(self.points) < 2 else "no MCID published"


@dataclass(frozen=True)
class SwayTrial:
    at: datetime
    stream: str
    area_cm2: float
    observation: str


@dataclass(frozen=True)
class EmgTrace:
    at: datetime
    stream: str
    channel: str
    period_ms: float
    values: tuple[float, ...]
    unit: str
    threshold: float | None
    observations: tuple[str, ...]


@dataclass(frozen=True)
class AdherenceWeek:
    week: str
    prescribed: float
    done: float
    percent: float | None


@dataclass(frozen=True)
class GoalRow:
    id: str
    description: str
    achievement: str
    lifecycle: str
    targets: str


@dataclass
class Course:
    kind: ReportKind
    patient: str
    care_plan: str | None = None
    plan_status: str | None = None
    plan_title: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    goals: list[GoalRow] = field(default_factory=list)
    patterns: list[PatternCourse] = field(default_factory=list)
    decisions: list[DecisionRow] = field(default_factory=list)
    outcomes: list[Trend] = field(default_factory=list)
    rom_strength: list[Trend] = field(default_factory=list)
    sway: list[SwayTrial] = field(default_factory=list)
    sway_target: float | None = None
    emg: list[EmgTrace] = field(default_factory=list)
    adherence: list[AdherenceWeek] = field(default_factory=list)
    session_days: list[date] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    notes: list[Gap] = field(default_factory=list)  # what the bounds left out (read, but not all drawn)
    observations: list[str] = field(default_factory=list)  # every Observation the report used

    def gap(self, section: str, what: str) -> None:
        """Something that could not be read: printed, in the conclusion and an extension of the report."""
        self.gaps.append(Gap(section, what))

    def note(self, section: str, what: str) -> None:
        """Something read but left out by a bound (the oldest trials, plan changes): printed."""
        self.notes.append(Gap(section, what))

    @property
    def title(self) -> str:
        return "Discharge summary" if self.kind == "discharge" else "Progress report"

    def goals_met(self) -> tuple[int, int]:
        return sum(1 for g in self.goals if g.achievement == "achieved"), len(self.goals)

    def conclusion(self) -> str:
        met, total = self.goals_met()
        parts = [f"{self.title}: {met} of {total} goals achieved."]
        if self.patterns:
            stages = ", ".join(
                f"{p.label}: {STAGE_LABELS[p.steps[-1].stage].lower()}" for p in self.patterns if p.steps
            )
            parts.append(f"Competence: {stages}.")
        beyond = [t.label for t in self.outcomes if t.verdict == "improved-beyond-mcid"]
        if self.outcomes:
            parts.append(
                "Improved beyond MCID: "
                + (", ".join(beyond) if beyond else "none")
                + f" (of {len(self.outcomes)})."
            )
        if self.gaps:
            parts.append("Gaps: " + "; ".join(f"{g.section}: {g.what}" for g in self.gaps) + ".")
        return " ".join(parts)


# -- parsing helpers ----------------------------------------------------------------------------------------


def parse_time(text: str | None) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime (a date is midnight UTC); None if unreadable."""
    if not text:
        return None
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _codes(concept: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    return [(str(c.get("system", "")), str(c.get("code", ""))) for c in (concept or {}).get("coding", [])]


def local_code(resource: Mapping[str, Any]) -> str | None:
    """The resource's code in the evaluation's CodeSystem (or its first code)."""
    codes = _codes(resource.get("code"))
    for system, code in codes:
        if system == CS_EVALUATION:
            return code
    return codes[0][1] if codes else None


def _effective(obs: Mapping[str, Any]) -> datetime | None:
    return parse_time(obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start"))


def _thin(points: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` items, evenly spaced, the last kept."""
    if len(points) <= n:
        return list(points)
    step = len(points) / n
    picked = [points[min(len(points) - 1, int(i * step))] for i in range(n - 1)]
    return [*picked, points[-1]]


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def first_number(text: Any) -> float | None:
    if isinstance(text, (int, float)):
        return float(text)
    if isinstance(text, Mapping):
        return first_number(text.get("value"))
    m = _NUMBER.search(str(text or ""))
    return float(m.group()) if m else None


# -- the plan: stages over time, decisions, goals -----------------------------------------------------------


def _change(version: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"criteria": []}
    for ext in version.get("extension", []):
        if ext.get("url") != EXT_PLAN_CHANGE:
            continue
        for part in ext.get("extension", []):
            url = part.get("url")
            if url == "kind":
                out["kind"] = part.get("valueCode")
            elif url == "at":
                out["at"] = part.get("valueDateTime")
            elif url == "reason":
                out["reason"] = part.get("valueString")
            elif url == "criterion":
                crit = {}
                for p in part.get("extension", []):
                    value = next((v for k, v in p.items() if k.startswith("value")), None)
                    crit[str(p.get("url"))] = value
                out["criteria"].append(crit)
    return out


def _activities(version: Mapping[str, Any]) -> dict[str, tuple[str, int | None]]:
    """pattern code -> (label, stage index) of one CarePlan version."""
    out: dict[str, tuple[str, int | None]] = {}
    for activity in version.get("activity", []):
        pattern, side = "", ""
        for ext in activity.get("extension", []):
            if ext.get("url") != EXT_PROGRESSION:
                continue
            for part in ext.get("extension", []):
                if part.get("url") == "pattern":
                    coding = part.get("valueCoding", {})
                    pattern = str(coding.get("code", ""))
                    label = str(coding.get("display") or pattern)
                elif part.get("url") == "side":
                    side = str(part.get("valueCode", ""))
        if not pattern:
            continue
        label = (activity.get("reference") or {}).get("display") or pattern
        if side and side not in label:
            label = f"{label} ({side})"
        stage: int | None = None
        for concept in activity.get("outcomeCodeableConcept", []):
            for system, code in _codes(concept):
                if system == CS_STAGE and code in STAGES:
                    stage = STAGES.index(code)
        out[pattern] = (label, stage)
    return out


def apply_plan_history(course: Course, versions: Iterable[Mapping[str, Any]], limits: Limits) -> None:
    """Stages over time and every decision, from the CarePlan's versions (any order)."""
    ordered = sorted(versions, key=lambda v: int((v.get("meta") or {}).get("versionId", 0)))
    # When each version took effect: its plan change's time, else when it was stored. A therapist's answer
    # recorded later than the course it belongs to (an approval given today of a session dated last week) is
    # placed no later than the versions after it, so the course reads in order.
    times: list[datetime | None] = [
        parse_time(_change(v).get("at")) or parse_time((v.get("meta") or {}).get("lastUpdated"))
        for v in ordered
    ]
    later: datetime | None = None
    for i in range(len(times) - 1, -1, -1):
        t = times[i]
        if t is not None and later is not None and t > later:
            times[i] = later
        later = times[i] or later
    steps: dict[str, list[StageStep]] = defaultdict(list)
    labels: dict[str, str] = {}
    sway_targets: list[float] = []
    for v, at in zip(ordered, times, strict=True):
        change = _change(v)
        if at is None:
            continue
        version = int((v.get("meta") or {}).get("versionId", 0))
        for pattern, (label, stage) in _activities(v).items():
            labels.setdefault(pattern, label)
            if stage is not None and (not steps[pattern] or steps[pattern][-1].stage != stage):
                steps[pattern].append(StageStep(at, stage))
        kind = str(change.get("kind") or "")
        if kind and kind != "drafted":
            course.decisions.append(DecisionRow(at, version, kind, str(change.get("reason") or "")))
        for crit in change["criteria"]:
            name = str(crit.get("criterion") or "")
            if name in ("sway-area", "sway-ellipse-area") and (target := first_number(crit.get("target"))):
                sway_targets.append(target)
        course.start = min(filter(None, (course.start, at)), default=at)
        course.end = max(filter(None, (course.end, at)), default=at)
    if ordered:
        last = ordered[-1]
        course.care_plan = f"CarePlan/{last.get('id')}"
        course.plan_status = str(last.get("status", ""))
        course.plan_title = last.get("title")
    course.patterns = [PatternCourse(p, labels[p], tuple(s)) for p, s in steps.items() if s]
    if len(course.decisions) > limits.max_decisions:
        dropped = len(course.decisions) - limits.max_decisions
        course.decisions = course.decisions[-limits.max_decisions :]
        course.note("Progressions and regressions", f"the {dropped} oldest plan changes are not listed")
    if sway_targets:
        course.sway_target = sway_targets[-1]


def _target_text(target: Mapping[str, Any]) -> str:
    measure = (target.get("measure") or {}).get("text") or local_code({"code": target.get("measure")})
    q = target.get("detailQuantity") or {}
    if q:
        comparator = q.get("comparator", "")
        return f"{measure} {comparator}{q.get('value')} {q.get('unit', '')}".strip()
    return str(measure or "")


def apply_goals(course: Course, goals: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The Goals (as they stand now) and, per measure code, the numeric target they set."""
    targets: dict[str, float] = {}
    for g in goals:
        achievement = next((c for _, c in _codes(g.get("achievementStatus"))), "in-progress")
        texts = []
        for t in g.get("target", []):
            texts.append(_target_text(t))
            code = next((c for _, c in _codes(t.get("measure"))), None)
            value = (t.get("detailQuantity") or {}).get("value")
            if code and isinstance(value, (int, float)):
                targets[code] = float(value)
        course.goals.append(
            GoalRow(
                id=str(g.get("id", "")),
                description=str((g.get("description") or {}).get("text", "")),
                achievement=achievement,
                lifecycle=str(g.get("lifecycleStatus", "")),
                targets="; ".join(t for t in texts if t),
            )
        )
    return targets


# -- outcome measures, ROM and strength ---------------------------------------------------------------------


def apply_outcomes(course: Course, trends: Mapping[str, Any], limits: Limits) -> None:
    """``GET /evaluations/outcome-measures``: each measure's series against its MCID."""
    for m in trends.get("measures", []):
        points = []
        for p in m.get("series", []):
            at = parse_time(p.get("effective"))
            if at is None or not isinstance(p.get("value"), (int, float)):
                continue
            points.append(Point(at, float(p["value"]), p.get("grade")))
            if p.get("observation"):
                course.observations.append(str(p["observation"]))
        if not points:
            continue
        label = str(m.get("label") or m.get("measure"))
        extra = " ".join(x for x in (m.get("side"), m.get("muscleGroup")) if x)
        mcid = m.get("mcid") or {}
        course.outcomes.append(
            Trend(
                label=f"{label} ({extra})" if extra else label,
                unit=str(m.get("unit", "")),
                points=tuple(_thin(sorted(points, key=lambda p: p.at), limits.max_points)),
                mcid=first_number(mcid.get("value")),
                mcid_source=mcid.get("source"),
                better="lower" if m.get("better") == "lower" else "higher",
                verdict=m.get("verdict"),
            )
        )


_MMT = re.compile(r"^\s*([0-5])\s*([+-]?)\s*$")


def mmt_value(text: str) -> float | None:
    """A 0-5 manual muscle test grade with its +/- as a number for plotting (3+ -> 3.33)."""
    m = _MMT.match(text)
    if not m:
        return None
    return int(m.group(1)) + {"+": 1 / 3, "-": -1 / 3, "": 0.0}[m.group(2)]


def _side(obs: Mapping[str, Any]) -> str:
    site = obs.get("bodySite") or {}
    if site.get("text"):
        return str(site["text"])
    for c in site.get("coding", []):
        if c.get("display"):
            return str(c["display"])
    return ""


def apply_rom_strength(
    course: Course, observations: Iterable[Mapping[str, Any]], targets: Mapping[str, float], limits: Limits
) -> None:
    """Range of motion (evaluation and exercise goniometry) and manual muscle grades over time, each against
    the goal that targets it (no MCID is published for goniometric ROM or MMT grades)."""
    series: dict[tuple[str, str], list[Point]] = defaultdict(list)
    units: dict[tuple[str, str], str] = {}
    labels: dict[tuple[str, str], str] = {}
    for obs in observations:
        code = local_code(obs)
        at = _effective(obs)
        if code is None or at is None:
            continue
        key = (code, _side(obs))
        if "valueQuantity" in obs and isinstance(obs["valueQuantity"].get("value"), (int, float)):
            value, text = float(obs["valueQuantity"]["value"]), None
            units[key] = str(obs["valueQuantity"].get("unit") or obs["valueQuantity"].get("code") or "")
        elif "valueCodeableConcept" in obs:
            text = str(obs["valueCodeableConcept"].get("text") or "")
            grade = mmt_value(text)
            if grade is None:
                continue
            value = grade
            units[key] = "MMT grade (0-5)"
        else:
            continue
        labels[key] = str((obs.get("code") or {}).get("text") or code.replace("-", " "))
        series[key].append(Point(at, value, text))
        course.observations.append(f"Observation/{obs.get('id')}")
    for key, points in sorted(series.items()):
        code, side = key
        target = targets.get(code)
        course.rom_strength.append(
            Trend(
                label=f"{labels[key]} - {side}" if side else labels[key],
                unit=units.get(key, ""),
                points=tuple(_thin(sorted(points, key=lambda p: p.at), limits.max_points)),
                target=target,
                target_text=f"goal {target:g}" if target is not None else None,
            )
        )


# -- device metrics: sway per trial, EMG envelopes ----------------------------------------------------------


def _stream(obs: Mapping[str, Any]) -> str:
    for ident in obs.get("identifier", []):
        if ident.get("system") == SID_DEVICE_STREAM:
            return str(ident.get("value"))
    return str((obs.get("encounter") or {}).get("reference") or obs.get("id"))


def _span(obs: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    period = obs.get("effectivePeriod") or {}
    start, end = parse_time(period.get("start")), parse_time(period.get("end"))
    if start is None:
        at = _effective(obs)
        return (at, at) if at else None
    return start, end or start


def apply_sway(course: Course, observations: Iterable[Mapping[str, Any]], limits: Limits) -> None:
    """One 95 % ellipse area per balance trial (stream): the Observation covering the longest span (a trial
    summary when there is one, else the mean of its windows)."""
    by_stream: dict[str, list[tuple[datetime, datetime, float, str]]] = defaultdict(list)
    for obs in observations:
        if "device" not in obs:  # a clinical balance test of an evaluation, not a balance-board trial
            continue
        span = _span(obs)
        value = (obs.get("valueQuantity") or {}).get("value")
        if span is None or not isinstance(value, (int, float)):
            continue
        by_stream[_stream(obs)].append((span[0], span[1], float(value), f"Observation/{obs.get('id')}"))
    trials = []
    for stream, rows in by_stream.items():
        longest = max(rows, key=lambda r: r[1] - r[0])
        starts = [r[0] for r in rows]
        whole = min(starts) == longest[0] and max(r[1] for r in rows) == longest[1]
        area = longest[2] if whole or len(rows) == 1 else statistics.fmean(r[2] for r in rows)
        trials.append(SwayTrial(min(starts), stream, area, longest[3]))
    trials.sort(key=lambda t: t.at)
    if len(trials) > limits.max_trials:
        course.note(
            "Sway ellipses per trial", f"the {len(trials) - limits.max_trials} oldest trials are not drawn"
        )
        trials = trials[-limits.max_trials :]
    course.sway = trials
    course.observations.extend(t.observation for t in trials)


def _sampled(obs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for comp in obs.get("component", []):
        if "valueSampledData" in comp:
            return dict(comp["valueSampledData"])
    return obs.get("valueSampledData")


def onset_threshold(
    values: Sequence[float], period_ms: float, baseline_s: float = 0.5, h: float = 3.0
) -> float | None:
    """Baseline mean + h SD of the envelope's first ``baseline_s`` (the gateway's onset rule, on the
    envelope)."""
    n = max(2, int(baseline_s * 1000 / period_ms)) if period_ms > 0 else 0
    base = [v for v in values[:n] if math.isfinite(v)]
    if len(base) < 2:
        return None
    return statistics.fmean(base) + h * statistics.pstdev(base)


def apply_emg(
    course: Course, observations: Iterable[Mapping[str, Any]], limits: Limits, trials: int = 4
) -> None:
    """The linear envelope per trial and channel (SampledData of ``emg-envelope-peak``), windows joined in
    time order; the latest ``trials`` trials are drawn."""
    parts: dict[tuple[str, str], list[tuple[datetime, Mapping[str, Any], str, str]]] = defaultdict(list)
    for obs in observations:
        data = _sampled(obs)
        span = _span(obs)
        if data is None or span is None:
            continue
        unit = str((data.get("origin") or {}).get("unit") or (data.get("origin") or {}).get("code") or "")
        parts[(_stream(obs), _side(obs) or "channel")].append(
            (span[0], data, unit, f"Observation/{obs.get('id')}")
        )
    traces = []
    for (stream, channel), rows in parts.items():
        rows.sort(key=lambda r: r[0])
        values: list[float] = []
        period = float(rows[0][1].get("period") or 0.0)
        for _, data, _, _ in rows:
            origin = first_number(data.get("origin")) or 0.0
            factor = float(data.get("factor") or 1.0)
            for token in str(data.get("data") or "").split():
                try:
                    values.append(origin + factor * float(token))
                except ValueError:  # E / L / U: no value at that sample
                    values.append(math.nan)
        if not values or period <= 0:
            continue
        step = max(1, math.ceil(len(values) / limits.max_points))
        drawn = values[::step]
        traces.append(
            EmgTrace(
                at=rows[0][0],
                stream=stream,
                channel=channel,
                period_ms=period * step,
                values=tuple(drawn),
                unit=rows[0][2],
                threshold=onset_threshold(values, period),
                observations=tuple(r[3] for r in rows),
            )
        )
    streams = sorted({(t.at, t.stream) for t in traces})
    keep = {s for _, s in streams[-trials:]}
    if len(streams) > trials:
        course.note(
            "EMG envelopes against threshold",
            f"the latest {trials} of {len(streams)} EMG trials are drawn",
        )
    course.emg = sorted((t for t in traces if t.stream in keep), key=lambda t: (t.at, t.channel))
    course.observations.extend(o for t in course.emg for o in t.observations)


# -- adherence and sessions ---------------------------------------------------------------------------------


def apply_adherence(course: Course, adherence: Mapping[str, Any]) -> None:
    """Per ISO week: bouts done against those prescribed by the plan version in force (sessions service)."""
    for w in adherence.get("weeks", []):
        course.adherence.append(
            AdherenceWeek(
                week=str(w.get("week")),
                prescribed=float(w.get("prescribed") or 0),
                done=float(w.get("done") or 0),
                percent=float(w["percent"]) if isinstance(w.get("percent"), (int, float)) else None,
            )
        )


def apply_encounters(course: Course, encounters: Iterable[Mapping[str, Any]]) -> None:
    days = set()
    for e in encounters:
        at = parse_time((e.get("period") or {}).get("start"))
        if at is not None:
            days.add(at.date())
    course.session_days = sorted(days)
