"""Scored tests as Questionnaires; a response checked item by item and its total extracted (with its MCID)."""

from __future__ import annotations

from typing import Any

import pytest

from relearn.evaluation.domain.questionnaires import BERG, FGA, ScoringError, questionnaires, score
from relearn.evaluation.mapper import questionnaire_total_observation
from relearn.evaluation.resources import OBSERVATION, QUESTIONNAIRE, QUESTIONNAIRE_RESPONSE
from relearn.shared.fhir import CANONICAL_URL, UnprocessableEntity
from relearn.shared.fhir.validation import validate_resource


def response(test: Any, scores: list[int], *, status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "id": "qr-1",
        "questionnaire": f"{test.url}|1.0.0",
        "status": status,
        "subject": {"reference": "Patient/p-1"},
        "authored": "2026-11-20T10:00:00+00:00",
        "author": {"reference": "Practitioner/pt-ana"},
        "item": [
            {"linkId": link, "answer": [{"valueInteger": v}]}
            for (link, _), v in zip(test.items, scores, strict=False)
        ],
        **extra,
    }


def test_the_published_questionnaires_are_valid_r4() -> None:
    berg, fga = questionnaires()
    for q in (berg, fga):
        validate_resource(QUESTIONNAIRE, q)
    assert berg["url"] == f"{CANONICAL_URL}/Questionnaire/berg-balance-scale"
    assert len([i for i in berg["item"] if i["linkId"] != "total"]) == 14
    assert len([i for i in fga["item"] if i["linkId"] != "total"]) == 10
    assert [o["valueInteger"] for o in berg["item"][0]["answerOption"]] == [0, 1, 2, 3, 4]
    assert [o["valueInteger"] for o in fga["item"][0]["answerOption"]] == [0, 1, 2, 3]


def test_a_completed_berg_is_summed_and_extracted_with_its_measure() -> None:
    qr = response(BERG, [3] * 10 + [2, 2, 1, 1])
    validate_resource(QUESTIONNAIRE_RESPONSE, qr)
    scored = score(qr)
    assert (scored.total, scored.items["berg-14"]) == (36, 1)
    obs = questionnaire_total_observation(qr, scored)
    assert obs is not None
    validate_resource(OBSERVATION, obs)
    assert (
        obs["code"]["coding"][0]["code"] == "berg-balance-scale"
    )  # the outcome measure's code: trends see it
    assert obs["valueQuantity"]["value"] == 36 and obs["valueQuantity"]["code"] == "{score}"
    assert obs["derivedFrom"] == [{"reference": "QuestionnaireResponse/qr-1"}]
    assert (obs["effectiveDateTime"], obs["performer"]) == (qr["authored"], [qr["author"]])
    assert obs["category"][0]["coding"][0]["code"] == "survey"
    assert scored.test.measure.mcid.value == 6.9  # the outcome-measure catalogue's MDC95


def test_fga_items_are_0_to_3_and_a_sent_total_must_add_up() -> None:
    qr = response(FGA, [3] * 10)
    assert score(qr).total == 30
    with pytest.raises(ScoringError) as bad:
        score(response(FGA, [3] * 9 + [4]))
    assert bad.value.path == "QuestionnaireResponse.item[9].answer[0].valueInteger"
    wrong_total = response(FGA, [2] * 10)
    wrong_total["item"].append({"linkId": "total", "answer": [{"valueInteger": 21}]})
    with pytest.raises(ScoringError, match="not the sum"):
        score(wrong_total)


def test_a_partial_response_is_kept_in_progress_without_a_total() -> None:
    partial = response(BERG, [4] * 5, status="in-progress")
    scored = score(partial)
    assert scored.total is None and questionnaire_total_observation(partial, scored) is None
    with pytest.raises(ScoringError, match="missing berg-6"):
        score(response(BERG, [4] * 5))


def test_the_store_validator_names_the_element() -> None:
    (check,) = QUESTIONNAIRE_RESPONSE.validators
    with pytest.raises(UnprocessableEntity) as bad:
        check(response(BERG, [5] + [4] * 13))
    assert "item[0]" in str(bad.value)
    with pytest.raises(UnprocessableEntity, match="questionnaire"):
        check(response(BERG, [4] * 14) | {"questionnaire": "http://example.org/Questionnaire/x"})
    with pytest.raises(UnprocessableEntity, match="subject"):
        check(response(BERG, [4] * 14) | {"subject": {"reference": "Group/g"}})
