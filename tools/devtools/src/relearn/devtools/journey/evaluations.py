"""The patient's evaluations as the therapist records them (``POST /evaluations`` bodies): a stroke
survivor with poor standing balance and weak right knee extensors at first, within norms at re-assessment."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from relearn.devtools.journey.client import iso


def evaluation_body(patient: str, kind: str, at: datetime) -> dict[str, Any]:
    """An ``initial`` evaluation (findings, concerns, goals) or a ``reassessment`` (findings only)."""
    initial = kind == "initial"
    return {
        "patient": patient,
        "performer": "Practitioner/pt-journey",
        "effective": iso(at),
        "kind": kind,
        "ageYears": 64,
        "referralConditions": [{"kind": "stroke", "text": "Left MCA ischaemic stroke", "onset": "2026-06"}]
        if initial
        else [],
        "pain": 2 if initial else 0,
        "balance": [
            {"test": "berg", "value": 38 if initial else 53},
            {
                "test": "sway-ellipse-area",
                "vision": "eyes-open",
                "surface": "firm",
                "stance": "comfortable",
                "value": 11.7 if initial else 0.9,
            },
        ],
        "strength": [{"muscleGroup": "knee-extensors", "side": "right", "grade": "3" if initial else "5"}],
        "concerns": ["Afraid of falling in the shower"] if initial else [],
        "goals": [
            {
                "text": "Stand at the kitchen counter without holding on",
                "target": {"measure": "berg", "value": 50},
            },
            {
                "text": "Climb the stairs at home",
                "target": {
                    "measure": "mmt-grade",
                    "muscleGroup": "knee-extensors",
                    "side": "right",
                    "value": 5,
                },
            },
        ]
        if initial
        else [],
    }
