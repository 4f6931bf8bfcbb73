"""FHIR mapping: evaluations, device metrics and session outcomes as Observations."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from relearn.evaluation.domain import codes
from relearn.evaluation.domain.deficits import Assessment, assess
from relearn.evaluation.domain.normative import Norm, NormativeTable, load_norms
from relearn.evaluation.schemas import (
    EvaluationIn,
    GoalTargetIn,
    MetricComputed,
    OnsetReference,
    RomReached,
    SessionLogged,
    SymptomsRecorded,
)
from relearn.shared.fhir import CANONICAL_URL

# One evaluation becomes a panel Observation (code ``evaluation-initial`` or ``evaluation-reassessment``)
# whose ``hasMember`` lists one Observation per item: history, referral conditions, pain, posture findings,
# balance tests, range of motion, muscle grades, concerns and goals. Each member carries an identifier
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


class _Builder:
    def __init__(self, ev: EvaluationIn, ids: IdFactory, norms: NormativeTable) -> None:
        self.ev = ev
        self.ids = ids
        self.panel_id = ids("panel")
        self.assessments = {a.item: a for a in assess(ev, norms)}
        self.members: list[dict[str, Any]] = []

    def _base(self, oid: str, category: str, code: dict[str, Any]) -> dict[str, Any]:
        ev = self.ev
        obs: dict[str, Any] = {"resourceType": "Observation", "id": oid}
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
    for i, rc in enumerate(ev.referral_conditions):
        kind_codings = [local(f"condition-{rc.kind}")]
        if rc.kind in codes.REFERRAL_CONDITION_SNOMED:
            kind_codings.append(codes.REFERRAL_CONDITION_SNOMED[rc.kind])
        onset = [_component(local("referral-condition-onset"), valueDateTime=rc.onset)] if rc.onset else None
        value = {"valueCodeableConcept": _concept(*kind_codings, text=rc.text)}
        b.add(
            f"referralConditions[{i}]",
            local("referral-condition"),
            "social-history",
            value=value,
            components=onset,
        )
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
        parts = [_laterality(s.side)]
        if s.modifier is not None:
            modifier = local("mmt-plus" if s.modifier == "+" else "mmt-minus")
            parts.append(_component(local("mmt-grade-modifier"), valueCodeableConcept=_concept(modifier)))
        b.add(
            f"strength[{i}]",
            m.coding,
            m.category,
            text=f"Manual muscle test grade {s.grade}",
            value={"valueQuantity": codes.quantity(s.base_grade, m.unit)},
            body_site={"coding": [group.coding()], "text": f"{side} {group.display.lower()}"},
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
    session: str,
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
        "status": "final",
        "category": [codes.category(category)],
        "code": {"coding": coding},
        "subject": {"reference": f"Patient/{patient}"},
        "encounter": {"reference": session},
        "effectiveDateTime": when,
        "valueQuantity": codes.quantity(value, "{score}"),
    }
    if part_of:
        obs["partOf"] = [{"reference": part_of}]
    if components:
        obs["component"] = components
    return obs


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
                        session=data.session,
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
            "partOf": [{"reference": ex.procedure}],
            "status": "final",
            "category": [codes.category("exam")],
            "code": _rom_code(rom),
            "subject": {"reference": f"Patient/{data.patient}"},
            "encounter": {"reference": data.session},
        }
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
    return _score(
        id=outcome_id(data.session, "-", "pain-24h-after-session"),
        patient=data.patient,
        session=data.session,
        when=data.recordedAt,
        coding=coding,
        value=data.pain24h,
        category="survey",
        components=[flare],
    )
