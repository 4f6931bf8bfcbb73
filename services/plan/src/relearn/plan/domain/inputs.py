"""The engine's inputs: the plan service's own models of the events it consumes (docs/events.md).

Decoded at the edge by :mod:`relearn.plan.events` (which re-exports them); drafting and progression read them.

Services never import each other: these read the ``data`` of ``evaluation.completed.v1`` /
``evaluation.reassessed.v1``, ``session.logged.v1``, ``session.symptoms-recorded.v1`` and
``device.trial-summarized.v1`` (and ``device.metric-computed.v1``, no longer produced, for events already in
the log). Unknown fields are ignored (adding a field is compatible); where producers may
reasonably differ (a code as a string or a Coding, a bare id or a reference) both are accepted.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from relearn.plan.domain.patterns import Dimension
from relearn.plan.domain.state import Comparator, Side


class _Inbound(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


def reference(kind: str, value: str) -> str:
    """``"abc"`` or ``"Encounter/abc"`` -> ``"Encounter/abc"``; a reference to another type is kept as is."""
    value = value.strip()
    return value if "/" in value else f"{kind}/{value}"


def bare_id(value: str) -> str:
    return value.strip().rsplit("/", 1)[-1]


class CodeIn(_Inbound):
    """A code as a producer may send it: a string, a Coding, or a CodeableConcept (first coding)."""

    system: str | None = None
    code: str
    display: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _loose(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"code": value}
        if isinstance(value, dict) and "code" not in value:
            codings = value.get("coding") or []
            if codings:
                first = dict(codings[0])
                first.setdefault("display", value.get("text"))
                return first
            if value.get("text"):
                return {"code": value["text"], "display": value["text"]}
        return value

    @property
    def token(self) -> str:
        return f"{self.system or ''}|{self.code}"


_SIDES: dict[str, Side] = {
    "left": "left",
    "l": "left",
    "7771000": "left",
    "right": "right",
    "r": "right",
    "24028007": "right",
    "bilateral": "bilateral",
    "both": "bilateral",
    "51440002": "bilateral",
}


def _side(value: Any) -> Side | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = CodeIn.model_validate(value).code
    return _SIDES.get(str(value).strip().lower())


class NormIn(_Inbound):
    """The norm a deficit was judged against: ``limit`` is the edge of normal, ``direction`` which side of it
    the measurement fell (``below``: higher is better)."""

    value: float | None = None
    limit: float | None = None
    direction: Literal["below", "above"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _loose(cls, value: Any) -> Any:
        if isinstance(value, int | float):
            return {"value": value}
        if isinstance(value, dict) and ("low" in value or "high" in value):
            low, high = value.get("low"), value.get("high")
            low = low.get("value") if isinstance(low, dict) else low
            high = high.get("value") if isinstance(high, dict) else high
            if low is not None:
                return {"limit": low, "direction": "below"}
            return {"limit": high, "direction": "above"}
        return value


def _observation_ref(value: Any) -> Any:
    return None if value is None else reference("Observation", str(value))


class Deficit(_Inbound):
    """One deficit of ``evaluation.completed.v1``: a measure outside its norm."""

    item: str | None = None
    observation: str | None = Field(
        default=None, validation_alias=AliasChoices("observationId", "observation")
    )
    measure: str = Field(description="the evaluation's measure key, e.g. rom-knee-flexion, mmt-grade, tug")
    code: CodeIn | None = None
    kind: str | None = Field(default=None, description="range-of-motion | strength | balance | pain")
    side: Side | None = Field(default=None, validation_alias=AliasChoices("side", "laterality"))
    joint: str | None = None
    body_site: CodeIn | None = None
    motion: str | None = None
    muscle_group: str | None = None
    conditions: dict[str, str | None] = Field(default_factory=dict)
    measured: float | None = Field(default=None, validation_alias=AliasChoices("measured", "value"))
    grade: str | None = None
    unit: str | None = None
    norm: NormIn | None = None
    severity: str | None = None
    self_rating_agrees: bool | None = None

    @field_validator("measure", mode="before")
    @classmethod
    def _measure(cls, value: Any) -> Any:
        return CodeIn.model_validate(value).code if isinstance(value, dict) else value

    @field_validator("side", mode="before")
    @classmethod
    def _side(cls, value: Any) -> Side | None:
        return _side(value)

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> str | None:
        return None if value is None else str(value).strip().lower()

    @field_validator("observation", mode="before")
    @classmethod
    def _observation(cls, value: Any) -> Any:
        return _observation_ref(value)

    @field_validator("conditions", mode="before")
    @classmethod
    def _conditions(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def coding(self) -> CodeIn:
        return self.code or CodeIn(code=self.measure)

    @property
    def qualifier(self) -> str:
        """What tells two deficits on the same measure apart: the muscle group, the test conditions."""
        parts = [self.muscle_group or ""] + [f"{k}={v}" for k, v in sorted(self.conditions.items()) if v]
        return ";".join(p for p in parts if p)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.coding.token, self.side or "", self.qualifier)

    @property
    def label(self) -> str:
        name = self.coding.display or self.measure
        if self.muscle_group:
            name = f"{name}, {self.muscle_group.replace('-', ' ')}"
        cond = ", ".join(v for v in self.conditions.values() if v)
        return f"{name} ({cond})" if cond else name

    def target(self) -> tuple[Comparator, float] | None:
        """The measurable target that closes this deficit: back to the edge of normal."""
        if self.norm is None:
            return None
        edge = self.norm.limit if self.norm.limit is not None else self.norm.value
        if edge is None:
            return None
        direction = self.norm.direction
        if direction is None and self.measured is not None:
            direction = "above" if self.measured > edge else "below"
        return ("<=", edge) if direction == "above" else (">=", edge)


class GoalTargetIn(_Inbound):
    measure: str | None = None
    code: CodeIn | None = None
    value: float | None = None
    comparator: Comparator | None = None
    unit: str | None = None
    due: date | None = Field(default=None, validation_alias=AliasChoices("dueDate", "due"))
    side: Side | None = None
    muscle_group: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, value: Any) -> Any:
        # Accept the FHIR Goal.target shape too: {measure: Coding, detailQuantity: {value, comparator}}.
        if isinstance(value, dict):
            if isinstance(value.get("detailQuantity"), dict):
                q = value["detailQuantity"]
                value = {
                    **value,
                    "value": q.get("value"),
                    "comparator": q.get("comparator"),
                    "unit": q.get("unit"),
                }
            if isinstance(value.get("measure"), dict):
                coding = CodeIn.model_validate(value["measure"])
                value = {**value, "measure": coding.code, "code": value.get("code") or coding.model_dump()}
        return value

    @field_validator("side", mode="before")
    @classmethod
    def _side(cls, value: Any) -> Side | None:
        return _side(value)

    @property
    def coding(self) -> CodeIn | None:
        if self.code is not None:
            return self.code
        return CodeIn(code=self.measure) if self.measure else None


class PatientGoal(_Inbound):
    observation: str | None = Field(
        default=None, validation_alias=AliasChoices("observationId", "observation")
    )
    text: str = Field(min_length=1, validation_alias=AliasChoices("text", "description"))
    targets: tuple[GoalTargetIn, ...] = ()
    deficits: tuple[str, ...] = Field(default=(), description="Observation refs of the deficits it is about")

    @model_validator(mode="before")
    @classmethod
    def _one_target(cls, value: Any) -> Any:
        # The evaluation service sends one optional ``target``; a list of ``targets`` is accepted too.
        if isinstance(value, dict) and "targets" not in value and "target" in value:
            target = value["target"]
            value = {**value, "targets": [] if target is None else [target]}
        return value

    @field_validator("observation", mode="before")
    @classmethod
    def _observation(cls, value: Any) -> Any:
        return _observation_ref(value)

    @field_validator("deficits")
    @classmethod
    def _refs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(reference("Observation", v) for v in value)


class ReferralIn(_Inbound):
    """A referral condition: recorded by the evaluation as an Observation, or a Condition reference."""

    observation: str | None = Field(
        default=None, validation_alias=AliasChoices("observationId", "observation")
    )
    condition: str | None = None
    kind: str | None = None
    text: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _loose(cls, value: Any) -> Any:
        return {"condition": value} if isinstance(value, str) else value

    @field_validator("observation", mode="before")
    @classmethod
    def _observation(cls, value: Any) -> Any:
        return _observation_ref(value)

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        return None if value is None else reference("Condition", value)

    @property
    def ref(self) -> str | None:
        return self.condition or self.observation


class ScreeningValue(_Inbound):
    value: float
    unit: str | None = None
    observation: str | None = None

    @field_validator("observation", mode="before")
    @classmethod
    def _observation(cls, value: Any) -> Any:
        return _observation_ref(value)


class ScreeningIn(_Inbound):
    """Fall-risk screening values the evaluation measured (deficit or not)."""

    tug: ScreeningValue | None = None
    berg: ScreeningValue | None = None


class EvaluationCompleted(_Inbound):
    """``evaluation.completed.v1`` and ``evaluation.reassessed.v1``."""

    evaluation: str = Field(validation_alias=AliasChoices("evaluationId", "evaluation"))
    patient: str
    kind: str = "initial"
    effective: AwareDatetime
    encounter: str | None = None
    practitioner: str | None = Field(default=None, validation_alias=AliasChoices("performer", "practitioner"))
    referral: tuple[ReferralIn, ...] = Field(
        default=(), validation_alias=AliasChoices("referralConditions", "referral")
    )
    deficits: tuple[Deficit, ...] = ()
    goals: tuple[PatientGoal, ...] = ()
    care_plan: str | None = Field(default=None, description="for a re-assessment: the plan it re-assesses")
    screening: ScreeningIn | None = None

    @model_validator(mode="before")
    @classmethod
    def _date_only(cls, value: Any) -> Any:
        # An evaluation dated without a time is taken at midnight UTC.
        if (
            isinstance(value, dict)
            and isinstance(value.get("effective"), str)
            and len(value["effective"]) == 10
        ):
            value = {**value, "effective": value["effective"] + "T00:00:00+00:00"}
        return value

    @field_validator("evaluation")
    @classmethod
    def _evaluation(cls, value: str) -> str:
        return reference("Observation", value)

    @field_validator("patient")
    @classmethod
    def _patient(cls, value: str) -> str:
        return bare_id(value)

    @field_validator("referral", "deficits", "goals", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value


class RomIn(_Inbound):
    value_deg: float = Field(ge=0, le=360)
    method: str | None = None
    motion: str | None = None
    observation: str | None = None

    @field_validator("observation", mode="before")
    @classmethod
    def _observation(cls, value: Any) -> Any:
        return _observation_ref(value)


class ExerciseLogged(_Inbound):
    procedure: str | None = None
    activity: str
    pattern: str | None = None
    level: dict[Dimension, int] = Field(default_factory=dict)
    sets: int = Field(ge=0)
    reps: tuple[int, ...] = ()
    target_reps: int | None = None
    load_kg: float = 0
    assistance: str = "none"
    cues: tuple[str, ...] = ()
    with_feedback: bool = True
    dual_task: bool = False
    dual_task_cost_pct: float | None = Field(
        default=None, description="computed by the sessions service from the dual-task trial"
    )
    retention_attempt: bool = False
    rom: RomIn | None = None
    quality: int | None = Field(default=None, ge=0, le=4, description="null for home practice (not rated)")
    self_rating: int | None = Field(default=None, ge=0, le=4)
    pain_before: int | None = Field(default=None, ge=0, le=10)
    pain_after: int = Field(ge=0, le=10)
    device_streams: tuple[str, ...] = ()
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _known_dimensions(cls, value: Any) -> Any:
        if isinstance(value, dict):
            known = {d.value for d in Dimension}
            return {k: v for k, v in value.items() if k in known and v is not None}
        return value

    @field_validator("activity")
    @classmethod
    def _activity(cls, value: str) -> str:
        return bare_id(value)

    @field_validator("procedure")
    @classmethod
    def _procedure(cls, value: str | None) -> str | None:
        return None if value is None else reference("Procedure", value)


class SessionLogged(_Inbound):
    session: str
    patient: str
    setting: Literal["clinic", "home"] = "clinic"
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    care_plan: str | None = None
    exercises: tuple[ExerciseLogged, ...] = ()

    @field_validator("session")
    @classmethod
    def _session(cls, value: str) -> str:
        return reference("Encounter", value)

    @field_validator("care_plan")
    @classmethod
    def _plan(cls, value: str | None) -> str | None:
        return None if value is None else reference("CarePlan", value)

    @field_validator("patient")
    @classmethod
    def _patient(cls, value: str) -> str:
        return bare_id(value)


class SymptomsRecorded(_Inbound):
    session: str
    patient: str
    recorded_at: AwareDatetime
    pain24h: int = Field(ge=0, le=10, validation_alias=AliasChoices("pain24h", "pain24H", "pain_24h"))
    flare: bool
    notes: str | None = None

    @field_validator("session")
    @classmethod
    def _session(cls, value: str) -> str:
        return reference("Encounter", value)

    @field_validator("patient")
    @classmethod
    def _patient(cls, value: str) -> str:
        return bare_id(value)


class MetricWindow(_Inbound):
    start: AwareDatetime
    end: AwareDatetime


class MetricComponent(_Inbound):
    code: str
    value: float | None = None
    unit: str | None = None


class OnsetReference(_Inbound):
    """What an onset latency is timed against: a synergist channel or the movement cue."""

    kind: Literal["synergist", "cue"]
    channel: str | None = None
    muscle: str | None = None


class DeviceMetricComputed(_Inbound):
    patient: str
    device: str
    stream: str | None = None
    session: str | None = None
    channel: str | None = None
    muscle: str | None = None
    antagonist: str | None = None
    metric: str
    window: MetricWindow
    # The Observation the evaluation service stores the metric as, named by the gateway (absent in older
    # events: the metric is then evidence without its Observation).
    observation: str | None = Field(default=None, pattern=r"^Observation/[A-Za-z0-9\-.]{1,64}$")
    value: float | None = None
    status: Literal["measured", "not-detected", "not-computable"] = "measured"
    reason: str | None = Field(default=None, max_length=1000)
    reference: OnsetReference | None = None
    unit: str | None = None
    components: tuple[MetricComponent, ...] = ()

    @field_validator("session")
    @classmethod
    def _session(cls, value: str | None) -> str | None:
        return None if value is None else reference("Encounter", value)

    @field_validator("patient")
    @classmethod
    def _patient(cls, value: str) -> str:
        return bare_id(value)


class TrialResult(_Inbound):
    """One channel's (or pair's, or the whole stream's) whole-trial result in a trial summary. The window
    series it may carry (``series``) is not evidence: criteria are judged on whole-trial values."""

    channel: str | None = None
    muscle: str | None = None
    antagonist: str | None = None
    value: float | None = None
    unit: str | None = None
    status: Literal["measured", "not-detected", "not-computable"] = "measured"
    reason: str | None = Field(default=None, max_length=1000)
    reference: OnsetReference | None = None
    components: tuple[MetricComponent, ...] = Field(default=(), max_length=32)


class TrialSummarized(_Inbound):
    """``device.trial-summarized.v1``: one metric of one trial (a stream binding's recording), every channel's
    whole-trial result, stored by the evaluation service as the one Observation ``observation`` names."""

    patient: str
    device: str
    stream: str
    session: str | None = None
    metric: str
    unit: str | None = None
    trial: MetricWindow
    observation: str = Field(pattern=r"^Observation/[A-Za-z0-9\-.]{1,64}$")
    results: tuple[TrialResult, ...] = Field(min_length=1, max_length=256)

    @field_validator("patient")
    @classmethod
    def _patient(cls, value: str) -> str:
        return bare_id(value)

    def metrics(self) -> tuple[DeviceMetricComputed, ...]:
        """Each result as the engine reads a device metric: over the trial, citing the summary's
        Observation (one Observation holds every channel's result, so several criteria may cite it)."""
        return tuple(
            DeviceMetricComputed(
                patient=self.patient,
                device=self.device,
                stream=self.stream,
                session=self.session,
                channel=r.channel,
                muscle=r.muscle,
                antagonist=r.antagonist,
                metric=self.metric,
                window=self.trial,
                observation=self.observation,
                value=r.value,
                status=r.status,
                reason=r.reason,
                reference=r.reference,
                unit=r.unit or self.unit,
                components=r.components,
            )
            for r in self.results
        )


class CompletedMetric(_Inbound):
    metric: str
    channel: str | None = None
    muscle: str | None = None
    status: str = "measured"


class StreamMetricsCompleted(_Inbound):
    """``device.stream-metrics-completed.v1``: every whole-recording metric of a closed stream has been
    sent."""

    patient: str
    device: str
    stream: str
    session: str | None = None
    stream_type: str | None = None
    metrics: tuple[CompletedMetric, ...] = ()
    gaps: int = 0

    @field_validator("session")
    @classmethod
    def _session(cls, value: str | None) -> str | None:
        return None if value is None else reference("Encounter", value)

    @field_validator("patient")
    @classmethod
    def _patient(cls, value: str) -> str:
        return bare_id(value)
