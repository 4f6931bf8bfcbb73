"""Standard outcome measures: accepted as a therapist writes them, coded, and judged against the MCID."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from relearn.evaluation.domain import codes
from relearn.evaluation.domain.outcomes import OUTCOME_MEASURES, verdict
from relearn.evaluation.mapper import evaluation_to_observations, item_path, outcome_point
from relearn.evaluation.resources import OBSERVATION
from relearn.evaluation.schemas import EvaluationIn, parse_evaluation
from relearn.shared.fhir import InvalidResource
from relearn.shared.fhir.validation import validate_resource

OUTCOMES = [
    {"measure": "berg", "value": 38},
    {"measure": "fugl-meyer-ue", "value": 31, "side": "right"},
    {"measure": "ten-metre-walk", "value": 0.42},
    {"measure": "six-minute-walk", "value": 180.5},
    {"measure": "five-times-sit-to-stand", "value": 19.8},
    {"measure": "functional-gait-assessment", "value": 12},
    {"measure": "arat", "value": 20, "side": "right"},
    {"measure": "modified-ashworth", "value": "1+", "side": "right", "muscleGroup": "elbow-flexors"},
]


def with_outcomes(payload: dict[str, Any], outcomes: list[dict[str, Any]]) -> EvaluationIn:
    return parse_evaluation({**payload, "outcomes": outcomes})


def test_every_measure_has_a_published_mcid_and_a_verified_or_local_code() -> None:
    assert set(OUTCOME_MEASURES) == {o["measure"] for o in OUTCOMES}
    for m in OUTCOME_MEASURES.values():
        assert m.mcid.value > 0 and m.mcid.source and m.mcid.population
        assert any(str(year) in m.mcid.source for year in range(1990, 2030))  # a dated publication
        if m.system == "local":
            assert codes.concept(m.code).selectable
    # LOINC only where verified: the 6-minute walk distance.
    assert [(m.key, m.code) for m in OUTCOME_MEASURES.values() if m.system == "loinc"] == [
        ("six-minute-walk", "64098-7")
    ]


def test_outcomes_become_coded_members(payload: dict[str, Any], ids: Callable[[str], str]) -> None:
    _, members = evaluation_to_observations(with_outcomes(payload, OUTCOMES), ids=ids)
    items = {item_path(m): m for m in members}
    for m in members:
        validate_resource(OBSERVATION, m)
    walk = items["outcomes[3]"]
    assert walk["code"]["coding"][0] == {
        "system": codes.LOINC,
        "code": "64098-7",
        "display": "6-minute walk test distance",
    }
    assert walk["valueQuantity"] == {"value": 180.5, "unit": "m", "system": codes.UCUM, "code": "m"}
    speed = items["outcomes[2]"]
    assert speed["code"]["coding"][0]["code"] == "ten-metre-walk-speed"
    assert speed["valueQuantity"]["code"] == "m/s"
    mas = items["outcomes[7]"]
    assert mas["valueCodeableConcept"]["coding"][0]["code"] == "mas-1-plus"
    assert mas["bodySite"]["text"] == "Right elbow flexors"
    # Each reads back as the point it recorded.
    measure, side, group, point = outcome_point(mas) or (None, None, None, {})
    assert (measure and measure.key, side, group, point["grade"], point["value"]) == (
        "modified-ashworth",
        "right",
        "elbow-flexors",
        "1+",
        2.0,
    )
    fm = outcome_point(items["outcomes[1]"])
    assert fm is not None and (fm[0].key, fm[1], fm[3]["value"]) == ("fugl-meyer-ue", "right", 31.0)


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ({"measure": "berg", "value": 60}, "60 is outside 0\u201356 for Berg Balance Scale"),
        ({"measure": "berg", "value": 38.5}, "the Berg Balance Scale total is a whole number"),
        (
            {"measure": "arat", "value": 20},
            "the Action Research Arm Test needs the side tested: left or right",
        ),
        (
            {"measure": "modified-ashworth", "value": "2+", "side": "left", "muscleGroup": "elbow-flexors"},
            "'2+' is not a Modified Ashworth grade (0, 1, 1+, 2, 3, 4)",
        ),
        (
            {"measure": "modified-ashworth", "value": "2", "side": "left"},
            "the Modified Ashworth Scale needs the muscle group tested",
        ),
        ({"measure": "six-minute-walk", "value": "180"}, "must be a number"),
    ],
)
def test_a_bad_outcome_names_what_is_wrong(
    payload: dict[str, Any], outcome: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidResource) as caught:
        with_outcomes(payload, [outcome])
    assert message in str(caught.value)


def test_the_verdict_clears_the_mcid_in_the_better_direction() -> None:
    walk = OUTCOME_MEASURES["ten-metre-walk"]  # MCID 0.16 m/s, higher is better
    assert verdict(walk, 0.40, 0.56) == pytest.approx((0.16, "improved-beyond-mcid"))
    assert verdict(walk, 0.40, 0.50)[1] == "improved-within-mcid"
    assert verdict(walk, 0.40, 0.40)[1] == "no-change"
    assert verdict(walk, 0.60, 0.40)[1] == "worse-beyond-mcid"
    sit = OUTCOME_MEASURES["five-times-sit-to-stand"]  # MCID 2.3 s, lower is better
    assert verdict(sit, 19.8, 17.0)[1] == "improved-beyond-mcid"
    assert verdict(sit, 19.8, 18.0)[1] == "improved-within-mcid"
    assert verdict(sit, 17.0, 19.8)[1] == "worse-beyond-mcid"
    berg = OUTCOME_MEASURES["berg"]  # MDC95 6.9: 38 -> 44 is not yet beyond it, 38 -> 45 is
    assert berg.mcid.kind == "MDC95"
    assert verdict(berg, 38, 44)[1] == "improved-within-mcid"
    assert verdict(berg, 38, 45)[1] == "improved-beyond-mcid"
    mas = OUTCOME_MEASURES["modified-ashworth"]  # one grade step; lower is better
    assert verdict(mas, 2, 1)[1] == "improved-beyond-mcid"  # 1+ -> 1
