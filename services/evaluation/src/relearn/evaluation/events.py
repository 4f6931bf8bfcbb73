"""Events out: evaluation.completed/reassessed.v1 and observation.recorded.v1 data, staged in the outbox."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session

from relearn.evaluation.domain import codes
from relearn.evaluation.domain.deficits import find_deficits
from relearn.evaluation.domain.normative import NormativeTable, load_norms
from relearn.evaluation.mapper import item_path
from relearn.evaluation.schemas import EvaluationIn, GoalTargetIn
from relearn.shared.events import CloudEvent, stage
from relearn.shared.fhir import FhirStore, ResourceChange, WriteHook

SOURCE = "/relearn/evaluation"
EVALUATION_COMPLETED = "evaluation.completed.v1"
EVALUATION_REASSESSED = "evaluation.reassessed.v1"
OBSERVATION_RECORDED = "observation.recorded.v1"


def event_type(ev: EvaluationIn) -> str:
    """``evaluation.completed.v1`` for an initial evaluation, ``evaluation.reassessed.v1`` otherwise."""
    return EVALUATION_COMPLETED if ev.kind == "initial" else EVALUATION_REASSESSED


def stage_evaluation(session: Session, ev: EvaluationIn, data: dict[str, Any]) -> None:
    """Stage the evaluation's event (its ``data`` from :func:`evaluation_completed_data`) in the outbox."""
    stage(session, CloudEvent.new(SOURCE, event_type(ev), ev.patient, data))


def _target_event(target: GoalTargetIn) -> dict[str, Any]:
    m = codes.measure(target.measure)
    return {
        "measure": m.key,
        "code": dict(m.coding),
        "value": int(target.value) if target.value.is_integer() else target.value,
        "unit": m.unit,
        "comparator": ">=" if m.better == "higher" else "<=",
        "side": target.side,
        "muscleGroup": target.muscle_group,
        "dueDate": target.due_date.isoformat() if target.due_date is not None else None,
    }


# Fall-risk screening tests the plan reads (TUG > 13.5 s or Berg < 45 makes load-bearing advances proposals).
SCREENING_TESTS = ("tug", "berg")


def _screening(ev: EvaluationIn, ids: dict[str, str]) -> dict[str, dict[str, Any] | None]:
    """The evaluation's own TUG and Berg, deficit or not; the worse one when a test was recorded twice."""
    out: dict[str, dict[str, Any] | None] = dict.fromkeys(SCREENING_TESTS)
    for i, t in enumerate(ev.balance):
        if t.test not in SCREENING_TESTS:
            continue
        m = codes.measure(t.test)
        found = out[t.test]
        if found is not None and (
            t.value <= found["value"] if m.better == "lower" else t.value >= found["value"]
        ):
            continue
        oid = ids.get(f"balance[{i}]")
        out[t.test] = {
            "value": int(t.value) if t.value.is_integer() else t.value,
            "unit": m.unit,
            "observation": f"Observation/{oid}" if oid is not None else None,
        }
    return out


def _system_coding(resource: dict[str, Any], system: str) -> dict[str, Any] | None:
    for c in resource["code"]["coding"]:
        if c["system"] == system:
            return dict(c)
    return None


def evaluation_completed_data(
    ev: EvaluationIn,
    panel: dict[str, Any],
    members: list[dict[str, Any]],
    conditions: list[dict[str, Any]] | None = None,
    *,
    norms: NormativeTable | None = None,
) -> dict[str, Any]:
    """The ``data`` of ``evaluation.completed.v1`` / ``evaluation.reassessed.v1`` (see :func:`event_type`).

    ``panel`` and ``members`` are what :func:`evaluation_to_observations` returned for ``ev``, ``conditions``
    what :func:`condition_resources` did.
    Plain JSON (camelCase keys; every key always present, null when not applicable)::

        evaluationId        id of the panel Observation
        patient             Patient id (the event's subject)
        kind                "initial" | "reassessment"
        effective           the evaluation's dateTime, as sent
        encounter           Encounter id | null
        performer           "Practitioner/<id>" | "PractitionerRole/<id>" | null
        ageYears            int | null (selects age-banded norms)
        normsVersion        version of the normative table the deficits were judged with
        referralConditions  [{condition: "Condition/<id>", kind: stroke|brain-injury|trauma|other,
                              text, onset, category: problem-list-item|encounter-diagnosis,
                              clinicalStatus, code: local Coding, snomed: Coding | null,
                              icd10cm: Coding | null}]
        conditions          ["Condition/<id>", ...] -- the referral diagnoses, in request order: what
                            CarePlan.addresses references
        deficits            [{item ("rom[2]"), observationId, measure ("rom-knee-flexion", "tug",
                              "mmt-grade", "pain", ...), code: Coding, kind: range-of-motion|strength|
                              balance|pain, side, joint, motion, mode: active|passive, muscleGroup,
                              conditions: {vision?, surface?, stance?}, measured: number, grade ("3+")
                              | null, unit (UCUM), norm: {value, limit, direction: below|above, kind:
                              mean|cut-off|normal-grade|ideal, appliesTo: {ageYears?, vision?,
                              surface?}, source, citation}, percentOfNorm: number | null,
                              severity: mild|moderate|severe, explanation}]
        goals               [{observationId, text, target: null | {measure, code: Coding, value,
                              unit, comparator: ">=" | "<=" (which way is better), side,
                              muscleGroup, dueDate: "YYYY-MM-DD" | null}}]
        concerns            [{observationId, text}]
        screening           {tug: {value, unit: "s", observation: "Observation/<id>"} | null,
                             berg: {value, unit: "{score}", observation} | null} -- the fall-risk
                            screening tests as measured (deficit or not; the worse of two records)
    """
    table = norms or load_norms()
    ids = {path: m["id"] for m in members if (path := item_path(m)) is not None}
    return {
        "evaluationId": panel["id"],
        "patient": ev.patient,
        "kind": ev.kind,
        "effective": ev.effective,
        "encounter": ev.encounter,
        "performer": ev.performer,
        "ageYears": ev.age_years,
        "normsVersion": table.version,
        "referralConditions": [
            {
                "condition": f"Condition/{cond['id']}",
                "kind": rc.kind,
                "text": rc.text,
                "onset": rc.onset,
                "category": rc.category,
                "clinicalStatus": rc.clinical_status,
                "code": codes.local(f"condition-{rc.kind}"),
                "snomed": _system_coding(cond, codes.SNOMED),
                "icd10cm": _system_coding(cond, codes.ICD10CM),
            }
            for rc, cond in zip(ev.referral_conditions, conditions or [], strict=True)
        ],
        "conditions": [f"Condition/{cond['id']}" for cond in conditions or []],
        "deficits": [d.to_event(ids.get(d.item)) for d in find_deficits(ev, table)],
        "goals": [
            {
                "observationId": ids.get(f"goals[{i}]"),
                "text": g.text,
                "target": _target_event(g.target) if g.target is not None else None,
            }
            for i, g in enumerate(ev.goals)
        ],
        "concerns": [
            {"observationId": ids.get(f"concerns[{i}]"), "text": c} for i, c in enumerate(ev.concerns)
        ],
        "screening": _screening(ev, ids),
    }


def patient_of(observation: dict[str, Any]) -> str | None:
    ref = str((observation.get("subject") or {}).get("reference", ""))
    kind, _, rid = ref.rpartition("/")
    return rid if kind.endswith("Patient") and rid else None


def observation_recorded_hook(store: FhirStore) -> WriteHook:
    """Every stored version of a patient's Observation becomes ``observation.recorded.v1``.

    Consumers (the plan service's progression engine) get the measurement itself so they
    never call back; a delete is published with ``status: entered-in-error`` so they stop
    counting it.
    """

    def hook(session: Session, change: ResourceChange) -> None:
        if change.resource_type != "Observation":
            return
        if change.resource is None:
            before = store.get_version(session, "Observation", change.id, change.previous_version_id)
            observation = json.loads(before.text) if before is not None and before.text else {}
            observation["status"] = "entered-in-error"
        else:
            # Plain floats are fine for consumers; the stored text keeps the exact digits.
            observation = json.loads(change.stored.text)
        patient = patient_of(observation)
        if patient is None:
            return
        data = {"id": change.id, "versionId": change.stored.version_id, "observation": observation}
        stage(session, CloudEvent.new(SOURCE, OBSERVATION_RECORDED, patient, data))

    return hook
