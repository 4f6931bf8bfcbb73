"""Sessions as FHIR R4 JSON: an Encounter per session, a Procedure per exercise."""

# Representation (what an EHR sees), standard elements first:
#
# - **Encounter** (clinic sessions only: home practice is patient-reported exercise, not a visit, and
#   has none): ``class`` AMB from v3-ActCode; ``type`` SNOMED CT 229065009 *Exercise therapy* plus our
#   session type; ``period``, ``length`` (minutes) once closed; ``participant`` the practitioner (PPRF).
#   R4 ``Encounter.basedOn`` may only reference a ServiceRequest, so it lists the plan activities
#   performed (their ServiceRequests) and the CarePlan goes in the R5 cross-version extension
#   ``extension-Encounter.basedOn`` (R5 allows CarePlan there).
# - **Procedure** per exercise: ``code`` SNOMED CT 229065009 *Exercise therapy*, the CPT code the plan gave
#   the activity's form (97110, 97112 or 97530; clinic sessions only: CPT bills provider contact) and the
#   movement pattern (plan service's CodeSystem), ``category`` exercise therapy, ``basedOn`` the activity's
#   ServiceRequest and the CarePlan, ``encounter`` the session (home practice: none, and ``recorder``
#   and ``asserter`` the patient: R4 has no reported[x]). R4 ``Procedure.partOf`` can only target
#   Procedure, Observation or MedicationAdministration, so the session link is ``encounter``.
#   ``performedPeriod``, ``performer`` (patient; supervising physiotherapist in clinic), ``outcome``
#   (target met / below target), ``usedCode`` the cues and techniques, ``complication`` pain above
#   5/10 and a 24-hour flare, ``followUp`` the 24-hour symptom check, ``note`` a readable line with
#   every figure.
# - Figures with no standard element are in three documented extensions:
#   ``exercise-performance`` (complex: ``set`` one per set = reps done, ``targetReps``, ``load`` kg,
#   ``assistance``, ``withFeedback``, ``retentionAttempt``, ``dualTask``, the dual-task trial
#   ``dualTaskMeasure`` / ``dualTaskSingle`` / ``dualTaskDual`` / ``dualTaskLowerIsBetter`` and its
#   computed ``dualTaskCost`` %, ``difficulty``, and the active ROM reached: ``rom`` deg, ``romMethod``
#   (goniometer | inclinometer | device), ``romMotion``, ``romObservation`` -- the Observation the
#   evaluation service stores it as; R4 Procedure has no element that references an Observation),
#   ``progression-level`` (complex: one integer per dimension) and ``device-stream`` (Identifier).
# - Outcome scores (pain before/after, movement quality, self-rating, 24-hour response) are not
#   mapped here: they travel in ``session.logged.v1`` / ``session.symptoms-recorded.v1`` and the
#   evaluation service stores them as Observations (services never import each other).

from __future__ import annotations

from datetime import datetime
from typing import Any

from relearn.sessions.domain.codes import CPT, CPT_CODES, CUES, DEFAULT_CPT, DIMENSIONS
from relearn.sessions.domain.session import RecordedExercise, SessionState
from relearn.shared.fhir import CANONICAL_URL

BASE = CANONICAL_URL
CS_MOVEMENT_PATTERN = f"{BASE}/CodeSystem/movement-pattern"
CS_CUE = f"{BASE}/CodeSystem/cue-technique"
CS_ASSISTANCE = f"{BASE}/CodeSystem/assistance-level"
CS_EXERCISE_OUTCOME = f"{BASE}/CodeSystem/exercise-outcome"
CS_SESSION_TYPE = f"{BASE}/CodeSystem/session-type"
CS_SYMPTOM = f"{BASE}/CodeSystem/symptom-response"
SD_EXERCISE_PERFORMANCE = f"{BASE}/StructureDefinition/exercise-performance"
SD_PROGRESSION_LEVEL = f"{BASE}/StructureDefinition/progression-level"
SD_DEVICE_STREAM = f"{BASE}/StructureDefinition/device-stream"
SID_DEVICE_STREAM = f"{BASE}/sid/device-stream"
SID_SESSION = f"{BASE}/sid/session"  # the session log's id (GET /sessions/{id})
# The US Core 6.1 profiles our resources conform to (checked in tests/unit/test_us_core_profiles.py).
US_CORE_ENCOUNTER = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-encounter"
US_CORE_PROCEDURE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-procedure"
XVER_ENCOUNTER_BASED_ON = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.basedOn"

SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

EXERCISE_THERAPY = {"system": SNOMED, "code": "229065009", "display": "Exercise therapy"}
PAIN_FINDING = {"system": SNOMED, "code": "22253000", "display": "Pain"}
AMBULATORY = {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"}

SESSION_TYPES = {
    "clinic-session": "Neuromuscular re-education session",
    "home-practice": "Home exercise practice",
}
ASSISTANCE_LEVELS = {
    "none": "No assistance",
    "minimal": "Minimal assistance",
    "moderate": "Moderate assistance",
    "maximal": "Maximal assistance",
}
EXERCISE_OUTCOMES = {
    "target-met": "Completed within target",
    "below-target": "Completed below target",
    "completed": "Completed (no target set)",
}
SYMPTOM_RESPONSES = {
    "symptom-check-24h": "Record the 24-hour symptom response",
    "flare-24h": "Symptom flare not settled within 24 hours",
}


def _coding(system: str, code: str, table: dict[str, str]) -> dict[str, str]:
    return {"system": system, "code": code, "display": table[code]}


def _ref(reference: str) -> dict[str, str]:
    return {"reference": reference}


def _time(value: datetime) -> str:
    return value.isoformat()


def _period(start: datetime | None, end: datetime | None) -> dict[str, str]:
    period = {}
    if start is not None:
        period["start"] = _time(start)
    if end is not None:
        period["end"] = _time(end)
    return period


def _activities(state: SessionState) -> list[str]:
    return list(dict.fromkeys(e.activity for e in state.exercises))


def encounter_resource(state: SessionState) -> dict[str, Any]:
    """A clinic session as an R4 Encounter (home practice has none)."""
    if state.setting != "clinic":
        raise ValueError(f"{state.reference} is home practice: patient-reported exercise, not an Encounter")
    session_type = "clinic-session"
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": state.id,
        "meta": {"profile": [US_CORE_ENCOUNTER]},
        "extension": [{"url": XVER_ENCOUNTER_BASED_ON, "valueReference": _ref(state.care_plan)}],
        "identifier": [{"system": SID_SESSION, "value": state.id}],
        "status": state.status,
        "class": AMBULATORY,
        "type": [
            {
                "coding": [EXERCISE_THERAPY, _coding(CS_SESSION_TYPE, session_type, SESSION_TYPES)],
                "text": SESSION_TYPES[session_type],
            }
        ],
        "subject": _ref(f"Patient/{state.patient}"),
    }
    if activities := _activities(state):
        encounter["basedOn"] = [_ref(f"ServiceRequest/{a}") for a in activities]
    if state.practitioner:
        encounter["participant"] = [
            {
                "type": [
                    {
                        "coding": [
                            {"system": PARTICIPATION_TYPE, "code": "PPRF", "display": "primary performer"}
                        ]
                    }
                ],
                "individual": _ref(state.practitioner),
            }
        ]
    encounter["period"] = _period(state.start, state.end)
    if state.summary is not None:
        encounter["length"] = {
            "value": state.summary.duration_minutes,
            "unit": "min",
            "system": UCUM,
            "code": "min",
        }
    if state.reasons:
        encounter["reasonReference"] = [_ref(r) for r in state.reasons]
    return encounter


def _outcome(exercise: RecordedExercise) -> str:
    met = exercise.target_met
    return "completed" if met is None else "target-met" if met else "below-target"


def _performance_extension(exercise: RecordedExercise) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "set", "valueUnsignedInt": reps} for reps in exercise.reps]
    if exercise.target_reps is not None:
        parts.append({"url": "targetReps", "valuePositiveInt": exercise.target_reps})
    parts += [
        {
            "url": "load",
            "valueQuantity": {"value": exercise.load_kg, "unit": "kg", "system": UCUM, "code": "kg"},
        },
        {"url": "assistance", "valueCoding": _coding(CS_ASSISTANCE, exercise.assistance, ASSISTANCE_LEVELS)},
        {"url": "withFeedback", "valueBoolean": exercise.with_feedback},
        {"url": "retentionAttempt", "valueBoolean": exercise.retention_attempt},
        {"url": "dualTask", "valueBoolean": exercise.dual_task},
    ]
    if (trial := exercise.dual_task_trial) is not None:
        parts += [
            {"url": "dualTaskMeasure", "valueString": trial.measure},
            {"url": "dualTaskSingle", "valueQuantity": _trial_value(trial.single, trial.unit)},
            {"url": "dualTaskDual", "valueQuantity": _trial_value(trial.dual, trial.unit)},
            {"url": "dualTaskLowerIsBetter", "valueBoolean": trial.lower_is_better},
        ]
    if exercise.dual_task_cost_pct is not None:
        cost = {"value": exercise.dual_task_cost_pct, "unit": "%", "system": UCUM, "code": "%"}
        parts.append({"url": "dualTaskCost", "valueQuantity": cost})
    if exercise.difficulty is not None:
        parts.append({"url": "difficulty", "valueInteger": exercise.difficulty})
    if (rom := exercise.rom) is not None:
        parts.append(
            {
                "url": "rom",
                "valueQuantity": {"value": rom.value_deg, "unit": "deg", "system": UCUM, "code": "deg"},
            }
        )
        parts.append({"url": "romMethod", "valueCode": rom.method})
        if rom.motion is not None:
            parts.append({"url": "romMotion", "valueString": rom.motion})
        parts.append({"url": "romObservation", "valueReference": _ref(rom.observation)})
    return {"url": SD_EXERCISE_PERFORMANCE, "extension": parts}


def _trial_value(value: float, unit: str | None) -> dict[str, Any]:
    """A trial figure as a Quantity; the client's unit is taken as UCUM (the API asks for UCUM)."""
    return {"value": value} if unit is None else {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _level_extension(exercise: RecordedExercise) -> dict[str, Any]:
    return {
        "url": SD_PROGRESSION_LEVEL,
        "extension": [{"url": d, "valueUnsignedInt": exercise.level.get(d, 0)} for d in DIMENSIONS],
    }


def _readable(exercise: RecordedExercise) -> str:
    """Every figure in one line, for systems that do not read our extensions."""
    target = f" (target {exercise.target_reps})" if exercise.target_reps is not None else ""
    parts = [
        f"{exercise.sets} set(s) of {', '.join(map(str, exercise.reps))} reps{target}",
        f"load {exercise.load_kg:g} kg",
        f"assistance {exercise.assistance}",
        "level " + ", ".join(f"{d} {exercise.level.get(d, 0)}" for d in DIMENSIONS),
    ]
    if exercise.cues:
        parts.append("cues: " + ", ".join(CUES[c].lower() for c in exercise.cues))
    if exercise.quality is not None:
        parts.append(f"quality {exercise.quality}/4")
    if exercise.self_rating is not None:
        parts.append(f"self-rating {exercise.self_rating}/4")
    if exercise.difficulty is not None:
        parts.append(f"difficulty {exercise.difficulty}/4")
    before = f"{exercise.pain_before} -> " if exercise.pain_before is not None else "after "
    parts.append(f"pain {before}{exercise.pain_after}/10")
    if exercise.rom is not None:
        motion = f" {exercise.rom.motion}" if exercise.rom.motion else ""
        parts.append(f"active ROM{motion} {exercise.rom.value_deg:g} deg ({exercise.rom.method})")
    parts.append("with feedback" if exercise.with_feedback else "without feedback")
    if exercise.retention_attempt:
        parts.append("retention attempt")
    if exercise.dual_task:
        cost = f" (cost {exercise.dual_task_cost_pct:g} %)" if exercise.dual_task_cost_pct is not None else ""
        trial = exercise.dual_task_trial
        if trial is not None:
            unit = f" {trial.unit}" if trial.unit else ""
            change = f"{trial.measure} {trial.single:g} -> {trial.dual:g}{unit}"
            cost = f" (cost {exercise.dual_task_cost_pct:g} %: {change})"
        parts.append(f"under a dual task{cost}")
    return "; ".join(parts)


def _complications(state: SessionState, exercise: RecordedExercise) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if exercise.pain_after > 5:
        found.append({"coding": [PAIN_FINDING], "text": f"Pain {exercise.pain_after}/10 after the exercise"})
    symptoms = state.symptoms
    if symptoms is not None and symptoms.flare:
        found.append(
            {
                "coding": [_coding(CS_SYMPTOM, "flare-24h", SYMPTOM_RESPONSES)],
                "text": f"Symptom flare not settled at 24 hours (pain {symptoms.pain24h}/10)",
            }
        )
    elif symptoms is not None and symptoms.pain24h > 5:
        found.append({"coding": [PAIN_FINDING], "text": f"Pain {symptoms.pain24h}/10 at 24 hours"})
    return found


def procedure_code(state: SessionState, exercise: RecordedExercise) -> dict[str, Any]:
    """SNOMED CT exercise therapy, the CPT code of the exercise's form (clinic sessions only) and the local
    movement pattern."""
    coding: list[dict[str, str]] = [EXERCISE_THERAPY]
    if state.setting == "clinic":
        cpt = exercise.cpt if exercise.cpt in CPT_CODES else DEFAULT_CPT
        coding.append({"system": CPT, "code": cpt, "display": CPT_CODES[cpt]})
    coding.append({"system": CS_MOVEMENT_PATTERN, "code": exercise.pattern})
    return {"coding": coding, "text": exercise.pattern}


def procedure_resource(state: SessionState, exercise: RecordedExercise) -> dict[str, Any]:
    """One exercise of the session as an R4 Procedure."""
    extensions = [_performance_extension(exercise), _level_extension(exercise)]
    extensions += [
        {"url": SD_DEVICE_STREAM, "valueIdentifier": {"system": SID_DEVICE_STREAM, "value": s}}
        for s in exercise.device_streams
    ]
    performers: list[dict[str, Any]] = [
        {
            "function": {"coding": [{"system": SNOMED, "code": "116154003", "display": "Patient"}]},
            "actor": _ref(f"Patient/{state.patient}"),
        }
    ]
    if state.practitioner:
        performers.append(
            {
                "function": {
                    "coding": [{"system": SNOMED, "code": "36682004", "display": "Physiotherapist"}]
                },
                "actor": _ref(state.practitioner),
            }
        )
    outcome = _outcome(exercise)
    procedure: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": exercise.procedure_id,
        "meta": {"profile": [US_CORE_PROCEDURE]},
        "extension": extensions,
        "basedOn": [_ref(f"ServiceRequest/{exercise.activity}"), _ref(state.care_plan)],
        "status": "completed",
        "category": {"coding": [EXERCISE_THERAPY]},
        "code": procedure_code(state, exercise),
        "subject": _ref(f"Patient/{state.patient}"),
        "performedPeriod": _period(exercise.start or state.start, exercise.end or state.end),
        "performer": performers,
        "outcome": {"coding": [_coding(CS_EXERCISE_OUTCOME, outcome, EXERCISE_OUTCOMES)]},
        "followUp": [{"coding": [_coding(CS_SYMPTOM, "symptom-check-24h", SYMPTOM_RESPONSES)]}],
        "note": [{"text": _readable(exercise)}],
        "usedCode": [{"coding": [{"system": CS_CUE, "code": c, "display": CUES[c]}]} for c in exercise.cues],
    }
    if state.setting == "home":
        # Patient-reported, outside any visit: no Encounter, the patient is the source.
        procedure["recorder"] = _ref(f"Patient/{state.patient}")
        procedure["asserter"] = _ref(f"Patient/{state.patient}")
    else:
        procedure["encounter"] = _ref(f"Encounter/{state.id}")
    if complications := _complications(state, exercise):
        procedure["complication"] = complications
    if exercise.notes:
        procedure["note"].append({"text": exercise.notes})
    if not procedure["usedCode"]:
        del procedure["usedCode"]
    return procedure


def procedure_resources(state: SessionState) -> list[dict[str, Any]]:
    return [procedure_resource(state, e) for e in state.exercises]


def _code_system(name: str, url: str, title: str, concepts: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "id": name,
        "url": url,
        "name": "".join(w.capitalize() for w in name.split("-")),
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": "Relearn",
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": [{"code": c, "display": d} for c, d in concepts.items()],
    }


def code_systems() -> list[dict[str, Any]]:
    """The local CodeSystems the mappers use, for the service to publish."""
    return [
        _code_system(
            "cue-technique", CS_CUE, "Cues, techniques and apparatus of neuromuscular re-education", CUES
        ),
        _code_system(
            "assistance-level", CS_ASSISTANCE, "Assistance given during an exercise", ASSISTANCE_LEVELS
        ),
        _code_system(
            "exercise-outcome",
            CS_EXERCISE_OUTCOME,
            "Outcome of an exercise against its target",
            EXERCISE_OUTCOMES,
        ),
        _code_system("session-type", CS_SESSION_TYPE, "Kinds of therapy session", SESSION_TYPES),
        _code_system("symptom-response", CS_SYMPTOM, "Symptom response to a session", SYMPTOM_RESPONSES),
    ]
