"""The catalogue's clinical rules: one change per step (posture belongs to the load-bearing ladder), steps
that wait for load bearing (``requires``), criteria on named muscles, and only criteria something can
measure."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from relearn.plan.domain.catalogue import CATALOGUE_FILE, Catalogue, CatalogueError, parse_catalogue
from relearn.plan.domain.patterns import STEP_KINDS, Dimension

SHIPPED = Path(__file__).parents[2] / "src/relearn/plan/domain/catalogue" / CATALOGUE_FILE
LB = Dimension.LOAD_BEARING


@cache
def _shipped() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def raw() -> dict[str, Any]:
    """The shipped catalogue's data, a fresh copy for each test to break."""
    return copy.deepcopy(_shipped())


def _pattern(raw: dict[str, Any], code: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in raw["patterns"] if p["code"] == code)
    return found


# ------------------------------------------------------------------------------------- one change at a time


def test_a_step_that_puts_weight_on_the_leg_outside_the_load_bearing_ladder_is_refused(
    raw: dict[str, Any],
) -> None:
    # The issue's knee extension: "sit-to-stand, then step-up" while load bearing is still sitting.
    step = _pattern(raw, "knee-extension")["ladders"]["joints"][2]
    step["description"] = "Hip, knee and ankle in a task: sit-to-stand, then step-up"
    del step["requires"]
    with pytest.raises(CatalogueError) as refused:
        parse_catalogue(raw)
    message = str(refused.value)
    assert "pattern knee-extension: joints level 2" in message
    assert "changes two dimensions" in message
    assert "'sit-to-stand' means load bearing full-weight-bearing" in message


def test_a_requirement_below_what_the_text_needs_is_refused(raw: dict[str, Any]) -> None:
    # The issue's hip abduction: a star-excursion reach stands on one leg; full weight bearing is not enough.
    step = _pattern(raw, "hip-abduction")["ladders"]["motion"][2]
    assert step["description"] == "Star-excursion reach with the free leg"
    step["requires"] = {"loadBearing": "full-weight-bearing"}
    with pytest.raises(CatalogueError, match=r"hip-abduction: motion level 2 .*'star-excursion' means load "):
        parse_catalogue(raw)


def test_a_posture_word_is_accepted_once_the_step_requires_it(raw: dict[str, Any]) -> None:
    step = _pattern(raw, "knee-flexion")["ladders"]["tempo"][1]
    step["description"] = "Slow 5 s eccentric lowering in a single-leg stance"
    with pytest.raises(CatalogueError, match="'single-leg' means load bearing single-limb"):
        parse_catalogue(raw)
    step["requires"] = {"loadBearing": "single-limb"}
    assert parse_catalogue(raw).get("knee-flexion").step(Dimension.TEMPO, 1).requires == {LB: "single-limb"}


def test_a_load_bearing_step_may_not_say_more_weight_than_its_kind(raw: dict[str, Any]) -> None:
    _pattern(raw, "knee-extension")["ladders"]["loadBearing"][1]["description"] = "Step-up, hands on a rail"
    with pytest.raises(
        CatalogueError, match=r"loadBearing level 1 .* is partial-weight-bearing, but 'step-up'"
    ):
        parse_catalogue(raw)


def test_posture_terms_count_the_longest_phrase_and_plurals(catalogue: Catalogue) -> None:
    vocab = catalogue.vocabulary
    assert [(m.term, m.kind) for m in vocab.posture("Supported mini-squat, hands on a rail")] == [
        ("supported mini-squat", "partial-weight-bearing"),
        ("rail", "partial-weight-bearing"),
    ]
    assert [m.kind for m in vocab.posture("Lunges and step-ups")] == ["full-weight-bearing", "single-limb"]
    assert [m.term for m in vocab.posture("The patient stands")] == ["stand"]
    assert vocab.posture("Sitting, foot free") == ()  # lying and sitting need nothing
    assert vocab.posture("Eyes closed, firm surface") == ()


def test_a_posture_term_must_name_a_load_bearing_kind(raw: dict[str, Any]) -> None:
    raw["vocabulary"]["postureTerms"]["wobble board"] = "eyes-open-unstable"
    with pytest.raises(CatalogueError, match="posture term 'wobble board'"):
        parse_catalogue(raw)


# ----------------------------------------------------------------------------------------------- requires


@pytest.mark.parametrize(
    ("requires", "message"),
    [
        ({"loadBearing": "single-limb"}, "which this pattern's loadBearing ladder never reaches"),
        ({"loadBearing": "standing"}, "which is not one of"),
        ({"joints": "multi-joint"}, "a step cannot require its own dimension"),
        ({"balance": "full-weight-bearing"}, "requires"),
    ],
)
def test_a_bad_requirement_is_refused(raw: dict[str, Any], requires: dict[str, str], message: str) -> None:
    # Craniocervical flexion's load bearing goes no further than sitting and standing free.
    _pattern(raw, "craniocervical-flexion")["ladders"]["joints"][1]["requires"] = requires
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(raw)


def test_the_starting_form_cannot_wait_for_load_bearing(raw: dict[str, Any]) -> None:
    _pattern(raw, "knee-extension")["ladders"]["tempo"][0]["requires"] = {
        "loadBearing": "full-weight-bearing"
    }
    with pytest.raises(CatalogueError, match=r"tempo level 0 .* level 0 is the starting form"):
        parse_catalogue(raw)


def test_unmet_requirements_say_what_load_bearing_must_reach_first(catalogue: Catalogue) -> None:
    knee = catalogue.get("knee-extension")
    assert knee.unmet_requirements(Dimension.JOINTS, 2, {LB: 0}) == (
        "load bearing must first reach full-weight-bearing (now 'Sitting, foot free')",
    )
    assert knee.unmet_requirements(Dimension.JOINTS, 2, {}) == knee.unmet_requirements(
        Dimension.JOINTS, 2, {LB: 0}
    )
    assert len(knee.unmet_requirements(Dimension.JOINTS, 2, {LB: 1})) == 1
    assert knee.unmet_requirements(Dimension.JOINTS, 2, {LB: 2}) == ()
    assert knee.unmet_requirements(Dimension.JOINTS, 2, {LB: 3}) == ()  # single limb ranks above full
    # A step without requirements, and the load-bearing ladder itself, can always be prescribed.
    assert knee.unmet_requirements(Dimension.JOINTS, 1, {LB: 0}) == ()
    assert knee.unmet_requirements(LB, 3, {Dimension.JOINTS: 0}) == ()


def test_standing_balance_waits_for_standing_before_its_sensory_conditions(catalogue: Catalogue) -> None:
    balance = catalogue.get("standing-balance")
    assert balance.unmet_requirements(Dimension.PROPRIOCEPTION, 0, {LB: 0}) == ()
    # Eyes closed on a firm floor next to a support; foam and tandem stance only standing free.
    assert balance.unmet_requirements(Dimension.PROPRIOCEPTION, 1, {LB: 0}) == (
        "load bearing must first reach partial-weight-bearing (now 'Sitting, feet supported')",
    )
    assert balance.unmet_requirements(Dimension.PROPRIOCEPTION, 1, {LB: 1}) == ()
    assert balance.unmet_requirements(Dimension.PROPRIOCEPTION, 2, {LB: 1}) == (
        "load bearing must first reach full-weight-bearing (now 'Supported standing: one hand on a support')",
    )
    assert balance.unmet_requirements(Dimension.PROPRIOCEPTION, 4, {LB: 2}) == ()


def test_unmet_requirements_refuse_a_level_outside_the_ladder(catalogue: Catalogue) -> None:
    knee = catalogue.get("knee-extension")
    with pytest.raises(ValueError, match="joints level 3 is outside 0-2"):
        knee.unmet_requirements(Dimension.JOINTS, 3, {})
    with pytest.raises(ValueError, match="outside"):
        knee.unmet_requirements(Dimension.JOINTS, -1, {})


def test_the_shipped_catalogue_fixes_the_issues_two_change_steps(catalogue: Catalogue) -> None:
    knee = catalogue.get("knee-extension").step(Dimension.JOINTS, 2)
    assert "step-up" not in knee.description and knee.requires == {LB: "full-weight-bearing"}
    hip = catalogue.get("hip-abduction").step(Dimension.MOTION, 2)
    assert hip.requires == {LB: "single-limb"}
    # Every requirement is reachable on the pattern's own load-bearing ladder.
    ranks = STEP_KINDS[LB]
    for p in catalogue.patterns:
        top = max(ranks[s.kind] for s in p.ladders[LB])
        for dim in Dimension:
            for step in p.ladders[dim]:
                if LB in step.requires:
                    assert ranks[step.requires[LB]] <= top, (p.code, dim)


# ------------------------------------------------------------------------------------- per-muscle criteria


def test_criteria_name_their_muscle_reference_and_source(catalogue: Catalogue) -> None:
    checks = {c.kind: c for c in catalogue.get("knee-extension").mastery.checks()}
    onset, pair, rom = checks["emg-onset-latency"], checks["co-contraction"], checks["rom"]
    assert (onset.muscle, onset.reference_kind, onset.reference_muscle) == (
        "vastus-medialis",
        "synergist",
        "vastus-lateralis",
    )
    assert (onset.maximum, onset.unit, onset.source) == (10, "ms", "device")
    assert "vastus-medialis" in onset.label and "vastus-lateralis" in onset.label
    assert (pair.muscle, pair.antagonist, pair.maximum, pair.source) == (
        "vastus-medialis",
        "biceps-femoris",
        40,
        "device",
    )
    assert (rom.source, rom.muscle, rom.minimum) == ("session", None, 85)


def test_every_shipped_pattern_names_its_muscles_and_its_criteria_use_them(catalogue: Catalogue) -> None:
    known = set(catalogue.vocabulary.muscles)
    for p in catalogue.patterns:
        assert p.muscles.targets and set(p.muscles.targets) | set(p.muscles.antagonists) <= known, p.code
        for c in p.mastery.checks():
            if c.kind == "emg-onset-latency":
                assert c.muscle in p.muscles.targets and c.reference_kind == "synergist", p.code
                assert c.reference_muscle in known, p.code
            if c.kind == "co-contraction":
                assert c.muscle in p.muscles.targets and c.antagonist in p.muscles.antagonists, p.code


def test_the_old_flat_emg_keys_are_refused(raw: dict[str, Any]) -> None:
    _pattern(raw, "hip-extension")["mastery"]["emgOnsetLatencyMaxMs"] = 20
    with pytest.raises(CatalogueError, match="emgOnsetLatencyMaxMs"):
        parse_catalogue(raw)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m["emgOnset"].update(muscle="soleus"),
            "emgOnset muscle 'soleus' is not one of its target",
        ),
        (lambda m: m["coContraction"].update(antagonist="soleus"), "'soleus' is not one of its antagonists"),
        (lambda m: m["coContraction"].update(agonist="semitendinosus"), "agonist 'semitendinosus' is not"),
        (lambda m: m["emgOnset"]["reference"].pop("muscle"), "kind synergist names its muscle"),
        (lambda m: m["emgOnset"]["reference"].update(kind="cue"), "kind cue names no muscle"),
        (lambda m: m["emgOnset"]["reference"].update(muscle="vastus-medialis"), "timed against itself"),
        (lambda m: m["emgOnset"]["reference"].update(muscle="vastus-intermedius"), "not in the vocabulary"),
    ],
)
def test_a_criterion_on_the_wrong_muscle_is_refused(raw: dict[str, Any], change: Any, message: str) -> None:
    change(_pattern(raw, "knee-extension")["mastery"])
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(raw)


def test_an_onset_against_the_cue_is_a_reaction_time_criterion(raw: dict[str, Any]) -> None:
    _pattern(raw, "knee-extension")["mastery"]["emgOnset"] = {
        "maxMs": 250,
        "muscle": "vastus-medialis",
        "reference": {"kind": "cue"},
    }
    check = next(c for c in parse_catalogue(raw).get("knee-extension").mastery.checks() if c.muscle)
    assert (check.reference_kind, check.reference_muscle, check.maximum) == ("cue", None, 250)
    assert "relative to the cue" in check.label


# ---------------------------------------------------------------------------------------------- measurable


def test_a_criterion_no_producer_publishes_is_refused(raw: dict[str, Any]) -> None:
    raw["producedMetrics"].remove("emg-onset-latency")
    with pytest.raises(CatalogueError) as refused:
        parse_catalogue(raw)
    message = str(refused.value)
    assert "pattern knee-extension: mastery criterion EMG onset latency of vastus-medialis" in message
    assert "cannot be measured" in message and "producedMetrics" in message


def test_a_session_cannot_be_the_source_of_an_emg_metric(raw: dict[str, Any]) -> None:
    raw["vocabulary"]["metricKinds"]["co-contraction"]["source"] = "session"
    with pytest.raises(CatalogueError, match="co-contraction' is session in %, the criterion needs device"):
        parse_catalogue(raw)


def test_rom_is_measured_by_the_session(raw: dict[str, Any]) -> None:
    raw["vocabulary"]["metricKinds"]["rom"]["source"] = "device"
    with pytest.raises(CatalogueError, match="ROM cannot be measured"):
        parse_catalogue(raw)
