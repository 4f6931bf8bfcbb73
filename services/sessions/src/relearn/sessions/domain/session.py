"""A session's state and its summary: what the log stores and every module reads."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from relearn.sessions.domain.codes import Assistance, RomMethod, Setting
from relearn.shared.fhir import CANONICAL_URL

SessionStatus = Literal["in-progress", "finished"]
PainZone = Literal["safe", "acceptable", "not-acceptable"]

# Namespace of the ids this service derives (uuid5), so replays give the same ids.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"{CANONICAL_URL}/sessions")


def derived_id(*parts: str) -> str:
    """A deterministic FHIR id for the thing named by ``parts`` (e.g. session, exercise, measure)."""
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(parts)))


def rom_observation_id(procedure_id: str) -> str:
    """The id of the ROM Observation of an exercise: uuid5 of its Procedure id and "rom"."""
    return derived_id(procedure_id, "rom")


class ClientData(BaseModel):
    """What a client sends: camelCase, unknown fields refused (a typo is an error, not a lost value)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
    )


class DualTaskTrial(ClientData):
    """Paired measurements of one trial type, alone and under a dual task; the service derives the cost."""

    measure: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,63}$",
        description="the trial's measure, e.g. reps, gait-speed, sway-area, tug-time, quality",
    )
    single: float = Field(ge=-1_000_000, le=1_000_000, description="the value under the single task")
    dual: float = Field(ge=-1_000_000, le=1_000_000, description="the value under the dual task")
    unit: str | None = Field(default=None, min_length=1, max_length=32, description="UCUM, e.g. m/s")
    lower_is_better: bool = Field(description="true for times and sway, false for reps, speed, quality")

    @field_validator("single")
    @classmethod
    def _non_zero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("must not be 0: the dual-task cost is relative to the single-task value")
        return v

    @property
    def cost_pct(self) -> float:
        """``100 * (single - dual) / |single|``, sign flipped when lower is better: positive = worse."""
        cost = 100.0 * (self.single - self.dual) / abs(self.single)
        return round(-cost if self.lower_is_better else cost, 2) + 0.0  # + 0.0: no "-0.0"


def _bare_id_stored_before(data: Any, old: str, new: str, resource_type: str) -> Any:
    """Sessions logged before the record was the API's answer stored a bare id under ``old``."""
    if isinstance(data, dict) and old in data:
        data = dict(data)
        data[new] = f"{resource_type}/{data.pop(old)}"
    return data


class _Record(BaseModel):
    """Stored by field name (the session log's JSON), answered by camelCase alias (the API, the events)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        json_schema_serialization_defaults_required=True,  # every field is in every answer
    )


class RecordedRom(_Record):
    """The active ROM reached in an exercise and the Observation the evaluation service stores it as."""

    value_deg: float
    method: RomMethod
    motion: str | None = None
    observation: str = Field(
        description="the Observation the evaluation service stores: Observation/<id> (derived from the "
        "Procedure id, so a replay names the same one)"
    )

    @model_validator(mode="before")
    @classmethod
    def _stored_before(cls, data: Any) -> Any:
        return _bare_id_stored_before(data, "observation_id", "observation", "Observation")

    @property
    def observation_id(self) -> str:
        return self.observation.removeprefix("Observation/")


class RecordedExercise(_Record):
    """An exercise as performed, resolved against the plan (pattern, level, target reps filled in).

    The one record of an exercise: the session log stores it, the API answers it, ``session.logged.v1``
    carries it and the Procedure is mapped from it.
    """

    procedure: str = Field(description="the exercise as FHIR: Procedure/<id>")
    activity: str
    pattern: str
    level: dict[str, int] = Field(description="progression level used, per dimension")
    sets: int
    reps: tuple[int, ...]
    target_reps: int | None
    load_kg: float
    assistance: Assistance
    cues: tuple[str, ...] = ()
    quality: int | None = None
    self_rating: int | None = None
    difficulty: int | None = None
    pain_before: int | None = None
    pain_after: int
    with_feedback: bool
    dual_task: bool = False
    dual_task_trial: DualTaskTrial | None = None
    # Computed from dual_task_trial (sessions recorded before it existed kept the client's figure).
    dual_task_cost_pct: float | None = Field(
        default=None,
        description="computed from dualTaskTrial: 100*(single-dual)/|single|, sign flipped when lower is "
        "better; positive = worse under the dual task",
    )
    retention_attempt: bool = Field(default=False, description="a feedback-free retention attempt")
    rom: RecordedRom | None = Field(default=None, description="active ROM reached in the exercise")
    device_streams: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    notes: str | None = None
    cpt: str | None = Field(
        default=None,
        description="the CPT code of the activity's form when recorded (the plan's: 97110, 97112 or 97530)",
    )

    @model_validator(mode="before")
    @classmethod
    def _stored_before(cls, data: Any) -> Any:
        return _bare_id_stored_before(data, "procedure_id", "procedure", "Procedure")

    @property
    def procedure_id(self) -> str:
        return self.procedure.removeprefix("Procedure/")

    @computed_field(alias="targetMet", description="every set reached the target; null without a target")  # type: ignore[prop-decorator]
    @property
    def target_met(self) -> bool | None:
        """Every set reached the target; None when there is no target."""
        if self.target_reps is None:
            return None
        return all(r >= self.target_reps for r in self.reps)


class SymptomRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    recorded_at: datetime
    pain24h: int
    flare: bool
    notes: str | None = None
    amendment: int = Field(default=0, description="0 for the first record, then 1, 2, ... per correction")


class SessionSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    exercises: int
    sets: int
    reps: int
    targets_met: int
    targets_missed: int
    pain_before_max: int | None
    pain_after_max: int | None
    pain_increase_max: int | None = Field(description="largest rise from before to after, over the exercises")
    pain_zone: PainZone | None = Field(description="Silbernagel: 0-3 safe, 4-5 acceptable, >5 not acceptable")
    mean_quality: float | None
    duration_minutes: float


class SessionState(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    patient: str
    care_plan: str
    plan_version: int
    setting: Setting
    practitioner: str | None = None
    reasons: tuple[str, ...] = ()
    start: datetime
    end: datetime | None = None
    status: SessionStatus
    exercises: tuple[RecordedExercise, ...] = ()
    notes: str | None = None
    summary: SessionSummary | None = None
    symptoms: SymptomRecord | None = None
    symptom_history: tuple[SymptomRecord, ...] = Field(default=(), description="records since corrected")

    @property
    def reference(self) -> str:
        """The FHIR resource that records the session: its Encounter (clinic), or for home practice, which is
        patient-reported exercise and no visit, the Procedure of its one exercise."""
        if self.setting == "home" and self.exercises:
            return self.exercises[0].procedure
        return f"Encounter/{self.id}"

    @property
    def encounter(self) -> str | None:
        """The session's Encounter; None for home practice (no visit)."""
        return f"Encounter/{self.id}" if self.setting == "clinic" else None


def pain_zone(pain: int) -> PainZone:
    return "safe" if pain <= 3 else "acceptable" if pain <= 5 else "not-acceptable"


def summarize(exercises: Sequence[RecordedExercise], start: datetime, end: datetime) -> SessionSummary:
    before = [e.pain_before for e in exercises if e.pain_before is not None]
    after = [e.pain_after for e in exercises]
    rises = [e.pain_after - e.pain_before for e in exercises if e.pain_before is not None]
    qualities = [e.quality for e in exercises if e.quality is not None]
    return SessionSummary(
        exercises=len(exercises),
        sets=sum(e.sets for e in exercises),
        reps=sum(sum(e.reps) for e in exercises),
        targets_met=sum(1 for e in exercises if e.target_met is True),
        targets_missed=sum(1 for e in exercises if e.target_met is False),
        pain_before_max=max(before, default=None),
        pain_after_max=max(after, default=None),
        pain_increase_max=max(rises, default=None),
        pain_zone=pain_zone(max(after)) if after else None,
        mean_quality=round(sum(qualities) / len(qualities), 2) if qualities else None,
        duration_minutes=round((end - start).total_seconds() / 60, 1),
    )
