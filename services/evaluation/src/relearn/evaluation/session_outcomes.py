"""Session outcome scores become Observations (``session.logged.v1``, ``session.symptoms-recorded.v1``).

Pain before/after each exercise (LOINC 72514-3 with the local before/after code), movement
quality and the patient's self-rating, and the 24-hour pain response. Ids derive from
(session, exercise, measure), so a replayed event updates the same Observations.

The active range of motion reached in an exercise (the exercise's ``rom``) becomes an Observation
under exactly the id the sessions service named in the event (``rom.observation``): code
``rom-exercise-active`` (plus the joint's own ROM code when the motion names one), degrees,
``method`` the instrument, ``partOf`` the Procedure. A replay that changes nothing writes nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from relearn.evaluation import codes
from relearn.evaluation.resources import OBSERVATION
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.fhir.store import FhirStore

ROM_CODE = "rom-exercise-active"
ROM_INSTRUMENTS = {
    "goniometer": "rom-instrument-goniometer",
    "inclinometer": "rom-instrument-inclinometer",
    "device": "rom-instrument-device",
}

_OUTCOME_IDS = uuid.UUID("a3e7c2d1-5b4f-4e8a-8c6d-1f2e3d4c5b6a")


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


# Field names are the event's own (camelCase), as docs/events.md writes them.
class RomReached(_In):
    valueDeg: float = Field(ge=0, le=360)
    method: Literal["goniometer", "inclinometer", "device"]
    motion: str | None = Field(default=None, max_length=100)
    observation: str = Field(pattern=r"^Observation/[A-Za-z0-9\-.]{1,64}$")

    @property
    def observation_id(self) -> str:
        return self.observation.removeprefix("Observation/")


class ExerciseOutcome(_In):
    procedure: str
    activity: str
    quality: int | None = None
    selfRating: int | None = None
    painBefore: int | None = None
    painAfter: int | None = None
    rom: RomReached | None = None
    start: str | None = None
    end: str | None = None


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


def _rom_code(rom: RomReached) -> dict[str, Any]:
    coding = [dict(codes.local(ROM_CODE))]
    if rom.motion is None:
        return {"coding": coding}
    # "knee flexion" / "knee-flexion" also gets the joint's own code (rom-knee-flexion) when there is one.
    slug = re.sub(r"[\s_]+", "-", rom.motion.strip().lower())
    specific = codes.MEASURES.get(f"rom-{slug}")
    if specific is not None and specific.kind == "range-of-motion":
        coding.append(dict(specific.coding))
    return {"coding": coding, "text": f"Active range of motion reached in the exercise: {rom.motion}"}


def rom_observations(data: SessionLogged) -> list[dict[str, Any]]:
    """One Observation per exercise that recorded the ROM it reached, under the event's id."""
    out: list[dict[str, Any]] = []
    for ex in data.exercises:
        rom = ex.rom
        if rom is None:
            continue
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": rom.observation_id,
            "partOf": [{"reference": ex.procedure}],
            "status": "final",
            "category": [codes.category("exam")],
            "code": _rom_code(rom),
            "subject": {"reference": f"Patient/{data.patient}"},
            "encounter": {"reference": data.session},
        }
        # The exercise's own time when the therapist gave it, else the session's end (as the scores).
        if ex.start is not None and ex.end is not None:
            obs["effectivePeriod"] = {"start": ex.start, "end": ex.end}
        else:
            obs["effectiveDateTime"] = ex.start or ex.end or data.end
        obs["valueQuantity"] = codes.quantity(rom.valueDeg, "deg")
        obs["method"] = {"coding": [dict(codes.local(ROM_INSTRUMENTS[rom.method]))]}
        out.append(obs)
    return out


def _unchanged(store: FhirStore, session: Session, obs: dict[str, Any]) -> bool:
    """The stored current version already says exactly this (a replay): no new version, no new event."""
    current = store.get(session, OBSERVATION.type, obs["id"])
    if current is None or current.deleted or not current.text:
        return False
    stored = {k: v for k, v in json.loads(current.text).items() if k != "meta"}
    return bool(stored == json.loads(json.dumps(obs)))


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
        data = SessionLogged.model_validate(event.data)
        for obs in session_outcome_observations(data):
            store.update(session, OBSERVATION, obs["id"], obs)
        for obs in rom_observations(data):
            if not _unchanged(store, session, obs):
                store.update(session, OBSERVATION, obs["id"], obs)

    def symptoms(session: Session, event: CloudEvent) -> None:
        obs = symptom_observation(SymptomsRecorded.model_validate(event.data))
        store.update(session, OBSERVATION, obs["id"], obs)

    return {"session.logged.v1": logged, "session.symptoms-recorded.v1": symptoms}
