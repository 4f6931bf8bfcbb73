"""Scored clinical tests as FHIR Questionnaires, and a QuestionnaireResponse scored into its total.

Where the item scores matter (which task of the Berg failed, which gait condition of the FGA), the test is
recorded as a QuestionnaireResponse to one of these Questionnaires; the evaluation service checks every answer
against its item's range and extracts the total to an Observation coded as the outcome measure (so the trend
and its MCID verdict of :mod:`relearn.evaluation.domain.outcomes` include it).

- **Berg Balance Scale** (Berg KO et al., Physiother Can 1989): 14 tasks scored 0-4, total 0-56.
- **Functional Gait Assessment** (Wrisley DM et al., Phys Ther 2004): 10 gait tasks scored 0-3 (3 normal,
  2 mild, 1 moderate, 0 severe impairment), total 0-30.

Items are ``integer`` items with ``answerOption`` 0..max (each option's meaning in the item text); the total
is a read-only ``integer`` item ``total`` a client may send (it must then equal the sum). No verified LOINC
code exists for these instruments' totals or items (docs/api.md), so the items carry no codes and the total
is coded with the evaluation CodeSystem's outcome-measure code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relearn.evaluation.domain.outcomes import OUTCOME_MEASURES, OutcomeMeasure
from relearn.shared.fhir import CANONICAL_URL, UnprocessableEntity

QUESTIONNAIRE_BASE = f"{CANONICAL_URL}/Questionnaire"
QUESTIONNAIRE_VERSION = "1.0.0"
TOTAL_LINK_ID = "total"


@dataclass(frozen=True)
class ScoredTest:
    id: str
    measure: OutcomeMeasure
    title: str
    max_item: int
    items: tuple[tuple[str, str], ...]  # (linkId, text)
    anchors: str  # what the item scores mean
    source: str

    @property
    def url(self) -> str:
        return f"{QUESTIONNAIRE_BASE}/{self.id}"

    @property
    def total_max(self) -> int:
        return self.max_item * len(self.items)


BERG = ScoredTest(
    id="berg-balance-scale",
    measure=OUTCOME_MEASURES["berg"],
    title="Berg Balance Scale",
    max_item=4,
    items=tuple(
        (f"berg-{i}", text)
        for i, text in enumerate(
            (
                "Sitting to standing",
                "Standing unsupported",
                "Sitting with back unsupported, feet on the floor or a stool",
                "Standing to sitting",
                "Transfers",
                "Standing unsupported with eyes closed",
                "Standing unsupported with feet together",
                "Reaching forward with outstretched arm while standing",
                "Picking up an object from the floor from a standing position",
                "Turning to look behind over left and right shoulders while standing",
                "Turning 360 degrees",
                "Placing alternate foot on a step or stool while standing unsupported",
                "Standing unsupported with one foot in front",
                "Standing on one leg",
            ),
            start=1,
        )
    ),
    anchors="0 = unable or needs help to keep from falling ... 4 = performs independently and safely",
    source="Berg KO, Wood-Dauphinee S, Williams JI, Gayton D. Measuring balance in the elderly: preliminary "
    "development of an instrument. Physiother Can 1989;41:304-311.",
)

FGA = ScoredTest(
    id="functional-gait-assessment",
    measure=OUTCOME_MEASURES["functional-gait-assessment"],
    title="Functional Gait Assessment",
    max_item=3,
    items=tuple(
        (f"fga-{i}", text)
        for i, text in enumerate(
            (
                "Gait level surface",
                "Change in gait speed",
                "Gait with horizontal head turns",
                "Gait with vertical head turns",
                "Gait and pivot turn",
                "Step over obstacle",
                "Gait with narrow base of support",
                "Gait with eyes closed",
                "Ambulating backwards",
                "Steps",
            ),
            start=1,
        )
    ),
    anchors="3 = normal, 2 = mild impairment, 1 = moderate impairment, 0 = severe impairment",
    source="Wrisley DM, Marchetti GF, Kuharsky DK, Whitney SL. Reliability, internal consistency, and "
    "validity of data obtained with the functional gait assessment. Phys Ther 2004;84:906-918.",
)

SCORED_TESTS: dict[str, ScoredTest] = {t.url: t for t in (BERG, FGA)}


def questionnaire(test: ScoredTest) -> dict[str, Any]:
    """The test as an R4 Questionnaire."""
    options = [{"valueInteger": v} for v in range(test.max_item + 1)]
    return {
        "resourceType": "Questionnaire",
        "id": test.id,
        "url": test.url,
        "version": QUESTIONNAIRE_VERSION,
        "name": "".join(w.capitalize() for w in test.id.split("-")),
        "title": test.title,
        "status": "active",
        "experimental": False,
        "subjectType": ["Patient"],
        "publisher": "Relearn",
        "description": f"{test.title}: {len(test.items)} items scored 0-{test.max_item} ({test.anchors}); "
        f"total 0-{test.total_max}, extracted to an Observation with its minimal clinically important "
        f"difference. Source: {test.source}",
        "item": [
            *(
                {
                    "linkId": link,
                    "prefix": f"{n}.",
                    "text": text,
                    "type": "integer",
                    "required": True,
                    "answerOption": options,
                }
                for n, (link, text) in enumerate(test.items, start=1)
            ),
            {
                "linkId": TOTAL_LINK_ID,
                "text": f"Total score (0-{test.total_max})",
                "type": "integer",
                "readOnly": True,
            },
        ],
    }


def questionnaires() -> list[dict[str, Any]]:
    return [questionnaire(t) for t in SCORED_TESTS.values()]


@dataclass(frozen=True)
class Scored:
    test: ScoredTest
    items: dict[str, int]
    total: int | None  # None until every item is answered


class ScoringError(ValueError):
    """An answer that does not fit its item; ``path`` is the FHIRPath of the element."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def test_of(response: dict[str, Any]) -> ScoredTest | None:
    """The scored test a QuestionnaireResponse answers (``questionnaire`` with or without ``|version``)."""
    url = str(response.get("questionnaire") or "").split("|", 1)[0]
    return SCORED_TESTS.get(url)


def score(response: dict[str, Any]) -> Scored:
    """Check every answer against its item and sum them. A completed (or amended) response must answer every
    item once; a ``total`` sent must equal the sum. Raises :class:`ScoringError` naming the element."""
    test = test_of(response)
    if test is None:
        known = ", ".join(f"{t.url}|{QUESTIONNAIRE_VERSION}" for t in SCORED_TESTS.values())
        raise ScoringError(
            "QuestionnaireResponse.questionnaire", f"must be one of the published Questionnaires ({known})"
        )
    known_links = {link for link, _ in test.items}
    items: dict[str, int] = {}
    total_sent: int | None = None
    for i, item in enumerate(response.get("item") or []):
        path = f"QuestionnaireResponse.item[{i}]"
        link = item.get("linkId")
        answers = item.get("answer") or []
        if link not in known_links and link != TOTAL_LINK_ID:
            raise ScoringError(f"{path}.linkId", f"'{link}' is not an item of {test.title}")
        if link in items or (link == TOTAL_LINK_ID and total_sent is not None):
            raise ScoringError(f"{path}.linkId", f"'{link}' is answered twice")
        if len(answers) != 1 or not isinstance(answers[0].get("valueInteger"), int):
            raise ScoringError(f"{path}.answer", "needs exactly one answer with valueInteger")
        value = int(answers[0]["valueInteger"])
        if link == TOTAL_LINK_ID:
            total_sent = value
            continue
        if not 0 <= value <= test.max_item:
            raise ScoringError(f"{path}.answer[0].valueInteger", f"must be 0-{test.max_item}, not {value}")
        items[str(link)] = value
    complete = len(items) == len(known_links)
    if response.get("status") in ("completed", "amended") and not complete:
        missing = [link for link, _ in test.items if link not in items]
        raise ScoringError(
            "QuestionnaireResponse.item",
            f"a {response.get('status')} response answers every item; missing " + ", ".join(missing),
        )
    total = sum(items.values()) if complete else None
    if total_sent is not None and total_sent != total:
        raise ScoringError(
            "QuestionnaireResponse.item",
            f"the total sent ({total_sent}) is not the sum of the items ({total})",
        )
    return Scored(test, items, total)


def check_response(response: dict[str, Any]) -> None:
    """The FHIR store's validator for QuestionnaireResponse: a patient's response to one of our scored tests,
    every answer in its item's range (422 naming the element otherwise)."""
    subject = str((response.get("subject") or {}).get("reference", ""))
    if not subject.startswith("Patient/"):
        raise UnprocessableEntity(
            "QuestionnaireResponse.subject: the patient tested, as Patient/<id>",
            expression="QuestionnaireResponse.subject",
        )
    if response.get("status") in ("completed", "amended") and not response.get("authored"):
        raise UnprocessableEntity(
            "QuestionnaireResponse.authored: when the test was done (the total's effective time)",
            expression="QuestionnaireResponse.authored",
        )
    try:
        score(response)
    except ScoringError as exc:
        raise UnprocessableEntity(str(exc), expression=exc.path) from None
