"""A complete evaluation request, as a therapist's client would send it, and an id factory."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from relearn.evaluation.schemas import EvaluationIn, parse_evaluation

FULL_EVALUATION: dict[str, Any] = {
    "patient": "pat-1",
    "performer": "Practitioner/pt-7",
    "encounter": "enc-3",
    "effective": "2026-11-20T10:15:00+01:00",
    "kind": "initial",
    "ageYears": 72,
    "referralConditions": [
        {"kind": "stroke", "text": "Left MCA ischaemic stroke", "onset": "2026-08"},
        {"kind": "other", "text": "Peripheral neuropathy"},
    ],
    "history": "Right-sided weakness since August; two falls at home.",
    "pain": 4,
    "posture": [
        {"region": "trunk", "finding": "Leans to the right", "severity": "moderate", "position": "sitting"},
        {"region": "right shoulder", "finding": "Inferior subluxation, one finger width"},
    ],
    "balance": [
        {
            "test": "single-leg-stance",
            "side": "right",
            "vision": "eyes-open",
            "surface": "firm",
            "value": 3.5,
        },
        {"test": "tug", "value": 21.3, "unit": "s"},
        {"test": "berg", "value": 38},
        {
            "test": "sway-mean-velocity",
            "vision": "eyes-closed",
            "surface": "foam",
            "stance": "feet-together",
            "value": 2.4,
        },
    ],
    "rom": [
        {"joint": "knee", "motion": "flexion", "side": "right", "mode": "active", "degrees": 90},
        {"joint": "knee", "motion": "flexion", "side": "left", "mode": "active", "degrees": 140},
        {"joint": "ankle", "motion": "dorsiflexion", "side": "right", "mode": "passive", "degrees": -5},
        {"joint": "forearm", "motion": "supination", "side": "bilateral", "mode": "active", "degrees": 75.5},
    ],
    "strength": [
        {"muscleGroup": "knee-extensors", "side": "right", "grade": "3+"},
        {"muscleGroup": "knee-extensors", "side": "left", "grade": 5},
        {"muscleGroup": "ankle-dorsiflexors", "side": "right", "grade": "2"},
    ],
    "concerns": ["I am afraid of falling on the stairs"],
    "goals": [
        {
            "text": "Walk to the shop without my cane",
            "target": {"measure": "tug", "value": 12, "dueDate": "2027-02-01"},
        },
        {
            "text": "Kick a ball with my grandson",
            "target": {"measure": "mmt-grade", "muscleGroup": "knee-extensors", "side": "right", "value": 4},
        },
        {"text": "Feel steadier"},
    ],
}


@pytest.fixture
def payload() -> dict[str, Any]:
    return copy.deepcopy(FULL_EVALUATION)


@pytest.fixture
def evaluation(payload: dict[str, Any]) -> EvaluationIn:
    return parse_evaluation(payload)


@pytest.fixture
def ids() -> Callable[[str], str]:
    """Sequential ids, as a server would hand them out: obs-1 (the panel), obs-2, ..."""
    counter = iter(range(1, 10_000))
    return lambda path: f"obs-{next(counter)}"


@pytest.fixture
def evaluation_body() -> Callable[..., dict[str, Any]]:
    """A factory: the full evaluation for ``patient`` with some top-level fields changed."""

    def make(patient: str, **changes: Any) -> dict[str, Any]:
        body = copy.deepcopy(FULL_EVALUATION)
        body["patient"] = patient
        body.update(changes)
        return body

    return make
