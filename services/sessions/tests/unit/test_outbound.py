from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from relearn.sessions.domain.plan_view import PlanView
from relearn.sessions.domain.session import ID_NAMESPACE
from relearn.sessions.events import session_logged_data, symptoms_recorded_data
from relearn.sessions.schemas import (
    ExercisePerformed,
    HomePractice,
    SessionClose,
    SessionStart,
    SymptomResponse,
    parse,
)
from relearn.sessions.service import (
    close_session,
    log_home_practice,
    record_exercise,
    record_symptoms,
    start_session,
)
from relearn.shared.events import CloudEvent, topic_for

EVENTS_MD = Path(__file__).resolve().parents[4] / "docs" / "events.md"


def _section(title: str) -> str:
    text = EVENTS_MD.read_text()
    start = text.index(f"## {title}")
    return text[start : text.index("\n## ", start + 1)]


def _documented_keys(title: str) -> set[str]:
    """Field names of an event as docs/events.md writes them: a JSON block, or inline ``{a, b: 0-10, c}``."""
    section = _section(title)
    block = re.search(r"```json\n(.*?)```", section, re.S)
    if block:
        return set(re.findall(r'"([A-Za-z0-9]+)":', block.group(1)))
    inline = re.search(r"`\{([^}]*)\}`", section)
    assert inline, f"no field list for {title} in {EVENTS_MD}"
    return {field.split(":")[0].strip() for field in inline.group(1).split(",")}


@pytest.fixture
def closed(plan: PlanView, monday: datetime, exercise: Callable[..., dict[str, Any]]) -> Any:
    state = start_session("s1", parse(SessionStart, {"patient": "p1", "carePlan": "cp1"}), plan, now=monday)
    state = record_exercise(
        state,
        parse(
            ExercisePerformed,
            exercise(
                withFeedback=False,
                retentionAttempt=True,
                dualTask=True,
                dualTaskTrial={
                    "measure": "tug-time",
                    "single": 10,
                    "dual": 11.5,
                    "unit": "s",
                    "lowerIsBetter": True,
                },
                rom={"valueDeg": 85, "method": "goniometer", "motion": "knee-extension"},
                start="2026-01-05T09:05:00Z",
            ),
        ),
        plan,
    )
    return close_session(state, SessionClose(), now=monday + timedelta(minutes=30))


def test_session_logged_has_exactly_the_documented_fields(closed: Any) -> None:
    data = session_logged_data(closed)
    exercise = data["exercises"][0]
    nested = set(exercise["level"]) | set(exercise["dualTaskTrial"]) | set(exercise["rom"])
    assert set(data) | set(exercise) | nested == _documented_keys("session.logged.v1")
    assert set(exercise["level"]) == {
        "joints",
        "motion",
        "loadBearing",
        "proprioception",
        "resistance",
        "tempo",
    }


def test_session_logged_values(closed: Any) -> None:
    data = session_logged_data(closed)
    assert {k: v for k, v in data.items() if k != "exercises"} == {
        "session": "Encounter/s1",
        "sessionId": "s1",
        "encounter": "Encounter/s1",
        "patient": "p1",
        "setting": "clinic",
        "start": "2026-01-05T09:00:00+00:00",
        "end": "2026-01-05T09:30:00+00:00",
        "carePlan": "CarePlan/cp1",
    }
    (e,) = data["exercises"]
    rom_id = uuid.uuid5(ID_NAMESPACE, f"{closed.exercises[0].procedure_id}|rom")
    assert e == {
        "procedure": f"Procedure/{closed.exercises[0].procedure_id}",
        "activity": "knee-ext",
        "pattern": "knee-extension-seated",
        "level": {
            "joints": 0,
            "motion": 1,
            "loadBearing": 0,
            "proprioception": 0,
            "resistance": 0,
            "tempo": 0,
        },
        "sets": 3,
        "reps": [10, 10, 8],
        "targetReps": 10,
        "loadKg": 2.0,
        "assistance": "minimal",
        "cues": ["tactile-cueing", "emg-biofeedback"],
        "withFeedback": False,
        "retentionAttempt": True,
        "dualTask": True,
        "dualTaskTrial": {
            "measure": "tug-time",
            "single": 10.0,
            "dual": 11.5,
            "unit": "s",
            "lowerIsBetter": True,
        },
        "dualTaskCostPct": 15.0,  # 1.5 s slower of 10 s, and slower is worse
        "rom": {
            "valueDeg": 85.0,
            "method": "goniometer",
            "motion": "knee-extension",
            # uuid5 of the Procedure id and "rom": the evaluation service stores it under this id.
            "observation": f"Observation/{rom_id}",
        },
        "quality": 3,
        "selfRating": 2,
        "painBefore": 2,
        "painAfter": 3,
        "deviceStreams": ["emg-7f3a"],
        "start": "2026-01-05T09:05:00+00:00",
        "end": None,
    }
    # It travels in the shared envelope on the sessions topic.
    event = CloudEvent.new("/relearn/sessions", "session.logged.v1", data["patient"], data)
    assert CloudEvent.from_bytes(event.to_bytes()).data == data
    assert topic_for(event.type) == "relearn.sessions.events"


def test_home_practice_leaves_unrated_fields_null(plan: PlanView, monday: datetime) -> None:
    body = {
        "patient": "p1",
        "carePlan": "cp1",
        "activity": "hip-abd",
        "sets": 1,
        "reps": [12],
        "painAfter": 1,
    }
    data = session_logged_data(log_home_practice("h1", parse(HomePractice, body), plan, now=monday))
    e = data["exercises"][0]
    assert data["setting"] == "home"
    # No visit, so no Encounter: the event names the resource that exists, the exercise's Procedure.
    assert (data["session"], data["encounter"], data["sessionId"]) == (e["procedure"], None, "h1")
    assert data["session"].startswith("Procedure/")
    assert (e["quality"], e["painBefore"], e["selfRating"], e["assistance"]) == (None, None, None, "none")
    assert (e["retentionAttempt"], e["rom"], e["dualTaskTrial"], e["dualTaskCostPct"]) == (
        False,
        None,
        None,
        None,
    )


def test_session_logged_needs_a_closed_session(plan: PlanView, monday: datetime) -> None:
    state = start_session("s1", parse(SessionStart, {"patient": "p1", "carePlan": "cp1"}), plan, now=monday)
    with pytest.raises(ValueError, match="emitted on close"):
        session_logged_data(state)


def test_symptoms_recorded_has_exactly_the_documented_fields(closed: Any, monday: datetime) -> None:
    state = record_symptoms(
        closed, SymptomResponse(pain24h=5, flare=True, notes="sore"), now=monday + timedelta(days=1)
    )
    data = symptoms_recorded_data(state)
    assert set(data) == _documented_keys("session.symptoms-recorded.v1")
    assert data == {
        "session": "Encounter/s1",
        "sessionId": "s1",
        "patient": "p1",
        "recordedAt": "2026-01-06T09:00:00+00:00",
        "pain24h": 5,
        "flare": True,
        "notes": "sore",
    }
