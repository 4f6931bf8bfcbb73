"""Shared scene for the sessions unit tests: one patient's active plan with two activities."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from relearn.sessions.domain.plan_view import PlanView, apply_plan_event

MONDAY = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _plan_event(version: int, *, status: str | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "carePlan": "CarePlan/cp1",
        "versionId": str(version),
        "patient": "p1",
        "reason": "drafted from evaluation",
        "evidence": [],
        "activities": [
            {
                "id": "knee-ext",
                "pattern": "knee-extension-seated",
                "level": {"joints": 0, "motion": 0},
                "dose": {"sets": 3, "reps": 10, "loadKg": 1.5, "frequencyPerWeek": 3},
                "cpt": "97110",
            },
            {
                "id": "hip-abd",
                "pattern": "hip-abduction-side-lying",
                "level": {"loadBearing": 1},
                "dose": {
                    "sets": 2,
                    "reps": [12, 12],
                    "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "wk"}},
                },
            },
        ],
    }
    if status:
        data["status"] = status
    data.update(extra)
    return data


@pytest.fixture
def plan() -> PlanView:
    view = apply_plan_event(None, "plan.drafted.v1", _plan_event(1))
    return apply_plan_event(view, "plan.activated.v1", _plan_event(2))


@pytest.fixture
def plan_event() -> Callable[..., dict[str, Any]]:
    """``plan_event(version, status=..., **fields)``: plan event data for CarePlan/cp1 of patient p1."""
    return _plan_event


@pytest.fixture
def exercise() -> Callable[..., dict[str, Any]]:
    """``exercise(**overrides)``: a clinic exercise body as a client sends it."""
    return _exercise


def _exercise(**overrides: Any) -> dict[str, Any]:
    """A clinic exercise as a client sends it."""
    body: dict[str, Any] = {
        "activity": "knee-ext",
        "sets": 3,
        "reps": [10, 10, 8],
        "loadKg": 2.0,
        "assistance": "minimal",
        "cues": ["tactile-cueing", "emg-biofeedback"],
        "level": {"motion": 1},
        "quality": 3,
        "selfRating": 2,
        "painBefore": 2,
        "painAfter": 3,
        "withFeedback": True,
        "dualTask": False,
        "deviceStreams": ["emg-7f3a"],
    }
    body.update(overrides)
    return body


@pytest.fixture
def monday() -> datetime:
    """09:00 UTC on Monday 5 January 2026 (ISO week 2026-W02)."""
    return MONDAY
