"""FHIR mapping of the plan: PlanState -> CarePlan, Goal, ServiceRequest and Task JSON; local CodeSystems.

Validated by fhir.resources R4B in tests.

How an EHR sees each exercise (the Physical Activity IG models a prescription as a ServiceRequest):

- ``CarePlan.activity[]`` - one per exercise, ``id`` = the activity id = the ServiceRequest id:
  - ``reference`` -> ``ServiceRequest/<id>`` (the prescription; R4 forbids ``detail`` next to it);
  - ``outcomeCodeableConcept`` = the competence stage (local CodeSystem ``competence-stage``);
  - ``progress`` = a plain-text line: pattern, level per dimension, stage, dose and the latest change;
  - ``extension`` ``exercise-progression`` = the same, computable: pattern, level per dimension (dimension
    coding, step, number of steps, description), stage, dose;
- ``CarePlan.text`` - a generated narrative table of every exercise (what any EHR displays);
- ``CarePlan.note`` and extension ``plan-change`` - the latest change: reason, evidence, who, when.
- ServiceRequest (per exercise): ``code`` = SNOMED CT 229065009, the CPT code of the current form
  (:mod:`relearn.plan.domain.procedure_codes`: 97110, 97112 or 97530) and the pattern, ``orderDetail`` = level
  per dimension and the stage, ``occurrenceTiming`` = sessions per week, ``quantityQuantity`` = repetitions
  per session, ``patientInstruction`` = the dose in words, ``basedOn`` the CarePlan, ``reasonReference`` the
  deficit Observations, ``resource-pertainsToGoal`` the Goals.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import cache
from html import escape
from importlib.resources import files
from typing import Any

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.patterns import DIMENSION_DISPLAY, Dimension, MovementPattern
from relearn.plan.domain.procedure_codes import cpt_coding
from relearn.plan.domain.stages import CompetenceStage
from relearn.plan.domain.state import (
    ActivityState,
    ActivityStatus,
    CriterionResult,
    GoalState,
    PlanChange,
    PlanState,
    PlanStatus,
    TaskState,
)
from relearn.shared.fhir import CANONICAL_URL, identifier_system

CANONICAL = CANONICAL_URL
CS_STAGE = f"{CANONICAL}/CodeSystem/competence-stage"
CS_DIMENSION = f"{CANONICAL}/CodeSystem/progression-dimension"
CS_CATEGORY = f"{CANONICAL}/CodeSystem/care-plan-category"
CS_PATTERN = f"{CANONICAL}/CodeSystem/movement-pattern"
EXT_PROGRESSION = f"{CANONICAL}/StructureDefinition/exercise-progression"
EXT_PLAN_CHANGE = f"{CANONICAL}/StructureDefinition/plan-change"
EXT_PERTAINS_TO_GOAL = "http://hl7.org/fhir/StructureDefinition/resource-pertainsToGoal"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
EXERCISE_THERAPY = {"system": SNOMED, "code": "229065009", "display": "Exercise therapy"}
PHYSICAL_ACTIVITY = {
    "system": "http://hl7.org/fhir/us/physical-activity/CodeSystem/pa-temporary-codes",
    "code": "PhysicalActivity",
    "display": "Physical Activity",
}
NEURO_RE_EDUCATION = {
    "system": CS_CATEGORY,
    "code": "neuromuscular-re-education",
    "display": "Neuromuscular re-education",
}
# The US Core 6.1 profiles our resources conform to (checked in tests/unit/test_us_core_profiles.py).
US_CORE_CAREPLAN = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-careplan"
US_CORE_GOAL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-goal"
US_CORE_SERVICE_REQUEST = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-servicerequest"
US_CORE_ASSESS_PLAN = {
    "system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
    "code": "assess-plan",
    "display": "Assessment and Plan of Treatment",
}
GOAL_ACHIEVEMENT = "http://terminology.hl7.org/CodeSystem/goal-achievement"
GOAL_CATEGORY = {
    "system": "http://terminology.hl7.org/CodeSystem/goal-category",
    "code": "physiotherapy",
    "display": "Physiotherapy",
}
_XHTML = "http://www.w3.org/1999/xhtml"

CODE_SYSTEM_FILES = (
    "CodeSystem-competence-stage.json",
    "CodeSystem-progression-dimension.json",
    "CodeSystem-care-plan-category.json",
)


@cache
def _shipped_code_system(name: str) -> dict[str, Any]:
    text = files("relearn.plan.domain.catalogue").joinpath(name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _display(name: str, code: str) -> str:
    for concept in _shipped_code_system(name)["concept"]:
        if concept["code"] == code:
            return str(concept["display"])
    raise KeyError(f"{code} is not in {name}")


def stage_coding(stage: CompetenceStage) -> dict[str, Any]:
    return {"system": CS_STAGE, "code": stage.value, "display": _display(CODE_SYSTEM_FILES[0], stage.value)}


def dimension_coding(dimension: Dimension) -> dict[str, Any]:
    return {
        "system": CS_DIMENSION,
        "code": dimension.value,
        "display": _display(CODE_SYSTEM_FILES[1], dimension.value),
    }


def pattern_coding(pattern: MovementPattern, catalogue: Catalogue) -> dict[str, Any]:
    return {"system": CS_PATTERN, "version": catalogue.version, "code": pattern.code, "display": pattern.name}


def movement_pattern_code_system(catalogue: Catalogue) -> dict[str, Any]:
    """The catalogue as a FHIR CodeSystem (one concept per pattern), versioned with the catalogue."""
    return {
        "resourceType": "CodeSystem",
        "id": "movement-pattern",
        "url": CS_PATTERN,
        "version": catalogue.version,
        "name": "MovementPattern",
        "title": "Relearn movement pattern",
        "status": "active",
        "experimental": False,
        "publisher": "Relearn",
        "description": "Movement patterns of neuromuscular re-education, each trained from its simplest "
        "single-joint, non-weight-bearing form and progressed along six dimensions.",
        "caseSensitive": True,
        "content": "complete",
        "count": len(catalogue.patterns),
        "property": [{"code": "region", "description": "Body region", "type": "code"}],
        "concept": [
            {
                "code": p.code,
                "display": p.name,
                "definition": f"Starting form: {p.starting_form}",
                "property": [{"code": "region", "valueCode": p.region}],
            }
            for p in catalogue.patterns
        ],
    }


def code_systems(catalogue: Catalogue) -> list[dict[str, Any]]:
    """Every local CodeSystem the plan resources use (serve them so an EHR can resolve the codes)."""
    return [*(_shipped_code_system(n) for n in CODE_SYSTEM_FILES), movement_pattern_code_system(catalogue)]


# ------------------------------------------------------------------------------------------------- helpers


def _dt(value: datetime) -> str:
    return value.isoformat()


def _date(value: date) -> str:
    return value.isoformat()


def _ref(reference: str, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": reference}
    if display:
        out["display"] = display
    return out


def _is_reference(value: str | None) -> bool:
    return bool(value) and "/" in str(value) and not str(value).startswith("/")


def _who(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    return {"authorReference": _ref(value)} if _is_reference(value) else {"authorString": value}


def _seconds(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "s", "system": UCUM, "code": "s"}


def _label(activity: ActivityState, pattern: MovementPattern) -> str:
    return f"{pattern.name} ({activity.side})" if activity.side else pattern.name


def _level_lines(activity: ActivityState, pattern: MovementPattern) -> list[str]:
    lines = []
    for dim in Dimension:
        level = activity.levels.get(dim, 0)
        step = pattern.step(dim, level).description
        lines.append(f"{DIMENSION_DISPLAY[dim]} level {level} (0-{pattern.top_level(dim)}): {step}")
    return lines


def activity_summary(activity: ActivityState, pattern: MovementPattern) -> str:
    """One line an EHR user can read: exercise, level per dimension, stage, dose, latest change."""
    text = (
        f"{_label(activity, pattern)} - level: {'; '.join(_level_lines(activity, pattern))}. "
        f"Competence stage: {_display(CODE_SYSTEM_FILES[0], activity.stage.value).lower()}. "
        f"Dose: {activity.dose.text()}."
    )
    if activity.last_change is not None:
        text += f" Latest change: {activity.last_change.reason}"
    return text


def progression_extension(
    activity: ActivityState, pattern: MovementPattern, catalogue: Catalogue
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "pattern", "valueCoding": pattern_coding(pattern, catalogue)}]
    if activity.side:
        parts.append({"url": "side", "valueCode": activity.side})
    for dim in Dimension:
        level = activity.levels.get(dim, 0)
        parts.append(
            {
                "url": "level",
                "extension": [
                    {"url": "dimension", "valueCoding": dimension_coding(dim)},
                    {"url": "step", "valueInteger": level},
                    {"url": "steps", "valueInteger": pattern.top_level(dim) + 1},
                    {"url": "description", "valueString": pattern.step(dim, level).description},
                ],
            }
        )
    parts.append({"url": "stage", "valueCoding": stage_coding(activity.stage)})
    dose = activity.dose
    dose_parts: list[dict[str, Any]] = [
        {"url": "sets", "valueInteger": dose.sets},
        {"url": "reps", "valueInteger": dose.reps},
        {"url": "hold", "valueQuantity": _seconds(dose.hold_s)},
        {"url": "rest", "valueQuantity": _seconds(dose.rest_s)},
        {"url": "frequencyPerWeek", "valueInteger": dose.frequency_per_week},
    ]
    if dose.load_kg:
        dose_parts.append(
            {
                "url": "load",
                "valueQuantity": {"value": dose.load_kg, "unit": "kg", "system": UCUM, "code": "kg"},
            }
        )
    dose_parts.append({"url": "text", "valueString": dose.text()})
    parts.append({"url": "dose", "extension": dose_parts})
    return {"url": EXT_PROGRESSION, "extension": parts}


def _criterion_extension(c: CriterionResult) -> dict[str, Any]:
    """One criterion a decision used, computable: what, on which muscle and session, value, target, status."""
    parts: list[dict[str, Any]] = [
        {"url": "criterion", "valueCode": c.criterion},
        {"url": "status", "valueCode": c.status},
        {"url": "target", "valueString": c.target},
    ]
    if c.muscle:
        parts.append({"url": "muscle", "valueCode": c.muscle})
    if c.session:
        parts.append({"url": "session", "valueReference": _ref(c.session)})
    if isinstance(c.value, int | float) and not isinstance(c.value, bool):
        quantity: dict[str, Any] = {"value": c.value}
        if c.unit:
            quantity |= {"unit": c.unit, "system": UCUM, "code": c.unit}
        parts.append({"url": "value", "valueQuantity": quantity})
    elif isinstance(c.value, str):
        parts.append({"url": "value", "valueString": c.value})
    if c.source and _is_reference(c.source):
        parts.append({"url": "source", "valueReference": _ref(c.source)})
    if c.note:
        parts.append({"url": "note", "valueString": c.note})
    return {"url": "criterion", "extension": parts}


def criterion_text(c: CriterionResult) -> str:
    value = (
        "-"
        if c.value is None
        else f"{c.value}{' ' + c.unit if c.unit and not isinstance(c.value, str) else ''}"
    )
    text = f"{c.label}: {value} (target {c.target}) {c.status.upper()}"
    if c.source:
        text += f" [{c.source}]"
    if c.note:
        text += f" - {c.note}"
    return text


def _change_extension(change: PlanChange) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "version", "valueInteger": change.version},
        {"url": "kind", "valueCode": change.kind},
        {"url": "at", "valueDateTime": _dt(change.at)},
        {"url": "reason", "valueString": change.reason},
    ]
    if change.by:
        parts.append(
            {"url": "by", "valueReference": _ref(change.by)}
            if _is_reference(change.by)
            else {"url": "by", "valueString": change.by}
        )
    parts.extend({"url": "evidence", "valueReference": _ref(ref)} for ref in change.evidence)
    for d in change.decisions:
        parts.extend(_criterion_extension(c) for c in d.criteria)
        if d.task:
            parts.append({"url": "task", "valueReference": _ref(d.task)})
    return {"url": EXT_PLAN_CHANGE, "extension": parts}


def _change_note(change: PlanChange) -> dict[str, Any]:
    text = f"Version {change.version} ({change.kind}): {change.reason}"
    if change.evidence:
        text += f". Evidence: {', '.join(change.evidence)}"
    criteria = [c for d in change.decisions for c in d.criteria]
    if criteria:
        text += ". Criteria: " + "; ".join(criterion_text(c) for c in criteria)
    return {**_who(change.by), "time": _dt(change.at), "text": text}


def _narrative(plan: PlanState, catalogue: Catalogue) -> dict[str, str]:
    rows = []
    for a in plan.activities:
        pattern = catalogue.find(a.pattern)
        if pattern is None:
            continue
        levels = "<br/>".join(escape(line) for line in _level_lines(a, pattern))
        rows.append(
            f"<tr><td>{escape(_label(a, pattern))}</td><td>{levels}</td>"
            f"<td>{escape(_display(CODE_SYSTEM_FILES[0], a.stage.value))}</td>"
            f"<td>{escape(a.dose.text())}</td><td>{escape(a.status)}</td></tr>"
        )
    change = plan.latest_change
    latest = f"<p>Latest change (version {change.version}): {escape(change.reason)}</p>" if change else ""
    div = (
        f'<div xmlns="{_XHTML}"><p><b>{escape(plan.title)}</b> ({escape(plan.status)})</p>'
        "<table><thead><tr><th>Exercise</th><th>Level per dimension</th><th>Competence stage</th>"
        f"<th>Dose</th><th>Status</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{latest}</div>"
    )
    return {"status": "generated", "div": div}


# ------------------------------------------------------------------------------------------------ resources


def care_plan(plan: PlanState, catalogue: Catalogue) -> dict[str, Any]:
    """The plan as a FHIR R4 CarePlan (``meta`` only claims the profile: the store assigns versions)."""
    activities = []
    for a in plan.activities:
        pattern = catalogue.find(a.pattern)
        if pattern is None:
            continue
        entry: dict[str, Any] = {
            "id": a.id,
            "extension": [progression_extension(a, pattern, catalogue)],
            "outcomeCodeableConcept": [
                {
                    "coding": [stage_coding(a.stage)],
                    "text": f"Competence stage: {_display(CODE_SYSTEM_FILES[0], a.stage.value)}",
                }
            ],
            "progress": [
                {
                    "time": _dt(a.last_change.at if a.last_change else plan.created),
                    "text": activity_summary(a, pattern),
                }
            ],
            "reference": _ref(f"ServiceRequest/{a.id}", _label(a, pattern)),
        }
        if a.last_change is not None and a.last_change.evidence:
            entry["outcomeReference"] = [_ref(r) for r in a.last_change.evidence]
        activities.append(entry)
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": plan.id,
        "meta": {"profile": [US_CORE_CAREPLAN]},
        "text": _narrative(plan, catalogue),
        "instantiatesCanonical": [plan_definition_canonical(plan.catalogue_version)],
        "status": plan.status,
        "intent": "plan",
        # US Core's required slice (assess-plan: the assessment and plan of treatment) beside ours.
        "category": [
            {"coding": [US_CORE_ASSESS_PLAN], "text": "Assessment and Plan of Treatment"},
            {"coding": [EXERCISE_THERAPY], "text": "Exercise therapy"},
            {"coding": [NEURO_RE_EDUCATION], "text": "Neuromuscular re-education"},
        ],
        "title": plan.title,
        "description": f"Movement patterns from catalogue {plan.catalogue_version}, each started at its "
        "simplest form and progressed one dimension at a time on mastery without symptoms.",
        "subject": _ref(f"Patient/{plan.patient}"),
        "period": {"start": _date(plan.period_start)},
        "created": _dt(plan.created),
    }
    if plan.latest_change is not None:
        resource["extension"] = [_change_extension(plan.latest_change)]
        resource["note"] = [_change_note(plan.latest_change)]
    if _is_reference(plan.author):
        resource["author"] = _ref(str(plan.author))
    conditions = [r for r in plan.referral if r.reference.startswith("Condition/")]
    if conditions:
        resource["addresses"] = [_ref(r.reference, r.text) for r in conditions]
    # The evaluation, and referral conditions the evaluation recorded as Observations.
    supporting = [_ref(plan.evaluation, "Evaluation")] if plan.evaluation else []
    supporting += [
        _ref(r.reference, r.text) for r in plan.referral if not r.reference.startswith("Condition/")
    ]
    if supporting:
        resource["supportingInfo"] = supporting
    if plan.goals:
        resource["goal"] = [_ref(f"Goal/{g.id}") for g in plan.goals]
    if activities:
        resource["activity"] = activities
    return resource


_ACHIEVEMENT_DISPLAY = {
    "in-progress": "In Progress",
    "improving": "Improving",
    "worsening": "Worsening",
    "no-change": "No Change",
    "achieved": "Achieved",
    "not-achieved": "Not Achieved",
}


def goal_resource(plan: PlanState, goal: GoalState) -> dict[str, Any]:
    """One Goal: the patient's words (or the clinician's), measurable targets, the deficits it addresses."""
    resource: dict[str, Any] = {
        "resourceType": "Goal",
        "id": goal.id,
        "meta": {"profile": [US_CORE_GOAL]},
        "lifecycleStatus": goal.lifecycle,
        "achievementStatus": {
            "coding": [
                {
                    "system": GOAL_ACHIEVEMENT,
                    "code": goal.achievement,
                    "display": _ACHIEVEMENT_DISPLAY[goal.achievement],
                }
            ]
        },
        "category": [{"coding": [GOAL_CATEGORY]}],
        "description": {"text": goal.description},
        "subject": _ref(f"Patient/{plan.patient}"),
    }
    if goal.start:
        resource["startDate"] = _date(goal.start)
    targets = []
    for t in goal.targets:
        target: dict[str, Any] = {}
        if t.measure_code:
            coding: dict[str, Any] = {"code": t.measure_code}
            if t.measure_system:
                coding["system"] = t.measure_system
            if t.measure_display:
                coding["display"] = t.measure_display
            text = (t.measure_display or t.measure_code) + (f" ({t.side})" if t.side else "")
            target["measure"] = {"coding": [coding], "text": text}
        if t.value is not None:
            quantity: dict[str, Any] = {"value": t.value}
            if t.comparator:
                quantity["comparator"] = t.comparator
            if t.unit:
                quantity |= {"unit": t.unit, "system": UCUM, "code": t.unit}
            target["detailQuantity"] = quantity
        if t.due:
            target["dueDate"] = _date(t.due)
        if target:
            targets.append(target)
    if targets:
        resource["target"] = targets
    if goal.source == "patient":
        resource["expressedBy"] = _ref(f"Patient/{plan.patient}")
    elif _is_reference(plan.author):
        resource["expressedBy"] = _ref(str(plan.author))
    if goal.addresses:
        resource["addresses"] = [_ref(r) for r in goal.addresses]
    if goal.outcome:
        resource["outcomeReference"] = [_ref(r) for r in goal.outcome]
    return resource


def _request_status(plan: PlanStatus, activity: ActivityStatus) -> str:
    if plan in ("draft", "entered-in-error", "revoked", "completed"):
        return plan
    if activity == "cancelled":
        return "revoked"
    if activity == "completed":
        return "completed"
    if plan == "on-hold" or activity == "on-hold":
        return "on-hold"
    return "active"


def service_request(plan: PlanState, activity: ActivityState, catalogue: Catalogue) -> dict[str, Any]:
    """One exercise prescription (Physical Activity IG style), based on the CarePlan."""
    pattern = catalogue.get(activity.pattern)
    dose = activity.dose
    label = _label(activity, pattern)
    order_detail = [
        {
            "coding": [dimension_coding(dim)],
            "text": f"{DIMENSION_DISPLAY[dim]}: level {activity.levels.get(dim, 0)} "
            f"(0-{pattern.top_level(dim)}) - {pattern.step(dim, activity.levels.get(dim, 0)).description}",
        }
        for dim in Dimension
    ]
    order_detail.append(
        {
            "coding": [stage_coding(activity.stage)],
            "text": f"Competence stage: {_display(CODE_SYSTEM_FILES[0], activity.stage.value)}",
        }
    )
    hold = f", hold each {dose.hold_s:g} s" if dose.hold_s else ""
    load = f" with {dose.load_kg:g} kg" if dose.load_kg else ""
    instruction = (
        f"{label}: {dose.sets} set(s) of {dose.reps} repetitions{load}{hold}, rest {dose.rest_s:g} s between "
        f"sets, {dose.frequency_per_week} times a week. Current form: "
        + "; ".join(_level_lines(activity, pattern))
        + "."
    )
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": activity.id,
        "meta": {"profile": [US_CORE_SERVICE_REQUEST]},
        "text": {
            "status": "generated",
            "div": f'<div xmlns="{_XHTML}"><p>{escape(activity_summary(activity, pattern))}</p></div>',
        },
        "extension": [
            *({"url": EXT_PERTAINS_TO_GOAL, "valueReference": _ref(f"Goal/{g}")} for g in activity.goals),
            progression_extension(activity, pattern, catalogue),
        ],
        "instantiatesCanonical": [activity_definition_canonical(pattern.code, plan.catalogue_version)],
        "basedOn": [_ref(plan.reference)],
        "status": _request_status(plan.status, activity.status),
        "intent": "order",
        "category": [{"coding": [PHYSICAL_ACTIVITY]}, {"coding": [EXERCISE_THERAPY]}],
        # SNOMED CT and CPT (US Core's extensible Procedure Codes binding) beside the movement pattern.
        "code": {
            "coding": [
                EXERCISE_THERAPY,
                cpt_coding(pattern, activity.levels),
                pattern_coding(pattern, catalogue),
            ],
            "text": label,
        },
        "orderDetail": order_detail,
        "quantityQuantity": {
            "value": dose.sets * dose.reps,
            "unit": "repetitions per session",
            "system": UCUM,
            "code": "{repetitions}",
        },
        "subject": _ref(f"Patient/{plan.patient}"),
        "occurrenceTiming": {
            "repeat": {
                "boundsPeriod": {"start": _date(plan.period_start)},
                "frequency": dose.frequency_per_week,
                "period": 1,
                "periodUnit": "wk",
            }
        },
        "authoredOn": _dt(plan.created),
        "patientInstruction": instruction,
    }
    if _is_reference(plan.author):
        resource["requester"] = _ref(str(plan.author))
    if activity.side:
        site = next((t.body_site for t in pattern.targets if t.body_site), None)
        resource["bodySite"] = [{"text": f"{activity.side} {site}" if site else activity.side}]
    if activity.deficits:
        resource["reasonReference"] = [_ref(d.observation) for d in activity.deficits]
    if activity.last_change is not None:
        note: dict[str, Any] = {"time": _dt(activity.last_change.at), "text": activity.last_change.reason}
        if activity.last_change.evidence:
            note["text"] += f". Evidence: {', '.join(activity.last_change.evidence)}"
        resource["note"] = [note]
    return resource


def goal_resources(plan: PlanState) -> list[dict[str, Any]]:
    return [goal_resource(plan, g) for g in plan.goals]


def service_requests(plan: PlanState, catalogue: Catalogue) -> list[dict[str, Any]]:
    return [
        service_request(plan, a, catalogue) for a in plan.activities if catalogue.find(a.pattern) is not None
    ]


def plan_resources(plan: PlanState, catalogue: Catalogue) -> list[dict[str, Any]]:
    """CarePlan, then its Goals, then its ServiceRequests: write them in one transaction."""
    return [care_plan(plan, catalogue), *goal_resources(plan), *service_requests(plan, catalogue)]


# -------------------------------------------------------------------------------------------------- tasks

TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
_TASK_STATUS = {
    "requested": "requested",
    "completed": "completed",
    "rejected": "rejected",
    "cancelled": "cancelled",
}


def task_resource(plan: PlanState, task: TaskState) -> dict[str, Any]:
    """A question for the treating therapist (FHIR Task, intent proposal, focus the CarePlan)."""
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": task.id,
        "status": _TASK_STATUS[task.status],
        "intent": "proposal",
        "priority": "urgent" if task.kind == "review-failed-advance" else "routine",
        "code": {
            "coding": [
                {"system": TASK_CODE, "code": "approve", "display": "Activate/approve the focal resource"}
            ],
            "text": "Approve an advance"
            if task.kind == "approve-advance"
            else "Review a repeatedly failed advance",
        },
        "reasonCode": {"text": task.reason},
        "description": task.reason,
        "focus": _ref(f"CarePlan/{plan.id}"),
        "for": _ref(f"Patient/{plan.patient}"),
        "authoredOn": _dt(task.created),
        "lastModified": _dt(task.resolved or task.created),
    }
    if _is_reference(plan.author):
        resource["owner"] = _ref(str(plan.author))
    if task.proposed is not None:
        p = task.proposed
        resource["input"] = [
            {"type": {"text": "activity"}, "valueReference": _ref(f"ServiceRequest/{task.activity}")},
            {"type": {"text": "dimension"}, "valueCoding": dimension_coding(p.dimension)},
            {"type": {"text": "from level"}, "valueInteger": p.from_level},
            {"type": {"text": "to level"}, "valueInteger": p.to_level},
        ]
    if task.evidence:
        resource["input"] = [
            *resource.get("input", []),
            *(
                {"type": {"text": "evidence"}, "valueReference": _ref(r)}
                for r in task.evidence
                if _is_reference(r)
            ),
        ]
    if task.resolution:
        resource["output"] = [{"type": {"text": "resolution"}, "valueString": task.resolution}]
    if task.resolved_by and _is_reference(task.resolved_by):
        resource["requester"] = _ref(task.resolved_by)
    return resource


def task_resources(plan: PlanState) -> list[dict[str, Any]]:
    return [task_resource(plan, t) for t in plan.tasks]


# ---------------------------------------------------------------------- definitions (the catalogue as FHIR)
# The movement-pattern catalogue is published as one ActivityDefinition per pattern and the drafting and
# progression ladder as one PlanDefinition, read-only, versioned with the catalogue. A ServiceRequest names
# its pattern's ActivityDefinition and a CarePlan the PlanDefinition by ``instantiatesCanonical``
# (``url|version``: the catalogue version the plan was drafted from).
AD_BASE = f"{CANONICAL}/ActivityDefinition"
PLAN_DEFINITION_ID = "neuromuscular-re-education"
PLAN_DEFINITION_URL = f"{CANONICAL}/PlanDefinition/{PLAN_DEFINITION_ID}"
PLAN_DEFINITION_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
    "code": "clinical-protocol",
    "display": "Clinical Protocol",
}
_REGION_TITLES = {
    "upper-limb": "Upper limb",
    "lower-limb": "Lower limb",
    "trunk": "Trunk",
    "balance": "Balance",
}


def activity_definition_url(pattern_code: str) -> str:
    return f"{AD_BASE}/{pattern_code}"


def activity_definition_canonical(pattern_code: str, version: str) -> str:
    return f"{activity_definition_url(pattern_code)}|{version}"


def plan_definition_canonical(version: str) -> str:
    return f"{PLAN_DEFINITION_URL}|{version}"


def _name(code: str) -> str:
    return "".join(w.capitalize() for w in code.split("-"))


def _dimension_order(pattern: MovementPattern) -> tuple[Dimension, ...]:
    return pattern.dimension_order or tuple(Dimension)


def _ladder_markdown(pattern: MovementPattern) -> str:
    lines = [f"Starting form: {pattern.starting_form}", "", "Progression, one dimension at a time:"]
    for dim in _dimension_order(pattern):
        steps = " -> ".join(f"{i}. {s.description}" for i, s in enumerate(pattern.ladders[dim]))
        lines.append(f"- {DIMENSION_DISPLAY[dim]}: {steps}")
    return "\n".join(lines)


def activity_definition(pattern: MovementPattern, catalogue: Catalogue) -> dict[str, Any]:
    """One movement pattern as an ActivityDefinition (kind ServiceRequest): what it trains, its starting form,
    its ladders, its default dose and the evidence for it."""
    dose = pattern.dosing
    return {
        "resourceType": "ActivityDefinition",
        "id": pattern.code,
        "url": activity_definition_url(pattern.code),
        "version": catalogue.version,
        "name": _name(pattern.code),
        "title": pattern.name,
        "status": "active",
        "experimental": False,
        "publisher": "Relearn",
        "description": _ladder_markdown(pattern),
        "purpose": "Neuromuscular re-education: the movement pattern trained from its simplest single-joint, "
        "non-weight-bearing form, advanced along one dimension at a time on mastery without symptoms.",
        "topic": [{"coding": [EXERCISE_THERAPY]}],
        "relatedArtifact": [{"type": "citation", "citation": pattern.evidence}],
        "kind": "ServiceRequest",
        "intent": "order",
        # The starting form's codes; a prescription's CPT code follows its current form.
        "code": {
            "coding": [EXERCISE_THERAPY, cpt_coding(pattern, {}), pattern_coding(pattern, catalogue)],
            "text": pattern.name,
        },
        "timingTiming": {"repeat": {"frequency": dose.frequency_per_week, "period": 1, "periodUnit": "wk"}},
        "quantity": {
            "value": dose.sets * dose.reps,
            "unit": "repetitions per session",
            "system": UCUM,
            "code": "{repetitions}",
        },
        "participant": [{"type": "patient"}, {"type": "practitioner"}],
    }


def _pattern_action(pattern: MovementPattern, catalogue: Catalogue) -> dict[str, Any]:
    targets = "; ".join(
        " ".join(x for x in (t.body_site, t.motion) if x) + f" ({', '.join(t.measures)})"
        if t.body_site or t.motion
        else ", ".join(t.measures)
        for t in pattern.targets
    )
    order = _dimension_order(pattern)
    steps = [
        {
            "id": f"{pattern.code}-{dim.value}",
            "title": f"{DIMENSION_DISPLAY[dim]}: up to level {pattern.top_level(dim)}",
            "description": " -> ".join(s.kind for s in pattern.ladders[dim]),
            "code": [{"coding": [dimension_coding(dim)]}],
        }
        for dim in order
    ]
    for i in range(1, len(steps)):
        steps[i]["relatedAction"] = [{"actionId": steps[i - 1]["id"], "relationship": "after-start"}]
    return {
        "id": pattern.code,
        "title": pattern.name,
        "description": f"Drafted for a deficit of {targets}; started at its simplest form, then advanced "
        "along its dimensions in this order, one step at a time, when the current level is mastered without "
        "symptoms (docs/progression-rules.md).",
        "definitionCanonical": activity_definition_canonical(pattern.code, catalogue.version),
        "selectionBehavior": "all",
        "action": steps,
    }


def plan_definition(catalogue: Catalogue) -> dict[str, Any]:
    """The drafting and progression ladder as a PlanDefinition (a clinical protocol): per body region, the
    patterns a deficit selects (each its ActivityDefinition), and per pattern the order of its dimensions."""
    regions = []
    for region, title in _REGION_TITLES.items():
        patterns = [p for p in catalogue.patterns if p.region == region]
        if not patterns:
            continue
        regions.append(
            {
                "id": region,
                "title": title,
                "groupingBehavior": "logical-group",
                "selectionBehavior": "any",
                "action": [_pattern_action(p, catalogue) for p in patterns],
            }
        )
    return {
        "resourceType": "PlanDefinition",
        "id": PLAN_DEFINITION_ID,
        "url": PLAN_DEFINITION_URL,
        "version": catalogue.version,
        "name": "NeuromuscularReEducation",
        "title": "Neuromuscular re-education: drafting and progression ladder",
        "type": {"coding": [PLAN_DEFINITION_TYPE]},
        "status": "active",
        "experimental": False,
        "publisher": "Relearn",
        "description": "A plan is drafted from the evaluation's deficits: each deficit selects the movement "
        "patterns that target it (body site, motion, measure), each started at its simplest form (single "
        "joint, linear, non-weight-bearing, eyes open on a stable surface, assisted, fixed tempo) with its "
        "default dose. A pattern advances one dimension at a time, in its dimension order, when its current "
        "level is mastered without symptoms; symptoms hold or regress it. Competence stages: unconscious "
        "incompetence, conscious incompetence, conscious competence, unconscious competence.",
        "topic": [{"coding": [EXERCISE_THERAPY]}, {"coding": [NEURO_RE_EDUCATION]}],
        "goal": [
            {
                "description": {
                    "text": "Each trained movement pattern reaches unconscious competence: performed "
                    "correctly without feedback, at retention and under a dual task, without symptoms"
                },
                "category": {"coding": [GOAL_CATEGORY]},
            }
        ],
        "action": regions,
    }


def definitions(catalogue: Catalogue) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every ActivityDefinition of the catalogue, and the PlanDefinition."""
    return [activity_definition(p, catalogue) for p in catalogue.patterns], plan_definition(catalogue)


# -- Provenance ------------------------------------------------------------------------------------------

EXT_PROVENANCE_PATIENT = f"{CANONICAL}/StructureDefinition/provenance-patient"
PROVENANCE_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CLIENT_ID_SYSTEM = identifier_system("client-id")
SUBJECT_SYSTEM = identifier_system("token-subject")
SOFTWARE_SYSTEM = identifier_system("software")
# The progression engine, as the Device that made a decision (identified, not a stored Device resource).
ENGINE = {
    "type": "Device",
    "identifier": {"system": SOFTWARE_SYSTEM, "value": "relearn-plan-engine"},
    "display": "Relearn progression engine",
}


def _participant(code: str) -> dict[str, Any]:
    return {"coding": [{"system": PROVENANCE_PARTICIPANT, "code": code}]}


def _person(who: str) -> dict[str, Any]:
    if _is_reference(who):
        return _ref(who)
    return {"identifier": {"system": SUBJECT_SYSTEM, "value": who}, "display": who}


def provenance_patient(patient: str) -> dict[str, Any]:
    """The extension that puts a Provenance in its patient's compartment."""
    return {"url": EXT_PROVENANCE_PATIENT, "valueReference": _ref(f"Patient/{patient}")}


def provenance(
    plan: PlanState, targets: list[str], *, client: str | None, user: str | None, recorded: datetime
) -> dict[str, Any]:
    """The Provenance of one plan version's resources (``targets``: versioned references).

    Agents: the therapist (author) for a change someone made, the engine (a Device; performer of its own
    decisions, on behalf of the therapist for an edit), the client application (enterer). ``activity`` is
    create or update, ``reason`` the change's kind and reason, ``entity`` the evidence and the event that
    caused it (source) and the Tasks it raised; the ``plan-change`` extension is the decision record itself.
    """
    change = plan.latest_change
    by = change.by if change is not None else None
    author = by or user
    agents: list[dict[str, Any]] = []
    if by:
        agents.append({"type": _participant("author"), "who": _person(by)})
    engine: dict[str, Any] = {"type": _participant("assembler" if by else "performer"), "who": ENGINE}
    if author:
        engine["onBehalfOf"] = _person(author)
    agents.append(engine)
    if client:
        entered: dict[str, Any] = {
            "type": _participant("enterer"),
            "who": {"type": "Device", "identifier": {"system": CLIENT_ID_SYSTEM, "value": client}},
        }
        if author and author != client:
            entered["onBehalfOf"] = _person(author)
        agents.append(entered)
    operation = "CREATE" if plan.version == 1 else "UPDATE"
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "extension": [provenance_patient(plan.patient)],
        "target": [{"reference": t} for t in targets],
        "recorded": _dt(recorded),
        "activity": {"coding": [{"system": DATA_OPERATION, "code": operation}]},
        "agent": agents,
    }
    if change is not None:
        resource["occurredDateTime"] = _dt(change.at)
        resource["reason"] = [
            {"coding": [{"system": ACT_REASON, "code": "TREAT"}], "text": f"{change.kind}: {change.reason}"}
        ]
        resource["extension"].append(_change_extension(change))
        sources = [*change.evidence, *([change.trigger] if _is_reference(change.trigger) else [])]
        entities = [{"role": "source", "what": _ref(str(r))} for r in dict.fromkeys(sources)]
        entities += [
            {"role": "derivation", "what": _ref(d.task)} for d in change.decisions if d.task is not None
        ]
        if plan.version > 1:
            entities.append(
                {"role": "revision", "what": _ref(f"CarePlan/{plan.id}/_history/{plan.version - 1}")}
            )
        if entities:
            resource["entity"] = entities
    return resource
