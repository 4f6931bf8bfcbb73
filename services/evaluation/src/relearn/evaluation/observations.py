"""Pure mappers: an :class:`EvaluationIn` to FHIR R4 Observations, and the event it emits.

One evaluation becomes a panel Observation (code ``evaluation-initial`` or
``evaluation-reassessment``) whose ``hasMember`` lists one Observation per item: history,
referral conditions, pain, posture findings, balance tests, range of motion, muscle grades,
concerns and goals. Each member carries an identifier ``<panel id>/<item path>``
(system :data:`codes.EVALUATION_ITEM_SYSTEM`) naming the request item it records, e.g.
``ev1/rom[2]``.

Laterality: R4 Observation has no laterality element. ``bodySite`` holds the SNOMED CT joint
structure (or the local muscle-group code) with a text such as "Left knee", and laterality is a
component coded SNOMED CT 272741003 |Laterality| with value 7771000 |Left|, 24028007 |Right| or
51440002 |Bilateral| -- SNOMED's own attribute model, searchable with ``component-code-value-concept``.

Where a norm applies the member gets ``interpretation`` (L or H for a deficit, N within the norm)
and a ``referenceRange`` whose limit is the deficit limit and whose text names the norm and source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relearn.evaluation import codes
from relearn.evaluation.deficits import Assessment, assess, find_deficits
from relearn.evaluation.normative import Norm, NormativeTable, load_norms
from relearn.evaluation.schemas import EvaluationIn, GoalTargetIn

IdFactory = Callable[[str], str]
"""Gives the resource id of an item, called with its path (``"panel"``, ``"rom[2]"``, ...)."""

EVALUATION_COMPLETED = "evaluation.completed.v1"
EVALUATION_REASSESSED = "evaluation.reassessed.v1"

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


def event_type(ev: EvaluationIn) -> str:
    """``evaluation.completed.v1`` for an initial evaluation, ``evaluation.reassessed.v1`` otherwise."""
    return EVALUATION_COMPLETED if ev.kind == "initial" else EVALUATION_REASSESSED


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


def evaluation_completed_data(
    ev: EvaluationIn,
    panel: dict[str, Any],
    members: list[dict[str, Any]],
    *,
    norms: NormativeTable | None = None,
) -> dict[str, Any]:
    """The ``data`` of ``evaluation.completed.v1`` / ``evaluation.reassessed.v1`` (see :func:`event_type`).

    ``panel`` and ``members`` are what :func:`evaluation_to_observations` returned for ``ev``.
    Plain JSON (camelCase keys; every key always present, null when not applicable)::

        evaluationId        id of the panel Observation
        patient             Patient id (the event's subject)
        kind                "initial" | "reassessment"
        effective           the evaluation's dateTime, as sent
        encounter           Encounter id | null
        performer           "Practitioner/<id>" | "PractitionerRole/<id>" | null
        ageYears            int | null (selects age-banded norms)
        normsVersion        version of the normative table the deficits were judged with
        referralConditions  [{observationId, kind: stroke|brain-injury|trauma|other, text, onset,
                              code: local Coding, snomed: Coding | null}]
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
                "observationId": ids.get(f"referralConditions[{i}]"),
                "kind": rc.kind,
                "text": rc.text,
                "onset": rc.onset,
                "code": codes.local(f"condition-{rc.kind}"),
                "snomed": dict(codes.REFERRAL_CONDITION_SNOMED[rc.kind])
                if rc.kind in codes.REFERRAL_CONDITION_SNOMED
                else None,
            }
            for i, rc in enumerate(ev.referral_conditions)
        ],
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
