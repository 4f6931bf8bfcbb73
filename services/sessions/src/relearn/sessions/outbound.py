"""Data of the events the sessions service emits, exactly as docs/events.md describes them.

The caller wraps them in a CloudEvent (``source`` :data:`SOURCE`, ``subject`` the patient id) and
stages it in the outbox in the same transaction that stores the session.
"""

from __future__ import annotations

from typing import Any

from relearn.sessions.schemas import DIMENSIONS
from relearn.sessions.workflow import RecordedExercise, SessionState

SOURCE = "/relearn/sessions"
SESSION_LOGGED = "session.logged.v1"
SYMPTOMS_RECORDED = "session.symptoms-recorded.v1"


def _trial(e: RecordedExercise) -> dict[str, Any] | None:
    t = e.dual_task_trial
    if t is None:
        return None
    return {
        "measure": t.measure,
        "single": t.single,
        "dual": t.dual,
        "unit": t.unit,
        "lowerIsBetter": t.lower_is_better,
    }


def _rom(e: RecordedExercise) -> dict[str, Any] | None:
    if e.rom is None:
        return None
    return {
        "valueDeg": e.rom.value_deg,
        "method": e.rom.method,
        "motion": e.rom.motion,
        "observation": e.rom.observation,
    }


def _exercise(e: RecordedExercise) -> dict[str, Any]:
    return {
        "procedure": f"Procedure/{e.procedure_id}",
        "activity": e.activity,
        "pattern": e.pattern,
        "level": {d: e.level.get(d, 0) for d in DIMENSIONS},
        "sets": e.sets,
        "reps": list(e.reps),
        "targetReps": e.target_reps,
        "loadKg": e.load_kg,
        "assistance": e.assistance,
        "cues": list(e.cues),
        "withFeedback": e.with_feedback,
        "dualTask": e.dual_task,
        "dualTaskTrial": _trial(e),
        "dualTaskCostPct": e.dual_task_cost_pct,
        "retentionAttempt": e.retention_attempt,
        "rom": _rom(e),
        # Null for home practice: no therapist rated it, and 0 would read as a perfect score.
        "quality": e.quality,
        "selfRating": e.self_rating,
        "painBefore": e.pain_before,
        "painAfter": e.pain_after,
        "deviceStreams": list(e.device_streams),
        # When the exercise itself was timed (null: the session's start/end stand for it).
        "start": e.start.isoformat() if e.start is not None else None,
        "end": e.end.isoformat() if e.end is not None else None,
    }


def session_logged_data(state: SessionState) -> dict[str, Any]:
    """``session.logged.v1`` data for a closed session (or home practice)."""
    if state.status != "finished" or state.end is None:
        raise ValueError(f"{state.reference} is {state.status}: session.logged.v1 is emitted on close")
    return {
        "session": state.reference,
        "patient": state.patient,
        "setting": state.setting,
        "start": state.start.isoformat(),
        "end": state.end.isoformat(),
        "carePlan": state.care_plan,
        "exercises": [_exercise(e) for e in state.exercises],
    }


def symptoms_recorded_data(state: SessionState) -> dict[str, Any]:
    """``session.symptoms-recorded.v1`` data; after an amendment it carries the corrected values."""
    symptoms = state.symptoms
    if symptoms is None:
        raise ValueError(f"{state.reference} has no 24-hour symptom response")
    return {
        "session": state.reference,
        "patient": state.patient,
        "recordedAt": symptoms.recorded_at.isoformat(),
        "pain24h": symptoms.pain24h,
        "flare": symptoms.flare,
        "notes": symptoms.notes,
    }
