"""The normative table: coherent data, and the right row for each measurement."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest

from relearn.evaluation.domain import codes
from relearn.evaluation.domain.normative import NormativeDataError, load_norms, parse_norms


def packaged_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files("relearn.evaluation").joinpath("normative-values.json").read_text("utf-8")
    )
    return data


def test_every_range_of_motion_code_has_a_norm_and_a_plausible_range() -> None:
    table = load_norms()
    for key in codes.ROM_MEASURES.values():
        norm = table.norm_for(key.key)
        assert norm is not None, key.key
        assert norm.source.key == "aaos"
        assert table.plausible(key.key).contains(norm.value)


def test_every_norm_row_is_internally_consistent() -> None:
    table = load_norms()
    for norm in table.norms:
        # The limit sits on the normal side of nothing worse than the reference value.
        assert norm.limit <= norm.value if norm.direction == "below" else norm.limit >= norm.value
        assert table.plausible(norm.measure).contains(norm.limit), norm.measure
        assert norm.source.citation
        assert norm.unit == codes.measure(norm.measure).unit


def test_the_published_cut_offs_are_the_ones_in_the_brief() -> None:
    table = load_norms()
    tug, berg, pain, mmt = (table.norm_for(k) for k in ("tug", "berg", "pain", "mmt-grade"))
    assert tug is not None and (tug.limit, tug.direction) == (13.5, "above")
    assert berg is not None and (berg.limit, berg.direction) == (45, "below")
    assert pain is not None and (pain.limit, pain.direction) == (3, "above")
    assert mmt is not None and (mmt.limit, mmt.direction) == (5, "below")


@pytest.mark.parametrize(
    ("age", "mean"), [(18, 43), (30, 43), (45, 40), (59, 37), (65, 27), (72, 15), (85, 6)]
)
def test_single_leg_stance_norm_follows_the_age_band(age: int, mean: float) -> None:
    norm = load_norms().norm_for("single-leg-stance", age=age, vision="eyes-open", surface="firm")
    assert norm is not None and norm.value == mean


def test_single_leg_stance_is_not_judged_without_age_or_under_other_conditions() -> None:
    table = load_norms()
    assert table.norm_for("single-leg-stance", age=None) is None
    assert table.norm_for("single-leg-stance", age=12) is None
    assert table.norm_for("single-leg-stance", age=40, vision="eyes-closed") is None
    assert table.norm_for("single-leg-stance", age=40, surface="foam") is None
    # Unstated conditions are the standard ones.
    assert table.norm_for("single-leg-stance", age=40) is not None


def test_sway_and_romberg_have_no_norm() -> None:
    table = load_norms()
    for key in (
        "romberg",
        "sway-path-length",
        "sway-mean-velocity",
        "sway-ellipse-area",
        "sway-rms-distance",
    ):
        assert table.norm_for(key, age=50) is None


def test_a_clinic_can_change_a_norm_in_the_data() -> None:
    data = packaged_data()
    for row in data["norms"]:
        if row["measure"] == "tug":
            row["limit"] = 12
    norm = parse_norms(data).norm_for("tug")
    assert norm is not None and norm.is_deficit(12.5)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["norms"][0].update(measure="rom-knee-twist"), "unknown measure 'rom-knee-twist'"),
        (lambda d: d["norms"][0].update(unit="rad"), "unit 'rad'"),
        (lambda d: d["norms"][0].update(source="hearsay"), "'hearsay'"),
        (lambda d: d["plausible_ranges"].pop("tug"), "no plausible range for tug"),
    ],
)
def test_an_incoherent_table_fails_to_load(edit: Any, message: str) -> None:
    data = copy.deepcopy(packaged_data())
    edit(data)
    with pytest.raises(NormativeDataError, match=message):
        parse_norms(data)
