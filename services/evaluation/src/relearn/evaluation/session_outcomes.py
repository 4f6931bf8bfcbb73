"""Session outcome scores become Observations (``session.logged.v1``, ``session.symptoms-recorded.v1``).

Pain before/after each exercise (LOINC 72514-3 with the local before/after code), movement
quality and the patient's self-rating, and the 24-hour pain response. Ids derive from
(session, exercise, measure), so a replayed event updates the same Observations.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlmodel import Session

from relearn.evaluation import codes
from relearn.evaluation.resources import OBSERVATION
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.fhir.store import FhirStore

_OUTCOME_IDS = uuid.UUID("a3e7c2d1-5b4f-4e8a-8c6d-1f2e3d4c5b6a")


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


# Field names are the event's own (camelCase), as docs/events.md writes them.
class ExerciseOutcome(_In):
    procedure: str
    activity: str
    quality: int | None = None
    selfRating: int | None = None
    painBefore: int | None = None
    painAfter: int | None = None


class SessionLogged(_In):
    session: str
    patient: str
    end: str
    exercises: list[ExerciseOutcome] = []


class SymptomsRecorded(_In):
    session: str
    patient: str
    recordedAt: str
    pain24h: int
    flare: bool


def outcome_id(session: str, procedure: str, measure: str) -> str:
    return str(uuid.uuid5(_OUTCOME_IDS, f"{session}|{procedure}|{measure}"))


def _score(
    *,
    id: str,
    patient: str,
    session: str,
    when: str,
    coding: list[dict[str, Any]],
    value: int,
    category: str,
    part_of: str | None = None,
    components: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [codes.category(category)],
        "code": {"coding": coding},
        "subject": {"reference": f"Patient/{patient}"},
        "encounter": {"reference": session},
        "effectiveDateTime": when,
        "valueQuantity": codes.quantity(value, "{score}"),
    }
    if part_of:
        obs["partOf"] = [{"reference": part_of}]
    if components:
        obs["component"] = components
    return obs


def session_outcome_observations(data: SessionLogged) -> list[dict[str, Any]]:
    pain = dict(codes.LOINC_PAIN_NRS)
    out: list[dict[str, Any]] = []
    for ex in data.exercises:
        scores = [
            (
                "pain-before-session",
                ex.painBefore,
                [pain, dict(codes.local("pain-before-session"))],
                "survey",
            ),
            ("pain-after-session", ex.painAfter, [pain, dict(codes.local("pain-after-session"))], "survey"),
            ("movement-quality", ex.quality, [dict(codes.local("movement-quality"))], "exam"),
        ]
        for measure, value, coding, category in scores:
            if value is not None:
                out.append(
                    _score(
                        id=outcome_id(data.session, ex.procedure, measure),
                        coding=coding,
                        value=value,
                        category=category,
                        patient=data.patient,
                        session=data.session,
                        when=data.end,
                        part_of=ex.procedure,
                    )
                )
    return out


def symptom_observation(data: SymptomsRecorded) -> dict[str, Any]:
    coding = [dict(codes.LOINC_PAIN_NRS), dict(codes.local("pain-24h-after-session"))]
    flare = {"code": {"text": "Symptom flare not settled by the next day"}, "valueBoolean": data.flare}
    return _score(
        id=outcome_id(data.session, "-", "pain-24h-after-session"),
        patient=data.patient,
        session=data.session,
        when=data.recordedAt,
        coding=coding,
        value=data.pain24h,
        category="survey",
        components=[flare],
    )


def outcome_handlers(store: FhirStore) -> dict[str, Any]:
    def logged(session: Session, event: CloudEvent) -> None:
        for obs in session_outcome_observations(SessionLogged.model_validate(event.data)):
            store.update(session, OBSERVATION, obs["id"], obs)

    def symptoms(session: Session, event: CloudEvent) -> None:
        obs = symptom_observation(SymptomsRecorded.model_validate(event.data))
        store.update(session, OBSERVATION, obs["id"], obs)

    return {"session.logged.v1": logged, "session.symptoms-recorded.v1": symptoms}
