"""FHIR mapping: evaluations, device metrics and session outcomes as Observations."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from relearn.evaluation.domain import codes
from relearn.evaluation.domain.deficits import Assessment, assess
from relearn.evaluation.domain.normative import Norm, NormativeTable, load_norms
from relearn.evaluation.domain.outcomes import (
    ASHWORTH_GRADES,
    OUTCOME_MEASURES,
    OutcomeMeasure,
    ashworth_step,
)
from relearn.evaluation.domain.questionnaires import Scored
from relearn.evaluation.schemas import (
    EvaluationIn,
    ExerciseOutcome,
    GoalTargetIn,
    MetricComputed,
    OnsetReference,
    RomReached,
    Samples,
    SessionLogged,
    SymptomsRecorded,
    TrialResult,
    TrialSummarized,
)
from relearn.shared.fhir import CANONICAL_URL

# One evaluation becomes a panel Observation (code ``evaluation-initial`` or ``evaluation-reassessment``)
# whose ``hasMember`` lists one Observation per item: history, pain, posture findings,
# balance tests, range of motion, muscle grades, concerns and goals (referral conditions are Conditions,
# below). Each member carries an identifier
# ``<panel id>/<item path>`` (system ``codes.EVALUATION_ITEM_SYSTEM``) naming its item (``ev1/rom[2]``).
#
# Laterality: R4 Observation has no laterality element. ``bodySite`` holds the SNOMED CT joint structure (or
# the local muscle-group code) with a text such as "Left knee", and laterality is a component coded SNOMED CT
# 272741003 |Laterality| with value 7771000 |Left|, 24028007 |Right| or 51440002 |Bilateral| -- SNOMED's own
# attribute model, searchable with ``component-code-value-concept``.
#
# Where a norm applies the member gets ``interpretation`` (L or H for a deficit, N within the norm) and a
# ``referenceRange`` whose limit is the deficit limit and whose text names the norm and source.

IdFactory = Callable[[str], str]
"""Gives the resource id of an item, called with its path (``"panel"``, ``"rom[2]"``, ...)."""

_CONDITION_CODE = {
    "vision": ("test-vision", {"eyes-open": "eyes-open", "eyes-closed": "eyes-closed"}),
    "surface": ("test-surface", {"firm": "surface-firm", "foam": "surface-foam"}),
    "stance": (
        "test-stance",
        {
            "comfortable": "stance-comfortable",
            "feet-together": "stance-feet-together",
            "semi-tandem": "stance-semi-tandem",
            "tandem": "stance-tandem",
            "single-leg": "stance-single-leg",
        },
    ),
}


def _concept(*codings: codes.Coding, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [dict(c) for c in codings]}
    if text:
        out["text"] = text
    return out


def _component(code: codes.Coding, **value: Any) -> dict[str, Any]:
    return {"code": _concept(code), **value}


def _laterality(side: str) -> dict[str, Any]:
    return _component(codes.SNOMED_LATERALITY, valueCodeableConcept=_concept(codes.LATERALITY[side]))


def _interpretation(assessment: Assessment) -> list[dict[str, Any]]:
    if assessment.deficit is None:
        coding = codes.INTERPRETATION_NORMAL
    else:
        below = assessment.norm.direction == "below"
        coding = codes.INTERPRETATION_LOW if below else codes.INTERPRETATION_HIGH
    return [_concept(coding)]


def _reference_range(norm: Norm) -> list[dict[str, Any]]:
    bound = "low" if norm.direction == "below" else "high"
    out: dict[str, Any] = {bound: codes.quantity(norm.limit, norm.unit)}
    if norm.age is not None:
        out["age"] = {"low": codes.quantity(norm.age[0], "a"), "high": codes.quantity(norm.age[1], "a")}
    out["text"] = f"{norm.describe()}. {norm.source.citation}"
    return [out]


# The US Core 6.1 profiles our Observations conform to (checked in tests/unit/test_us_core_profiles.py):
# every evaluation Observation is a Simple Observation; a scored test's total a Screening and Assessment.
US_CORE_SIMPLE_OBSERVATION = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-simple-observation"
US_CORE_SCREENING_ASSESSMENT = (
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-screening-assessment"
)
US_CORE_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category"


class _Builder:
    def __init__(self, ev: EvaluationIn, ids: IdFactory, norms: NormativeTable) -> None:
        self.ev = ev
        self.ids = ids
        self.panel_id = ids("panel")
        self.assessments = {a.item: a for a in assess(ev, norms)}
        self.members: list[dict[str, Any]] = []

    def _base(self, oid: str, category: str, code: dict[str, Any]) -> dict[str, Any]:
        ev = self.ev
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": oid,
            "meta": {"profile": [US_CORE_SIMPLE_OBSERVATION]},
        }
        if oid != self.panel_id:
            obs["identifier"] = []  # filled by add(); keeps the usual element order
        obs |= {
            "status": "final",
            "category": [codes.category(category)],
            "code": code,
            "subject": {"reference": f"Patient/{ev.patient}"},
        }
        if ev.encounter is not None:
            obs["encounter"] = {"reference": f"Encounter/{ev.encounter}"}
        obs["effectiveDateTime"] = ev.effective
        if ev.performer is not None:
            obs["performer"] = [{"reference": ev.performer}]
        return obs

    def add(
        self,
        item: str,
        code: codes.Coding,
        category: str,
        *,
        text: str | None = None,
        value: dict[str, Any],
        body_site: dict[str, Any] | None = None,
        method: dict[str, Any] | None = None,
        components: list[dict[str, Any]] | None = None,
    ) -> None:
        oid = self.ids(item)
        obs = self._base(oid, category, _concept(code, text=text))
        obs["identifier"] = [{"system": codes.EVALUATION_ITEM_SYSTEM, "value": f"{self.panel_id}/{item}"}]
        obs |= value
        assessment = self.assessments.get(item)
        if assessment is not None:
            obs["interpretation"] = _interpretation(assessment)
        if body_site is not None:
            obs["bodySite"] = body_site
        if method is not None:
            obs["method"] = method
        if assessment is not None:
            obs["referenceRange"] = _reference_range(assessment.norm)
        if components:
            obs["component"] = components
        self.members.append(obs)

    def panel(self) -> dict[str, Any]:
        code = codes.local("evaluation-initial" if self.ev.kind == "initial" else "evaluation-reassessment")
        obs = self._base(self.panel_id, "exam", _concept(code))
        obs["hasMember"] = [{"reference": f"Observation/{m['id']}"} for m in self.members]
        return obs


def _target_components(target: GoalTargetIn) -> list[dict[str, Any]]:
    m = codes.measure(target.measure)
    out = [_component(m.coding, valueQuantity=codes.quantity(target.value, m.unit))]
    if target.side is not None:
        out.append(_laterality(target.side))
    if target.muscle_group is not None:
        group = codes.MUSCLE_GROUPS[target.muscle_group].coding()
        out.append(_component(codes.local("goal-target-muscle-group"), valueCodeableConcept=_concept(group)))
    if target.due_date is not None:
        out.append(_component(codes.local("goal-target-due-date"), valueDateTime=target.due_date.isoformat()))
    return out


def evaluation_to_observations(
    ev: EvaluationIn, *, ids: IdFactory, norms: NormativeTable | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The panel Observation and its members, as FHIR R4 JSON dicts (members in request order).

    ``ids`` is called once per resource with the item's path (``"panel"`` first), so the caller
    chooses the ids: fresh server ids, or ids derived from a request key for idempotent replays.
    """
    b = _Builder(ev, ids, norms or load_norms())
    local = codes.local

    if ev.history is not None:
        b.add("history", local("history-symptoms"), "social-history", value={"valueString": ev.history})
    if ev.pain is not None:
        pain = codes.measure("pain")
        b.add("pain", pain.coding, pain.category, value={"valueQuantity": codes.quantity(ev.pain, pain.unit)})
    for i, p in enumerate(ev.posture):
        parts = []
        if p.severity is not None:
            parts.append(
                _component(codes.SNOMED_SEVERITY, valueCodeableConcept=_concept(codes.SEVERITY[p.severity]))
            )
        if p.position is not None:
            position = _concept(local(f"position-{p.position}"))
            parts.append(_component(local("body-position"), valueCodeableConcept=position))
        b.add(
            f"posture[{i}]",
            local("posture-finding"),
            "exam",
            value={"valueString": p.finding},
            body_site={"text": p.region},
            components=parts,
        )
    for i, t in enumerate(ev.balance):
        m = codes.measure(t.test)
        parts = [_laterality(t.side)] if t.side is not None else []
        for name in ("vision", "surface", "stance"):
            chosen = getattr(t, name)
            if chosen is not None:
                component_code, values = _CONDITION_CODE[name]
                parts.append(
                    _component(local(component_code), valueCodeableConcept=_concept(local(values[chosen])))
                )
        b.add(
            f"balance[{i}]",
            m.coding,
            m.category,
            value={"valueQuantity": codes.quantity(t.value, m.unit)},
            components=parts,
        )
    for i, r in enumerate(ev.rom):
        m = r.measure
        joint_site = codes.JOINT_BODY_SITE.get(r.joint)
        where = f"{r.side.capitalize()} {r.joint}" if r.side != "bilateral" else f"Both {r.joint}s"
        b.add(
            f"rom[{i}]",
            m.coding,
            m.category,
            value={"valueQuantity": codes.quantity(r.degrees, m.unit)},
            body_site={"coding": [dict(joint_site)], "text": where} if joint_site else {"text": where},
            method=_concept(local(f"rom-{r.mode}")),
            components=[_laterality(r.side)],
        )
    for i, s in enumerate(ev.strength):
        m = codes.measure("mmt-grade")
        group = codes.MUSCLE_GROUPS[s.muscle_group]
        side = s.side.capitalize() if s.side != "bilateral" else "Both sides:"
        # The grade with its modifier is the coded value ("3+"), never a number plus a component.
        b.add(
            f"strength[{i}]",
            m.coding,
            m.category,
            text=f"Manual muscle test grade {s.grade}",
            value={"valueCodeableConcept": _concept(codes.mmt_grade(s.grade), text=s.grade)},
            body_site={"coding": [group.coding()], "text": f"{side} {group.display.lower()}"},
            components=[_laterality(s.side)],
        )
    for i, o in enumerate(ev.outcomes):
        om = o.definition
        parts = [_laterality(o.side)] if o.side is not None else []
        body_site = None
        if o.muscle_group is not None:
            group = codes.MUSCLE_GROUPS[o.muscle_group]
            where = f"{o.side.capitalize()} " if o.side else ""
            body_site = {"coding": [group.coding()], "text": f"{where}{group.display.lower()}"}
        if om.key == "modified-ashworth":
            grade = str(o.value)
            value = {"valueCodeableConcept": _concept(ashworth_coding(grade), text=grade)}
        else:
            value = {"valueQuantity": codes.quantity(float(o.value), om.unit)}
        b.add(
            f"outcomes[{i}]",
            outcome_coding(om),
            "exam",
            text=om.label,
            value=value,
            body_site=body_site,
            components=parts,
        )
    for i, concern in enumerate(ev.concerns):
        b.add(f"concerns[{i}]", local("patient-concern"), "survey", value={"valueString": concern})
    for i, g in enumerate(ev.goals):
        b.add(
            f"goals[{i}]",
            local("patient-goal-statement"),
            "survey",
            value={"valueString": g.text},
            components=_target_components(g.target) if g.target is not None else None,
        )
    return b.panel(), b.members


# -- Referral diagnoses as US Core Conditions ---------------------------------------------------------------
# Each referral condition is a Condition (US Core 6.1 Condition Problems and Health Concerns, or Encounter
# Diagnosis when the client says so): category problem-list-item or encounter-diagnosis, code SNOMED CT
# (by kind, or the client's concept) plus ICD-10-CM (I63.9 for a stroke NOS, or the client's code) plus the
# local kind, clinicalStatus (active unless told) and verificationStatus confirmed (a referral diagnosis).
# Its id comes from the same id factory as the members (path ``referralConditions[i]``) and it carries the
# evaluation-item identifier, so an Idempotency-Key replay finds the same Condition.


def condition_resources(ev: EvaluationIn, *, ids: IdFactory, panel_id: str) -> list[dict[str, Any]]:
    out = []
    for i, rc in enumerate(ev.referral_conditions):
        item = f"referralConditions[{i}]"
        codings: list[codes.Coding] = []
        if rc.snomed is not None:
            codings.append(codes.coding(codes.SNOMED, rc.snomed))
        elif rc.kind in codes.REFERRAL_CONDITION_SNOMED:
            codings.append(codes.REFERRAL_CONDITION_SNOMED[rc.kind])
        if rc.icd10cm is not None:
            codings.append(codes.coding(codes.ICD10CM, rc.icd10cm))
        elif rc.kind in codes.REFERRAL_CONDITION_ICD10CM and rc.snomed is None:
            codings.append(codes.REFERRAL_CONDITION_ICD10CM[rc.kind])
        local = codes.concept(f"condition-{rc.kind}")
        codings.append(local.coding())
        cond: dict[str, Any] = {
            "resourceType": "Condition",
            "id": ids(item),
            "meta": {"profile": [codes.US_CORE_CONDITION_PROFILE[rc.category]]},
            "identifier": [{"system": codes.EVALUATION_ITEM_SYSTEM, "value": f"{panel_id}/{item}"}],
            "clinicalStatus": _concept(
                codes.coding(
                    codes.CONDITION_CLINICAL,
                    rc.clinical_status,
                    codes.CONDITION_CLINICAL_DISPLAY[rc.clinical_status],
                )
            ),
            "verificationStatus": _concept(
                codes.coding(codes.CONDITION_VER_STATUS, "confirmed", "Confirmed")
            ),
            "category": [
                _concept(
                    codes.coding(
                        codes.CONDITION_CATEGORY, rc.category, codes.CONDITION_CATEGORY_DISPLAY[rc.category]
                    )
                )
            ],
            "code": _concept(*codings, text=rc.text or local.display),
            "subject": {"reference": f"Patient/{ev.patient}"},
        }
        if ev.encounter is not None:
            cond["encounter"] = {"reference": f"Encounter/{ev.encounter}"}
        if rc.onset is not None:
            cond["onsetDateTime"] = rc.onset
        cond["recordedDate"] = ev.effective
        if ev.performer is not None:
            cond["recorder"] = {"reference": ev.performer}
        out.append(cond)
    return out


# -- Outcome measures ---------------------------------------------------------------------------------------
# A standard outcome measure is a member Observation coded LOINC where verified (6-minute walk 64098-7),
# else the local code; laterality as a component, the muscle group (Modified Ashworth) as bodySite; the
# Modified Ashworth grade is a coded value (mas-1-plus), every other a UCUM quantity.


def outcome_coding(m: OutcomeMeasure) -> codes.Coding:
    if m.system == "loinc":
        return codes.coding(codes.LOINC, m.code, m.label)
    return codes.local(m.code)


def ashworth_coding(grade: str) -> codes.Coding:
    return codes.local(f"mas-{grade.replace('+', '-plus')}")


_OUTCOME_BY_CODE = {
    (outcome_coding(m)["system"], outcome_coding(m)["code"]): m for m in OUTCOME_MEASURES.values()
}
_ASHWORTH_BY_CODE = {ashworth_coding(g)["code"]: g for g in ASHWORTH_GRADES}


def outcome_code_tokens() -> list[str]:
    """``system|code`` of every outcome measure, for a code search."""
    return [f"{system}|{code}" for system, code in _OUTCOME_BY_CODE]


def _side_of(obs: dict[str, Any]) -> str | None:
    for comp in obs.get("component", []):
        if any(c.get("code") == codes.SNOMED_LATERALITY["code"] for c in comp["code"].get("coding", [])):
            code = comp.get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code")
            return next((side for side, c in codes.LATERALITY.items() if c["code"] == code), None)
    return None


def outcome_point(
    obs: dict[str, Any],
) -> tuple[OutcomeMeasure, str | None, str | None, dict[str, Any]] | None:
    """(measure, side, muscle group, point) of a stored outcome Observation; None if it is not one."""
    if obs.get("status") not in ("final", "amended", "corrected"):
        return None
    measure = next(
        (
            m
            for c in obs.get("code", {}).get("coding", [])
            if (m := _OUTCOME_BY_CODE.get((c.get("system"), c.get("code"))))
        ),
        None,
    )
    if measure is None:
        return None
    effective = obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start")
    if effective is None:
        return None
    point: dict[str, Any] = {"effective": effective, "observation": f"Observation/{obs['id']}"}
    if "valueCodeableConcept" in obs:
        code = obs["valueCodeableConcept"].get("coding", [{}])[0].get("code")
        grade = _ASHWORTH_BY_CODE.get(str(code))
        if grade is None:
            return None
        point |= {"value": float(ashworth_step(grade)), "grade": grade}
    elif "value" in obs.get("valueQuantity", {}):
        point["value"] = float(obs["valueQuantity"]["value"])
    else:
        return None
    group = None
    for c in (obs.get("bodySite") or {}).get("coding", []):
        if str(c.get("code", "")).startswith("muscle-group-"):
            group = str(c["code"]).removeprefix("muscle-group-")
    return measure, _side_of(obs), group, point


def item_path(observation: dict[str, Any]) -> str | None:
    """The request item a member records (``"rom[2]"``), read from its evaluation-item identifier."""
    for ident in observation.get("identifier", []):
        if ident.get("system") == codes.EVALUATION_ITEM_SYSTEM:
            _, _, path = str(ident.get("value", "")).partition("/")
            return path or None
    return None


# -- Device metrics (``device.metric-computed.v1``) ---------------------------------------------------------
# Following the IoMT pattern (normalise -> group -> transform -> persist): the gateway already normalised and
# grouped by (patient, device, metric, window, channel); each metric becomes one Observation, under the id the
# event names (derived from that group). ``bodySite`` is the channel's bound muscle (the gateway's muscle
# CodeSystem, SENIAM slugs) with the channel in its text; a ``not-detected`` or ``not-computable`` metric is
# stored too, never dropped: no value, a ``dataAbsentReason`` and the gateway's reason in ``note``.

# The rule for events that do not name their Observation (sent before the gateway named it): the same rule
# the gateway names them by, so the ids do not change.
_DEVICE_METRIC_OBSERVATIONS = uuid.UUID("0c7f3b8e-2d4a-4b6f-9a51-7e2f4c9d8a33")


def metric_observation_id(m: MetricComputed) -> str:
    """The id of the Observation one metric is stored as: the one the event names (``observation``), else
    one per (patient, device, metric, window, channel), so a replayed or recomputed metric updates the same
    Observation.
    """
    if m.observation is not None:
        return m.observation.removeprefix("Observation/")
    key = f"{m.patient}|{m.device}|{m.metric}|{m.window.start.isoformat()}|{m.window.end.isoformat()}"
    if m.channel is not None:
        key += f"|{m.channel}"
    return str(uuid.uuid5(_DEVICE_METRIC_OBSERVATIONS, key))


def _code(code: str) -> dict[str, Any]:
    return {"coding": [dict(codes.local(code))]}


MUSCLE_SYSTEM = f"{CANONICAL_URL}/CodeSystem/muscle"  # the device gateway's, published there
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_ABSENT = {
    # No proper value exists: the muscle produced no onset (the measurement itself was made).
    "not-detected": codes.coding(DATA_ABSENT_REASON, "not-applicable", "Not Applicable"),
    # The measurement the value needs was not made: no reference channel or cue, no MVC, too short.
    "not-computable": codes.coding(DATA_ABSENT_REASON, "not-performed", "Not Performed"),
}
INTERPRETATION_NOT_DETECTED = codes.coding(codes.INTERPRETATION, "ND", "Not detected")


def _body_site(m: MetricComputed) -> dict[str, Any] | None:
    if m.muscle is None:
        return {"text": m.channel} if m.channel else None
    muscles = f"{m.muscle} / {m.antagonist}" if m.antagonist else m.muscle
    text = f"{muscles} (channel {m.channel})" if m.channel else muscles
    return {"coding": [codes.coding(MUSCLE_SYSTEM, m.muscle)], "text": text}


def _reference_note(ref: OnsetReference) -> str:
    if ref.kind == "cue":
        return "Onset latency from the movement cue (protocol cueTime)."
    who = ref.muscle or "the reference muscle"
    return f"Onset latency relative to the onset of the synergist {who} (channel {ref.channel})."


def metric_observation(m: MetricComputed) -> dict[str, Any]:
    concept = codes.concept(m.metric)  # an unknown metric code is poison: it goes to the DLQ
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": metric_observation_id(m),
        "status": "final",
        "category": [codes.category(str(concept.properties.get("category", {}).get("code", "exam")))],
        "code": _code(m.metric),
        "subject": {"reference": f"Patient/{m.patient}"},
        "effectivePeriod": {"start": m.window.start.isoformat(), "end": m.window.end.isoformat()},
        "device": {"reference": f"Device/{m.device}"},
        "identifier": [{"system": f"{CANONICAL_URL}/sid/device-stream", "value": m.stream}],
    }
    body_site = _body_site(m)
    if body_site is not None:
        obs["bodySite"] = body_site
    if m.session:
        obs["encounter"] = {"reference": m.session if "/" in m.session else f"Encounter/{m.session}"}
    notes: list[str] = []
    if m.status != "measured":
        obs["dataAbsentReason"] = {"coding": [dict(_ABSENT[m.status])], "text": m.status}
        if m.status == "not-detected":
            obs["interpretation"] = [{"coding": [dict(INTERPRETATION_NOT_DETECTED)]}]
        notes.append(m.reason or m.status)
    elif m.value is not None:
        obs["valueQuantity"] = codes.quantity(m.value, m.unit or str(concept.properties.get("unit", "1")))
    if m.reference is not None:
        notes.append(_reference_note(m.reference))
    if notes:
        obs["note"] = [{"text": n} for n in notes]
    components = [
        {"code": _code(c.code), "valueQuantity": codes.quantity(c.value, c.unit)} for c in m.components
    ]
    if m.samples is not None:
        s = m.samples
        components.append(
            {
                "code": _code("emg-envelope") if m.metric.startswith("emg") else _code(m.metric),
                "valueSampledData": {
                    "origin": codes.quantity(s.origin, s.unit),
                    "period": s.period_ms,
                    "factor": s.factor,
                    "dimensions": s.dimensions,
                    "data": s.data,
                },
            }
        )
    if components:
        obs["component"] = components
    return obs


# -- Trial summaries (``device.trial-summarized.v1``) --------------------------------------------------------
# One Observation per metric of a trial (a stream binding's recording), under the id the event names (derived
# from patient, device, stream and metric: a re-delivered summary updates it). A balance metric has the whole
# trial's value; an EMG metric one component per channel (or declared pair) with the whole-trial value, its
# muscle in the component's text and in the component body-site extension, and the channel's 1 s window
# values as a component with valueSampledData (``emg-window-series``: datum i = window [start + i s,
# start + (i + 1) s); "E" for a window that could not be computed, each gap's reason in ``note``).

COMPONENT_BODY_SITE = f"{CANONICAL_URL}/StructureDefinition/observation-component-body-site"


def _sampled(s: Samples) -> dict[str, Any]:
    return {
        "origin": codes.quantity(s.origin, s.unit),
        "period": s.period_ms,
        "factor": s.factor,
        "dimensions": s.dimensions,
        "data": s.data,
    }


def _site(r: TrialResult) -> tuple[str | None, list[dict[str, Any]]]:
    """The channel's text (muscle and channel) and the body-site extension of its components."""
    if r.muscle is None:
        return r.channel, []
    muscles = f"{r.muscle} / {r.antagonist}" if r.antagonist else r.muscle
    text = f"{muscles} (channel {r.channel})" if r.channel else muscles
    site = {"coding": [codes.coding(MUSCLE_SYSTEM, r.muscle)], "text": text}
    return text, [{"url": COMPONENT_BODY_SITE, "valueCodeableConcept": site}]


def _named(code: str, text: str | None) -> dict[str, Any]:
    out = _code(code)
    concept = codes.concept(code)
    if text:
        out["text"] = f"{concept.display}, {text}"
    return out


def _result_component(metric: str, unit: str, r: TrialResult) -> list[dict[str, Any]]:
    text, extension = _site(r)
    head: dict[str, Any] = {"code": _named(metric, text)}
    if extension:
        head["extension"] = extension
    if r.status != "measured" or r.value is None:
        status = r.status if r.status != "measured" else "not-computable"
        head["dataAbsentReason"] = {"coding": [dict(_ABSENT[status])], "text": status}
        if status == "not-detected":
            head["interpretation"] = [{"coding": [dict(INTERPRETATION_NOT_DETECTED)]}]
    else:
        head["valueQuantity"] = codes.quantity(r.value, r.unit or unit)
    out = [head]
    for c in r.components:
        out.append({"code": _named(c.code, text), "valueQuantity": codes.quantity(c.value, c.unit)})
    if r.samples is not None:
        wave = {"code": _named("emg-envelope", text), "valueSampledData": _sampled(r.samples)}
        out.append(wave | ({"extension": extension} if extension else {}))
    if r.series is not None:
        series_text = f"{metric} per {r.series.period_ms / 1000:g} s window" + (f", {text}" if text else "")
        code = _code(WINDOW_SERIES) | {"text": series_text}
        series = {"code": code, "valueSampledData": _sampled(r.series)}
        out.append(series | ({"extension": extension} if extension else {}))
    return out


WINDOW_SERIES = "emg-window-series"
MAX_NOTES = 40


def trial_observation(t: TrialSummarized) -> dict[str, Any]:
    """The Observation of one metric of one trial (see above); an unknown metric code raises (poison)."""
    concept = codes.concept(t.metric)
    unit = t.unit or str(concept.properties.get("unit", "1"))
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": t.observation_id,
        "status": "final",
        "category": [codes.category(str(concept.properties.get("category", {}).get("code", "exam")))],
        "code": _code(t.metric),
        "subject": {"reference": f"Patient/{t.patient}"},
        "effectivePeriod": {"start": t.trial.start.isoformat(), "end": t.trial.end.isoformat()},
        "device": {"reference": f"Device/{t.device}"},
        "identifier": [{"system": f"{CANONICAL_URL}/sid/device-stream", "value": t.stream}],
    }
    if t.session:
        obs["encounter"] = {"reference": t.session if "/" in t.session else f"Encounter/{t.session}"}
    notes: list[str] = []
    [first, *more] = t.results
    if first.channel is None and not more:
        # A metric of the whole stream (balance): the trial's value is the Observation's.
        if first.status != "measured" or first.value is None:
            status = first.status if first.status != "measured" else "not-computable"
            obs["dataAbsentReason"] = {"coding": [dict(_ABSENT[status])], "text": status}
            if status == "not-detected":
                obs["interpretation"] = [{"coding": [dict(INTERPRETATION_NOT_DETECTED)]}]
            notes.append(first.reason or status)
        else:
            obs["valueQuantity"] = codes.quantity(first.value, first.unit or unit)
            if first.reason:
                notes.append(first.reason)
        components = [
            {"code": _code(c.code), "valueQuantity": codes.quantity(c.value, c.unit)}
            for c in first.components
        ]
        if components:
            obs["component"] = components
    else:
        obs["component"] = [c for r in t.results for c in _result_component(t.metric, unit, r)]
        for r in t.results:
            text, _ = _site(r)
            if r.reason:
                notes.append(f"{text}: {r.reason}" if text else r.reason)
            if r.reference is not None:
                notes.append(
                    f"{text}: {_reference_note(r.reference)}" if text else _reference_note(r.reference)
                )
    w = t.windows
    if w is not None and w.gap_count:
        listed = "; ".join(f"window {g.index}: {g.reason}" for g in w.gaps)
        more_gaps = w.gap_count - len(w.gaps)
        notes.append(
            f"{w.gap_count} of {w.count} windows could not be computed (E in the window series): {listed}"
            + (f"; and {more_gaps} more" if more_gaps > 0 else "")
        )
    if w is not None and w.cut:
        notes.append("the window series are cut at 2 hours; every window is served by the device gateway")
    if notes:
        obs["note"] = [{"text": n[:2000]} for n in notes[:MAX_NOTES]]
    return obs


# -- Device-measured sets -----------------------------------------------------------------------------------
# A set, for the FHIR surface, is the device trials of one exercise of one session (``session.logged.v1``
# lists each exercise's ``deviceStreams``): one ``device-set`` Observation per such exercise, ``partOf`` its
# Procedure, an identifier per trial stream, ``hasMember`` the trials' summary Observations (filled in as they
# arrive, in either order), the sets and reps logged as components. Its id derives from (session, exercise).

DEVICE_STREAM_SYSTEM = f"{CANONICAL_URL}/sid/device-stream"
DEVICE_SET = "device-set"


def set_observation(data: SessionLogged, ex: ExerciseOutcome, members: list[str]) -> dict[str, Any]:
    """The ``device-set`` Observation of an exercise recorded with device streams (see above)."""
    start, end = ex.start or data.start or data.end, ex.end or data.end
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": outcome_id(data.session, ex.procedure, DEVICE_SET),
        "status": "final",
        "category": [codes.category("exam")],
        "code": _code(DEVICE_SET),
        "subject": {"reference": f"Patient/{data.patient}"},
        "identifier": [{"system": DEVICE_STREAM_SYSTEM, "value": s} for s in ex.deviceStreams],
        "partOf": [{"reference": ex.procedure}],
        "effectivePeriod": {"start": start, "end": end},
    }
    visit = _visit(data)
    if visit is not None:
        obs["encounter"] = {"reference": visit}
    components = []
    if ex.sets is not None:
        components.append({"code": _code("device-set-sets"), "valueInteger": ex.sets})
    if ex.reps:
        components.append({"code": _code("device-set-reps"), "valueInteger": sum(ex.reps)})
    if components:
        obs["component"] = components
    if members:
        obs["hasMember"] = [{"reference": m} for m in sorted(set(members))]
    return obs


def set_members(observations: list[dict[str, Any]]) -> list[str]:
    """The trial summary Observations among ``observations`` (found by a stream's identifier)."""
    return [f"Observation/{o['id']}" for o in observations if not is_set(o)]


def is_set(observation: dict[str, Any]) -> bool:
    return any(c.get("code") == DEVICE_SET for c in observation.get("code", {}).get("coding", []))


def set_streams(observation: dict[str, Any]) -> list[str]:
    return [
        str(i["value"]) for i in observation.get("identifier", []) if i.get("system") == DEVICE_STREAM_SYSTEM
    ]


def with_members(observation: dict[str, Any], members: list[str]) -> dict[str, Any]:
    """The stored set Observation with ``hasMember`` = ``members`` (its ``meta`` left to the store)."""
    out = {k: v for k, v in observation.items() if k not in ("meta", "hasMember")}
    if members:
        out["hasMember"] = [{"reference": m} for m in sorted(set(members))]
    return out


# -- Session outcomes (``session.logged.v1``, ``session.symptoms-recorded.v1``) -----------------------------
# Pain before/after each exercise (LOINC 72514-3 with the local before/after code), movement quality and the
# 24-hour pain response; ids derive from (session, exercise, measure), so a replayed event updates the same
# Observations. The ROM reached in an exercise is stored under exactly the id the sessions service named in
# the event (``rom.observation``).

ROM_CODE = "rom-exercise-active"
ROM_INSTRUMENTS = {
    "goniometer": "rom-instrument-goniometer",
    "inclinometer": "rom-instrument-inclinometer",
    "device": "rom-instrument-device",
}

_OUTCOME_IDS = uuid.UUID("a3e7c2d1-5b4f-4e8a-8c6d-1f2e3d4c5b6a")


def outcome_id(session: str, procedure: str, measure: str) -> str:
    return str(uuid.uuid5(_OUTCOME_IDS, f"{session}|{procedure}|{measure}"))


def _score(
    *,
    id: str,
    patient: str,
    session: str | None,
    when: str,
    coding: list[dict[str, Any]],
    value: int,
    category: str,
    part_of: str | None = None,
    components: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id,
        "meta": {"profile": [US_CORE_SIMPLE_OBSERVATION]},
        "status": "final",
        "category": [codes.category(category)],
        "code": {"coding": coding},
        "subject": {"reference": f"Patient/{patient}"},
    }
    if session is not None:  # home practice has no Encounter
        obs["encounter"] = {"reference": session}
    obs["effectiveDateTime"] = when
    if category == "survey":  # a pain rating is the patient's own report
        obs["performer"] = [{"reference": f"Patient/{patient}"}]
    obs["valueQuantity"] = codes.quantity(value, "{score}")
    if part_of:
        obs["partOf"] = [{"reference": part_of}]
    if components:
        obs["component"] = components
    return obs


def _visit(data: SessionLogged) -> str | None:
    """The session's Encounter; None for home practice (patient-reported exercise, no visit: the event's
    ``session`` then names the Procedure of the exercise)."""
    if data.setting != "clinic":
        return None
    return data.encounter or data.session


def session_outcome_observations(data: SessionLogged) -> list[dict[str, Any]]:
    pain = dict(codes.LOINC_PAIN_NRS)
    out: list[dict[str, Any]] = []
    for ex in data.exercises:
        scores = [
            (
                "pain-before-session",
                ex.painBefore,
                [pain, dict(codes.local("pain-before-session"))],
                "survey",
            ),
            ("pain-after-session", ex.painAfter, [pain, dict(codes.local("pain-after-session"))], "survey"),
            ("movement-quality", ex.quality, [dict(codes.local("movement-quality"))], "exam"),
        ]
        for measure, value, coding, category in scores:
            if value is not None:
                out.append(
                    _score(
                        id=outcome_id(data.session, ex.procedure, measure),
                        coding=coding,
                        value=value,
                        category=category,
                        patient=data.patient,
                        session=_visit(data),
                        when=data.end,
                        part_of=ex.procedure,
                    )
                )
    return out


def _rom_code(rom: RomReached) -> dict[str, Any]:
    coding = [dict(codes.local(ROM_CODE))]
    if rom.motion is None:
        return {"coding": coding}
    # "knee flexion" / "knee-flexion" also gets the joint's own code (rom-knee-flexion) when there is one.
    slug = re.sub(r"[\s_]+", "-", rom.motion.strip().lower())
    specific = codes.MEASURES.get(f"rom-{slug}")
    if specific is not None and specific.kind == "range-of-motion":
        coding.append(dict(specific.coding))
    return {"coding": coding, "text": f"Active range of motion reached in the exercise: {rom.motion}"}


def rom_observations(data: SessionLogged) -> list[dict[str, Any]]:
    """One Observation per exercise that recorded the ROM it reached, under the event's id."""
    out: list[dict[str, Any]] = []
    for ex in data.exercises:
        rom = ex.rom
        if rom is None:
            continue
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": rom.observation_id,
            "meta": {"profile": [US_CORE_SIMPLE_OBSERVATION]},
            "partOf": [{"reference": ex.procedure}],
            "status": "final",
            "category": [codes.category("exam")],
            "code": _rom_code(rom),
            "subject": {"reference": f"Patient/{data.patient}"},
        }
        if (visit := _visit(data)) is not None:
            obs["encounter"] = {"reference": visit}
        # The exercise's own time when the therapist gave it, else the session's end (as the scores).
        if ex.start is not None and ex.end is not None:
            obs["effectivePeriod"] = {"start": ex.start, "end": ex.end}
        else:
            obs["effectiveDateTime"] = ex.start or ex.end or data.end
        obs["valueQuantity"] = codes.quantity(rom.valueDeg, "deg")
        obs["method"] = {"coding": [dict(codes.local(ROM_INSTRUMENTS[rom.method]))]}
        out.append(obs)
    return out


def symptom_observation(data: SymptomsRecorded) -> dict[str, Any]:
    coding = [dict(codes.LOINC_PAIN_NRS), dict(codes.local("pain-24h-after-session"))]
    flare = {"code": {"text": "Symptom flare not settled by the next day"}, "valueBoolean": data.flare}
    # A clinic session is an Encounter; home practice is named by its exercise's Procedure (no visit).
    visit = data.session if data.session.startswith("Encounter/") else None
    return _score(
        id=outcome_id(data.session, "-", "pain-24h-after-session"),
        patient=data.patient,
        session=visit,
        when=data.recordedAt,
        coding=coding,
        value=data.pain24h,
        category="survey",
        components=[flare],
        part_of=None if visit is not None else data.session,
    )


# -- Home practice as patient-reported exercise (HL7 Physical Activity IG) ----------------------------------
# A home-practice session is no visit: each exercise becomes a PA "Activity-based Physical Activity Measure"
# Observation coded LOINC 73985-4 *Exercise activity* whose value is the movement pattern practised, and
# the session one coded LOINC 55411-3 *Exercise duration* (min); both category ``activity`` plus the IG's
# ``PhysicalActivity`` category, the patient as performer (patient-reported), effectivePeriod start and
# end as the IG requires, ``partOf`` the exercise's Procedure. Ids derive from (session, exercise, measure).
PA_CATEGORY = "http://hl7.org/fhir/us/physical-activity/CodeSystem/pa-temporary-codes"
PA_ACTIVITY_MEASURE = "http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-activity-measure"
LOINC_EXERCISE_ACTIVITY = codes.coding(codes.LOINC, "73985-4", "Exercise activity")
LOINC_EXERCISE_DURATION = codes.coding(codes.LOINC, "55411-3", "Exercise duration")
MOVEMENT_PATTERN_SYSTEM = f"{CANONICAL_URL}/CodeSystem/movement-pattern"  # the plan service's


def _pa_base(data: SessionLogged, oid: str, code: codes.Coding, start: str, end: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "meta": {"profile": [PA_ACTIVITY_MEASURE]},
        "status": "final",
        "category": [
            codes.category("activity"),
            {"coding": [codes.coding(PA_CATEGORY, "PhysicalActivity", "Physical Activity")]},
        ],
        "code": {"coding": [dict(code)]},
        "subject": {"reference": f"Patient/{data.patient}"},
        "effectivePeriod": {"start": start, "end": end},
        "performer": [{"reference": f"Patient/{data.patient}"}],
    }


def _minutes(start: str, end: str) -> float:
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 60, 1)


def home_practice_observations(data: SessionLogged) -> list[dict[str, Any]]:
    """PA IG exercise Observations of a home-practice session (none for a clinic session)."""
    if data.setting != "home":
        return []
    session_start = data.start or data.end
    out: list[dict[str, Any]] = []
    for ex in data.exercises:
        start, end = ex.start or session_start, ex.end or data.end
        obs = _pa_base(
            data,
            outcome_id(data.session, ex.procedure, "pa-exercise-activity"),
            LOINC_EXERCISE_ACTIVITY,
            start,
            end,
        )
        obs["partOf"] = [{"reference": ex.procedure}]
        pattern = ex.pattern or ex.activity
        coding = [{"system": MOVEMENT_PATTERN_SYSTEM, "code": ex.pattern}] if ex.pattern else []
        obs["valueCodeableConcept"] = {"coding": coding, "text": pattern} if coding else {"text": pattern}
        out.append(obs)
    duration = _pa_base(
        data,
        outcome_id(data.session, "-", "pa-exercise-duration"),
        LOINC_EXERCISE_DURATION,
        session_start,
        data.end,
    )
    duration["valueQuantity"] = codes.quantity(_minutes(session_start, data.end), "min")
    out.append(duration)
    return out


# -- Scored tests: a QuestionnaireResponse's total as an Observation -----------------------------------------
# The total of a completed response is an Observation coded as the outcome measure (so its trend and MCID
# verdict include it), category survey, derivedFrom the response, effective when it was authored, its author
# as performer; its id derives from the response's, so an update of the response updates it.
_QUESTIONNAIRE_TOTAL_IDS = uuid.UUID("0c9a4e6b-2f57-4d1a-9b8e-5a3c7d1e2f40")


def questionnaire_total_id(response_id: str) -> str:
    return str(uuid.uuid5(_QUESTIONNAIRE_TOTAL_IDS, response_id))


def questionnaire_total_observation(response: dict[str, Any], scored: Scored) -> dict[str, Any] | None:
    """The total of a completed response as an Observation; None while it is not complete."""
    if scored.total is None or response.get("status") not in ("completed", "amended"):
        return None
    m = scored.test.measure
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": questionnaire_total_id(str(response["id"])),
        "meta": {"profile": [US_CORE_SCREENING_ASSESSMENT]},
        "status": "amended" if response.get("status") == "amended" else "final",
        # survey, and US Core's functional-status: balance and gait tests assess function.
        "category": [
            codes.category("survey"),
            {"coding": [codes.coding(US_CORE_CATEGORY, "functional-status", "Functional Status")]},
        ],
        "code": {"coding": [dict(outcome_coding(m))], "text": f"{m.label} total score"},
        "subject": response["subject"],
    }
    if response.get("encounter"):
        obs["encounter"] = response["encounter"]
    obs["effectiveDateTime"] = response["authored"]
    if response.get("author"):
        obs["performer"] = [response["author"]]
    obs["valueQuantity"] = codes.quantity(scored.total, m.unit)
    obs["derivedFrom"] = [{"reference": f"QuestionnaireResponse/{response['id']}"}]
    return obs
