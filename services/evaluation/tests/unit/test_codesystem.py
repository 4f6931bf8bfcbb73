"""The published CodeSystem: valid FHIR, and it defines every local code the mappers write."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fhir.resources.R4B.codesystem import CodeSystem

from relearn.evaluation.domain import codes
from relearn.evaluation.domain.outcomes import ASHWORTH_GRADES, OUTCOME_MEASURES
from relearn.evaluation.mapper import condition_resources, evaluation_to_observations
from relearn.evaluation.schemas import EvaluationIn


def codings(node: Any) -> Iterator[dict[str, Any]]:
    """Every Coding anywhere in a resource."""
    if isinstance(node, dict):
        if "system" in node and "code" in node and "value" not in node:
            yield node
        for value in node.values():
            yield from codings(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from codings(value)


def everything_evaluation() -> EvaluationIn:
    """One evaluation that uses every joint/motion, muscle group, balance test and condition value."""
    rom = [
        {"joint": m.joint, "motion": m.motion, "side": side, "mode": mode, "degrees": 0}
        for m, side, mode in zip(
            codes.ROM_MEASURES.values(),
            ["left", "right", "bilateral"] * 20,
            ["active", "passive"] * 20,
            strict=False,
        )
    ]
    strength = [
        {"muscleGroup": g, "side": "left", "grade": grade}
        for g, grade in zip(codes.MUSCLE_GROUPS, ["3+", "4-", 5, 2] * 10, strict=False)
    ]
    balance = [
        {"test": t, "value": 10, "side": "left", "vision": v, "surface": s, "stance": st}
        for t, v, s, st in zip(
            codes.BALANCE_TESTS,
            ["eyes-open", "eyes-closed"] * 4,
            ["firm", "foam"] * 4,
            ["comfortable", "feet-together", "semi-tandem", "tandem", "single-leg"] * 2,
            strict=False,
        )
    ]
    return EvaluationIn.model_validate(
        {
            "patient": "p",
            "effective": "2026-11-20",
            "kind": "reassessment",
            "ageYears": 50,
            "history": "h",
            "pain": 2,
            "referralConditions": [
                {"kind": k, "text": "t", "onset": "2026"}
                for k in ("stroke", "brain-injury", "trauma", "other")
            ],
            "posture": [
                {"region": "r", "finding": "f", "severity": sev, "position": pos}
                for sev, pos in [("mild", "standing"), ("moderate", "sitting"), ("severe", "supine")]
            ],
            "balance": balance,
            "rom": rom,
            "strength": strength,
            "concerns": ["c"],
            "outcomes": [
                {"measure": key, "value": 1, "side": "left", "muscleGroup": "elbow-flexors"}
                for key in OUTCOME_MEASURES
                if key != "modified-ashworth"
            ]
            + [
                {"measure": "modified-ashworth", "value": g, "side": "left", "muscleGroup": "elbow-flexors"}
                for g in ASHWORTH_GRADES
            ],
            "goals": [
                {
                    "text": "g",
                    "target": {
                        "measure": key,
                        "value": 1,
                        "side": "left",
                        "dueDate": "2027-01-01",
                        **({"muscleGroup": "hip-flexors"} if key == "mmt-grade" else {}),
                    },
                }
                for key in codes.MEASURES
            ],
        }
    )


def test_codesystem_is_a_valid_published_fhir_codesystem() -> None:
    cs = codes.codesystem()
    CodeSystem.model_validate(cs)
    assert (cs["url"], cs["status"], cs["content"]) == (codes.EVALUATION_CS, "active", "complete")
    assert cs["count"] == len(codes.concepts())
    assert len({c for c in codes.concepts()}) == len(codes.concepts())
    declared = {p["code"] for p in cs["property"]}
    for concept in codes.concepts().values():
        assert concept.display and concept.definition
        assert set(concept.properties) <= declared


def test_every_local_code_the_mappers_write_is_in_the_codesystem(ids: Callable[[str], str]) -> None:
    reassessment = everything_evaluation()
    initial = reassessment.model_copy(update={"kind": "initial"})
    written: list[Any] = [evaluation_to_observations(ev, ids=ids) for ev in (initial, reassessment)]
    written += [condition_resources(ev, ids=ids, panel_id="p") for ev in (initial, reassessment)]
    used = set()
    for coding in codings(written):
        if coding["system"] == codes.EVALUATION_CS:
            concept = codes.concept(coding["code"])
            assert concept.selectable, coding["code"]
            assert coding["display"] == concept.display
            used.add(coding["code"])
    # The evaluation itself uses everything but the session and device codes (the other services' share),
    # and the ROM instruments of exercise ROM (session.logged.v1).
    unused = {
        c.code
        for c in codes.concepts().values()
        if c.selectable
        and c.parent not in ("session", "emg", "device-balance", "rom-instrument")
        and c.properties.get("status") != "deprecated"
    } - used
    assert unused == set()


def test_every_observation_code_declares_its_unit_and_category() -> None:
    for m in codes.MEASURES.values():
        if m.coding["system"] == codes.EVALUATION_CS:
            concept = codes.concept(m.coding["code"])
            assert concept.properties["unit"] == m.unit
            assert concept.properties["category"]["code"] == m.category


def test_range_of_motion_codes_name_their_joint_and_motion() -> None:
    knee = codes.concept("rom-knee-flexion")
    assert (knee.properties["joint"], knee.properties["motion"], knee.properties["unit"]) == (
        "knee",
        "flexion",
        "deg",
    )
    assert codes.rom_measure("knee", "flexion") == codes.measure("rom-knee-flexion")
    assert codes.rom_measure("knee", "abduction") is None


def test_device_gateway_and_session_codes_are_there() -> None:
    for code, unit in [
        ("emg-rms", "uV"),
        ("emg-envelope-peak", "uV"),
        ("emg-percent-mvc", "%"),
        ("emg-onset-latency", "ms"),
        ("emg-median-frequency", "Hz"),
        ("emg-co-contraction-index", "%"),
        ("pain-before-session", "{score}"),
        ("pain-after-session", "{score}"),
        ("movement-quality", "{score}"),
        ("rom-exercise-active", "deg"),
        ("sway-path-length", "cm"),
        ("sway-mean-velocity", "cm/s"),
        ("sway-ellipse-area", "cm2"),
        ("sway-rms-distance", "cm"),
    ]:
        assert codes.concept(code).properties["unit"] == unit


def test_an_unknown_local_code_cannot_be_written() -> None:
    with pytest.raises(codes.UnknownCode):
        codes.local("rom-knee-twist")


SWAY_CODES = {
    "sway-path-length",
    "sway-mean-velocity",
    "sway-mean-distance",
    "sway-rms-distance",
    "sway-ellipse-area",
    "sway-mean-frequency",
    "sway-centroidal-frequency",
    "sway-f50",
    "sway-f95",
    "romberg-quotient",
}


def test_sway_codes_form_one_group_each_stating_its_method_and_agreement() -> None:
    # One place: every centre-of-pressure metric under device-balance, itself a balance grouping.
    assert {c.code for c in codes.children("device-balance")} == SWAY_CODES
    group = codes.concept("device-balance")
    assert group.parent == "balance" and not group.selectable
    assert not any(c.code.startswith("sway-") for c in codes.children("balance"))
    for code in SWAY_CODES:
        definition = codes.concept(code).definition
        assert "Method:" in definition and "Agreement:" in definition, code
    # The mean frequency is a close reproduction of the data set's COPmfreq, and says so.
    mfreq = codes.concept("sway-mean-frequency").definition
    assert "NOT an exact one" in mfreq and "0.11 %" in mfreq


def test_the_codes_published_before_the_regrouping_are_all_still_valid() -> None:
    # Version 1.1.0 had these under 'balance' and 'device-balance'; recorded Observations keep using them.
    for code in SWAY_CODES | {
        "balance",
        "device-balance",
        "single-leg-stance",
        "romberg",
        "berg-balance-scale",
    }:
        codes.concept(code)
    for key in ("sway-path-length", "sway-mean-velocity", "sway-ellipse-area", "sway-rms-distance"):
        assert codes.measure(key).coding["code"] == key and codes.concept(key).selectable
    assert codes.codesystem()["version"] == "1.3.0"
    # 1.3.0 deprecates (keeps) the codes of the Observation shapes it replaced.
    for code in (
        "referral-condition",
        "referral-condition-onset",
        "mmt-grade-modifier",
        "mmt-plus",
        "mmt-minus",
    ):
        assert codes.concept(code).properties["status"] == "deprecated"


def test_mmt_grade_codesystem_has_each_grade_with_its_modifier() -> None:
    cs = codes.mmt_codesystem()
    CodeSystem.model_validate(cs)
    assert (cs["url"], cs["status"], cs["content"], cs["count"]) == (
        codes.MMT_GRADE_CS,
        "active",
        "complete",
        14,
    )
    grades = [c["code"] for c in cs["concept"]]
    assert grades == ["0", "1", "1+", "2-", "2", "2+", "3-", "3", "3+", "4-", "4", "4+", "5-", "5"]
    ordinals = [codes.mmt_ordinal(g) for g in grades]
    assert ordinals == sorted(ordinals) and codes.mmt_ordinal("3+") == 3.33
    # Every grade the API accepts has its code.
    for grade in ("0", "1+", "2-", "3+", "4-", "5-", "5"):
        assert codes.mmt_grade(grade)["code"] == grade
    with pytest.raises(codes.UnknownCode):
        codes.mmt_grade("5+")
