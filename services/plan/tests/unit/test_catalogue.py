"""The shipped movement-pattern catalogue is valid, and the loader refuses a catalogue that is not."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from fhir.resources.R4B.codesystem import CodeSystem

from relearn.plan.domain.catalogue import (
    CATALOGUE_FILE,
    Catalogue,
    CatalogueError,
    load_catalogue,
    parse_catalogue,
)
from relearn.plan.domain.patterns import STARTING_KINDS, Dimension
from relearn.plan.mapper import code_systems

SHIPPED = Path(__file__).parents[2] / "src/relearn/plan/domain/catalogue" / CATALOGUE_FILE


@pytest.fixture
def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    return data


def test_shipped_catalogue_loads_with_twenty_plus_patterns_in_every_region(catalogue: Catalogue) -> None:
    assert catalogue.version
    assert len(catalogue.patterns) >= 20
    counts = {region: len(patterns) for region, patterns in catalogue.by_region().items()}
    assert set(counts) == {"upper-limb", "lower-limb", "trunk", "balance"}
    assert all(n >= 4 for n in counts.values()), counts


def test_every_pattern_starts_at_its_simplest_form_and_has_dosing_and_mastery(catalogue: Catalogue) -> None:
    for p in catalogue.patterns:
        for dim in Dimension:
            assert p.ladders[dim], (p.code, dim)
            assert p.step(dim, 0).kind in STARTING_KINDS[dim], (p.code, dim)
        assert p.dosing.sets >= 1 and p.dosing.reps >= 1
        assert 2.5 <= p.dosing.load_progression_pct <= 10
        assert p.targets and p.evidence and p.starting_form


def test_the_published_balance_ladder_is_in_the_catalogue(catalogue: Catalogue) -> None:
    kinds = [s.kind for s in catalogue.get("standing-balance").ladders[Dimension.PROPRIOCEPTION]]
    assert kinds == [
        "eyes-open-stable",
        "eyes-closed-stable",
        "eyes-open-unstable",
        "eyes-closed-unstable",
        "narrow-base",
    ]


def test_loading_the_file_by_path_gives_the_same_catalogue(catalogue: Catalogue) -> None:
    assert load_catalogue(SHIPPED) == catalogue


def test_duplicate_codes_are_refused(raw: dict[str, Any]) -> None:
    raw["patterns"].append(copy.deepcopy(raw["patterns"][0]))
    with pytest.raises(CatalogueError, match="not unique"):
        parse_catalogue(raw)


def test_an_empty_ladder_is_refused(raw: dict[str, Any]) -> None:
    raw["patterns"][0]["ladders"]["motion"] = []
    with pytest.raises(CatalogueError, match="motion ladder is empty"):
        parse_catalogue(raw)


def test_a_missing_dimension_is_refused(raw: dict[str, Any]) -> None:
    del raw["patterns"][0]["ladders"]["tempo"]
    with pytest.raises(CatalogueError, match="no ladder for tempo"):
        parse_catalogue(raw)


def test_level_zero_must_be_the_simplest_form(raw: dict[str, Any]) -> None:
    raw["patterns"][0]["ladders"]["loadBearing"][0]["kind"] = "full-weight-bearing"
    with pytest.raises(CatalogueError, match="not the simplest form"):
        parse_catalogue(raw)


def test_a_ladder_that_gets_easier_is_refused(raw: dict[str, Any]) -> None:
    steps = raw["patterns"][0]["ladders"]["proprioception"]
    steps[1], steps[2] = steps[2], steps[1]
    with pytest.raises(CatalogueError, match="easier than the step before"):
        parse_catalogue(raw)


def test_a_target_outside_the_vocabulary_is_refused(raw: dict[str, Any]) -> None:
    raw["patterns"][0]["targets"][0]["bodySite"] = "elbowknee"
    with pytest.raises(CatalogueError, match="not in the vocabulary"):
        parse_catalogue(raw)


def test_a_typo_in_a_field_name_is_an_error_not_a_default(raw: dict[str, Any]) -> None:
    raw["patterns"][0]["dosing"]["repz"] = 12
    with pytest.raises(CatalogueError, match="repz"):
        parse_catalogue(raw)


def test_local_code_systems_are_valid_fhir_and_cover_stages_dimensions_and_patterns(
    catalogue: Catalogue,
) -> None:
    systems = {cs["id"]: cs for cs in code_systems(catalogue)}
    for cs in systems.values():
        CodeSystem.model_validate(cs)
    assert [c["code"] for c in systems["competence-stage"]["concept"]] == [
        "unconscious-incompetence",
        "conscious-incompetence",
        "conscious-competence",
        "unconscious-competence",
    ]
    assert {c["code"] for c in systems["progression-dimension"]["concept"]} == {d.value for d in Dimension}
    assert {c["code"] for c in systems["movement-pattern"]["concept"]} == {p.code for p in catalogue.patterns}
    assert systems["movement-pattern"]["version"] == catalogue.version
