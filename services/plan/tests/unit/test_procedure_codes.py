"""The CPT code of a prescribed exercise follows its pattern and current form (docs/progression-rules.md)."""

from __future__ import annotations

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.patterns import STEP_KINDS, Dimension, MovementPattern
from relearn.plan.domain.procedure_codes import cpt_code, cpt_coding


def _level_of(pattern: MovementPattern, dimension: Dimension, least: str) -> int | None:
    """The first level of ``dimension`` whose step ranks at least ``least``; None if the ladder never does."""
    rank = STEP_KINDS[dimension][least]
    for i, step in enumerate(pattern.ladders[dimension]):
        if STEP_KINDS[dimension][step.kind] >= rank:
            return i
    return None


def test_every_starting_form_is_therapeutic_exercise_and_balance_is_re_education(
    catalogue: Catalogue,
) -> None:
    for pattern in catalogue.patterns:
        expected = "97112" if pattern.region == "balance" else "97110"
        assert cpt_code(pattern, {}) == expected, pattern.code


def test_multi_joint_weight_bearing_forms_are_therapeutic_activities(catalogue: Catalogue) -> None:
    seen = 0
    for pattern in catalogue.patterns:
        if pattern.region == "balance":
            continue
        joints = _level_of(pattern, Dimension.JOINTS, "multi-joint")
        load = _level_of(pattern, Dimension.LOAD_BEARING, "partial-weight-bearing")
        if joints is None:
            continue
        # Multi-joint alone (still non-weight-bearing) stays 97110 ...
        assert cpt_code(pattern, {Dimension.JOINTS: joints}) == "97110", pattern.code
        if load is None:
            continue
        # ... weight-bearing alone stays 97110, both together are 97530.
        assert cpt_code(pattern, {Dimension.LOAD_BEARING: load}) == "97110", pattern.code
        assert cpt_code(pattern, {Dimension.JOINTS: joints, Dimension.LOAD_BEARING: load}) == "97530"
        seen += 1
    assert seen > 0, "the catalogue has multi-joint weight-bearing forms"


def test_a_proprioceptive_challenge_is_neuromuscular_re_education(catalogue: Catalogue) -> None:
    knee = catalogue.get("knee-extension")
    level = _level_of(knee, Dimension.PROPRIOCEPTION, "eyes-closed-stable")
    assert level is not None
    coding = cpt_coding(knee, {Dimension.PROPRIOCEPTION: level})
    assert (coding["system"], coding["code"]) == ("http://www.ama-assn.org/go/cpt", "97112")
    assert "Neuromuscular" in coding["display"]
