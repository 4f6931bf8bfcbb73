"""Every code the evaluation service writes, in one place."""

# Local codes live in the published CodeSystem ``codesystem/relearn-evaluation-codesystem.json``
# (canonical :data:`EVALUATION_CS`); this module reads it, so a mapper cannot use a local code
# the CodeSystem does not define (:func:`local` raises :class:`UnknownCode`). External codes are
# the ones verified for us:
#
# - LOINC (brief §2): pain 0-10 numeric rating 72514-3, Timed Up and Go 89423-8, NIH Toolbox
#   standing balance panel 83142-0.
# - SNOMED CT, checked against published value sets and maps: laterality (FHIR's
#   bodystructure-laterality value set), severity (condition-severity), joint structures (DICOM
#   body part maps), referral conditions. Joints without a confirmed code carry text only.
#
# :data:`MEASURES` ties each measurement the domain API accepts (its key, e.g. ``"tug"``,
# ``"rom-knee-flexion"``) to its coding, UCUM unit and observation category.

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

from relearn.shared.fhir import CANONICAL_URL

EVALUATION_CS = f"{CANONICAL_URL}/CodeSystem/neuromuscular-evaluation"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
# Business identifier of one item of an evaluation: value is "<panel id>/<item path>".
EVALUATION_ITEM_SYSTEM = f"{CANONICAL_URL}/sid/evaluation-item"

CODESYSTEM_FILE = "relearn-evaluation-codesystem.json"
# Manual muscle test grades, each grade with its modifier one code ("3+"): the value of an mmt-grade
# Observation. Published beside the evaluation CodeSystem.
MMT_GRADE_CS = f"{CANONICAL_URL}/CodeSystem/mmt-grade"
MMT_CODESYSTEM_FILE = "relearn-mmt-grade-codesystem.json"

Coding = dict[str, str]


class UnknownCode(KeyError):
    """A local code that the published CodeSystem does not define."""


def coding(system: str, code: str, display: str | None = None) -> Coding:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


# --- LOINC (verified per the brief) -------------------------------------------------------------
LOINC_PAIN_NRS = coding(LOINC, "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported")
LOINC_TUG = coding(
    LOINC, "89423-8", "Time to rise from chair, walk 10 feet and back, and return to sitting [TUG]"
)
# Verified code, no verified display; the evaluation mappers do not use it (the Toolbox app scores its
# own poses), it is here for the device gateway's standing-balance protocols.
LOINC_NIH_TOOLBOX_STANDING_BALANCE_PANEL = coding(LOINC, "83142-0")

# --- SNOMED CT ----------------------------------------------------------------------------------
Side = Literal["left", "right", "bilateral"]
SNOMED_LATERALITY = coding(SNOMED, "272741003", "Laterality")
LATERALITY: dict[str, Coding] = {
    "left": coding(SNOMED, "7771000", "Left"),
    "right": coding(SNOMED, "24028007", "Right"),
    "bilateral": coding(SNOMED, "51440002", "Bilateral"),
}
SNOMED_SEVERITY = coding(SNOMED, "246112005", "Severity")
SEVERITY: dict[str, Coding] = {
    "mild": coding(SNOMED, "255604002", "Mild"),
    "moderate": coding(SNOMED, "6736007", "Moderate"),
    "severe": coding(SNOMED, "24484000", "Severe"),
}
# Joint structures for Observation.bodySite. The forearm (radio-ulnar joints) has no confirmed code.
JOINT_BODY_SITE: dict[str, Coding] = {
    "shoulder": coding(SNOMED, "85537004", "Glenohumeral joint structure"),
    "elbow": coding(SNOMED, "16953009", "Elbow joint structure"),
    "wrist": coding(SNOMED, "74670003", "Wrist joint structure"),
    "hip": coding(SNOMED, "24136001", "Hip joint structure"),
    "knee": coding(SNOMED, "49076000", "Knee joint structure"),
    "ankle": coding(SNOMED, "70258002", "Ankle joint structure"),
}
REFERRAL_CONDITION_SNOMED: dict[str, Coding] = {
    "stroke": coding(SNOMED, "230690007", "Cerebrovascular accident"),
    "brain-injury": coding(SNOMED, "127295002", "Traumatic brain injury"),
    "trauma": coding(SNOMED, "417746004", "Traumatic injury"),
}

# ICD-10-CM beside SNOMED CT where one code fits the referral kind without knowing more: a stroke NOS is
# indexed to I63.9 "Cerebral infarction, unspecified". Brain injury and trauma need the injury and the
# encounter (7th character) to pick a code, so they carry the ICD-10-CM code only when the client sends one.
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
REFERRAL_CONDITION_ICD10CM: dict[str, Coding] = {
    "stroke": coding(ICD10CM, "I63.9", "Cerebral infarction, unspecified"),
}

# --- Condition (US Core 6.1 Condition profiles) -------------------------------------------------
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
US_CORE_CONDITION_PROFILE = {
    "problem-list-item": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-problems-health-concerns",
    "encounter-diagnosis": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-encounter-diagnosis",
}
CONDITION_CATEGORY_DISPLAY = {
    "problem-list-item": "Problem List Item",
    "encounter-diagnosis": "Encounter Diagnosis",
}
CONDITION_CLINICAL_DISPLAY = {
    "active": "Active",
    "recurrence": "Recurrence",
    "relapse": "Relapse",
    "inactive": "Inactive",
    "remission": "Remission",
    "resolved": "Resolved",
}

# --- Observation categories and interpretations -------------------------------------------------
CategoryCode = Literal["exam", "survey", "social-history", "activity", "vital-signs"]
_CATEGORY_DISPLAY = {
    "exam": "Exam",
    "survey": "Survey",
    "social-history": "Social History",
    "activity": "Activity",
    "vital-signs": "Vital Signs",
}


def category(code: str) -> dict[str, Any]:
    """The ``Observation.category`` CodeableConcept for a standard category code."""
    return {"coding": [coding(OBSERVATION_CATEGORY, code, _CATEGORY_DISPLAY[code])]}


INTERPRETATION_LOW = coding(INTERPRETATION, "L", "Low")
INTERPRETATION_HIGH = coding(INTERPRETATION, "H", "High")
INTERPRETATION_NORMAL = coding(INTERPRETATION, "N", "Normal")

UNIT_DISPLAY = {
    "deg": "deg",
    "s": "s",
    "ms": "ms",
    "cm": "cm",
    "cm2": "cm2",
    "cm/s": "cm/s",
    "{score}": "score",
    "%": "%",
    "Hz": "Hz",
    "uV": "uV",
    "a": "years",
}


def with_unit(value: float, unit: str) -> str:
    """A number and its unit for prose: ``90 deg``, ``13.5 s``; scores stand alone (``4``)."""
    number = str(int(value)) if float(value).is_integer() else str(value)
    return number if unit == "{score}" else f"{number} {UNIT_DISPLAY.get(unit, unit)}"


def quantity(value: float, unit: str) -> dict[str, Any]:
    """A UCUM Quantity; whole numbers stay integers so ``90`` is not written as ``90.0``."""
    number: float | int = int(value) if float(value).is_integer() else value
    return {"value": number, "unit": UNIT_DISPLAY.get(unit, unit), "system": UCUM, "code": unit}


# --- The local CodeSystem -----------------------------------------------------------------------
@dataclass(frozen=True)
class Concept:
    code: str
    display: str
    definition: str
    parent: str | None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def selectable(self) -> bool:
        return not self.properties.get("notSelectable", False)

    def coding(self) -> Coding:
        return coding(EVALUATION_CS, self.code, self.display)


def _shipped(name: str) -> dict[str, Any]:
    text = resources.files("relearn.evaluation").joinpath("codesystem", name).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def codesystem() -> dict[str, Any]:
    """The published CodeSystem resource (parsed once; treat as read-only)."""
    return _shipped(CODESYSTEM_FILE)


@cache
def mmt_codesystem() -> dict[str, Any]:
    """The manual muscle test grade CodeSystem (parsed once; treat as read-only)."""
    return _shipped(MMT_CODESYSTEM_FILE)


def codesystems() -> list[dict[str, Any]]:
    """Every CodeSystem the evaluation service publishes."""
    return [codesystem(), mmt_codesystem()]


def mmt_grade(grade: str) -> Coding:
    """The Coding of a manual muscle test grade (``"3+"``); raises :class:`UnknownCode` for another."""
    for c in mmt_codesystem()["concept"]:
        if c["code"] == grade:
            return coding(MMT_GRADE_CS, grade, c["display"])
    raise UnknownCode(f"{grade!r} is not in {MMT_GRADE_CS}")


def mmt_ordinal(grade: str) -> float:
    """The grade's numeric rank (base grade, a modifier counting one third): ``"3+"`` -> 3.33."""
    for c in mmt_codesystem()["concept"]:
        if c["code"] == grade:
            return float(next(p["valueDecimal"] for p in c["property"] if p["code"] == "ordinal"))
    raise UnknownCode(f"{grade!r} is not in {MMT_GRADE_CS}")


def _property_value(prop: dict[str, Any]) -> Any:
    for key, value in prop.items():
        if key.startswith("value"):
            return value
    return None


@cache
def concepts() -> dict[str, Concept]:
    """Every concept of the CodeSystem by code, parents before children."""
    out: dict[str, Concept] = {}

    def walk(items: list[dict[str, Any]], parent: str | None) -> None:
        for item in items:
            props = {p["code"]: _property_value(p) for p in item.get("property", [])}
            out[item["code"]] = Concept(item["code"], item["display"], item["definition"], parent, props)
            walk(item.get("concept", []), item["code"])

    walk(codesystem()["concept"], None)
    return out


def concept(code: str) -> Concept:
    try:
        return concepts()[code]
    except KeyError:
        raise UnknownCode(f"{code!r} is not in {EVALUATION_CS}") from None


def local(code: str) -> Coding:
    """The Coding of a local code; raises :class:`UnknownCode` for a code the CodeSystem lacks."""
    return concept(code).coding()


def children(parent: str) -> list[Concept]:
    return [c for c in concepts().values() if c.parent == parent]


# --- Measures: what the domain API measures, and how it is coded ---------------------------------
MeasureKind = Literal["range-of-motion", "strength", "balance", "pain"]


@dataclass(frozen=True)
class Measure:
    """One kind of measurement: its API key, FHIR coding, UCUM unit and category."""

    key: str
    coding: Coding
    unit: str
    category: str
    kind: MeasureKind
    better: Literal["higher", "lower"]
    label: str
    joint: str | None = None
    motion: str | None = None


def _local_measure(
    key: str, code: str, kind: MeasureKind, better: Literal["higher", "lower"], label: str
) -> Measure:
    c = concept(code)
    return Measure(
        key, c.coding(), c.properties["unit"], c.properties["category"]["code"], kind, better, label
    )


def _rom_measures() -> dict[str, Measure]:
    out = {}
    for c in children("rom"):
        joint, motion = c.properties["joint"], c.properties["motion"]
        label = f"{joint} {motion.replace('-', ' ')}"
        out[c.code] = Measure(
            c.code,
            c.coding(),
            c.properties["unit"],
            "exam",
            "range-of-motion",
            "higher",
            label,
            joint,
            motion,
        )
    return out


BALANCE_TESTS = (
    "single-leg-stance",
    "tug",
    "berg",
    "romberg",
    "sway-path-length",
    "sway-mean-velocity",
    "sway-ellipse-area",
    "sway-rms-distance",
)

MEASURES: dict[str, Measure] = {
    "pain": Measure(
        "pain", LOINC_PAIN_NRS, "{score}", "survey", "pain", "lower", "pain (0-10 numeric rating)"
    ),
    "tug": Measure("tug", LOINC_TUG, "s", "exam", "balance", "lower", "Timed Up and Go"),
    "berg": _local_measure("berg", "berg-balance-scale", "balance", "higher", "Berg Balance Scale"),
    "single-leg-stance": _local_measure(
        "single-leg-stance", "single-leg-stance", "balance", "higher", "single-leg stance time"
    ),
    "romberg": _local_measure("romberg", "romberg", "balance", "higher", "Romberg test time"),
    "sway-path-length": _local_measure(
        "sway-path-length", "sway-path-length", "balance", "lower", "COP path length"
    ),
    "sway-mean-velocity": _local_measure(
        "sway-mean-velocity", "sway-mean-velocity", "balance", "lower", "COP mean velocity"
    ),
    "sway-ellipse-area": _local_measure(
        "sway-ellipse-area", "sway-ellipse-area", "balance", "lower", "COP 95% ellipse area"
    ),
    "sway-rms-distance": _local_measure(
        "sway-rms-distance", "sway-rms-distance", "balance", "lower", "COP RMS distance"
    ),
    "mmt-grade": _local_measure("mmt-grade", "mmt-grade", "strength", "higher", "muscle grade"),
    **_rom_measures(),
}
ROM_MEASURES: dict[tuple[str, str], Measure] = {
    (m.joint, m.motion): m for m in MEASURES.values() if m.joint is not None and m.motion is not None
}
MUSCLE_GROUPS: dict[str, Concept] = {
    c.code.removeprefix("muscle-group-"): c for c in children("muscle-group")
}


def measure(key: str) -> Measure:
    return MEASURES[key]


def rom_measure(joint: str, motion: str) -> Measure | None:
    return ROM_MEASURES.get((joint, motion))


def rom_motions(joint: str) -> list[str]:
    return [m for (j, m) in ROM_MEASURES if j == joint]


def rom_joints() -> list[str]:
    return list(dict.fromkeys(j for j, _ in ROM_MEASURES))
