"""Bodies in and out: the evaluation request and its answer, and the data of the events the service reads."""

# JSON field names are camelCase (``ageYears``, ``muscleGroup``, ``referralConditions``); Python code
# may use the snake_case names. A bad request becomes one error per problem, each with the field's
# path (``rom[2].degrees``) and a message a therapist understands (``400 is outside 0-160 for knee
# flexion``, with an en dash): :func:`parse_evaluation` raises :class:`InvalidResource` carrying them as
# OperationOutcome issues.
#
# Manual muscle test grades are the MRC 0 to 5 scale. A ``+`` modifier is accepted on grades 1 to 4 and a
# ``-`` on grades 2 to 5 (``"3+"``, ``"4-"``, ``"5-"``), as clinicians write them; the grade with its
# modifier is one code of the mmt-grade CodeSystem, the Observation's coded value. Whole grades may be sent
# as numbers.

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from relearn.evaluation.domain import codes
from relearn.evaluation.domain.normative import PlausibleRange, load_norms
from relearn.evaluation.domain.outcomes import ASHWORTH_GRADES, OUTCOME_MEASURES, OutcomeMeasure
from relearn.shared.fhir import InvalidResource, Issue

_FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"
# FHIR R4 dateTime: a year, year-month, date, or date and time with a zone.
_DATE_TIME = re.compile(
    r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$"
)
# ICD-10-CM: a letter, two characters, then up to four after the dot (I63.9, S06.2X9A).
_ICD10CM = r"^[A-TV-Z][0-9][0-9AB](\.[0-9A-Z]{1,4})?$"
_GRADE = re.compile(r"^([0-9]+)([+-]?)$")

Side = Literal["left", "right", "bilateral"]
Severity = Literal["mild", "moderate", "severe"]
BalanceTestCode = Literal[
    "single-leg-stance",
    "tug",
    "berg",
    "romberg",
    "sway-path-length",
    "sway-mean-velocity",
    "sway-ellipse-area",
    "sway-rms-distance",
]


def _number_only(value: Any) -> Any:
    # Lax pydantic would take true as 1 and "90" as 90; a measurement must be a JSON number.
    if isinstance(value, bool | str):
        raise ValueError("must be a number")
    return value


Number = Annotated[float, BeforeValidator(_number_only), Field(allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1, max_length=4000)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _check_range(value: float, rng: PlausibleRange, what: str) -> float:
    if not rng.contains(value):
        raise ValueError(f"{_fmt(value)} is outside {_fmt(rng.low)}\u2013{_fmt(rng.high)} for {what}")
    return value


def _plausible(measure: str) -> PlausibleRange:
    return load_norms().plausible(measure)


def _fhir_date_time(value: str, *, need_day: bool) -> str:
    if not _DATE_TIME.match(value):
        raise ValueError(f"{value!r} is not a FHIR dateTime (e.g. 2026-11-23 or 2026-11-23T10:30:00+01:00)")
    if need_day and len(value) < 10:
        raise ValueError(f"{value!r} needs at least a full date (YYYY-MM-DD)")
    if len(value) >= 10:
        try:
            date.fromisoformat(value[:10])
        except ValueError:
            raise ValueError(f"{value[:10]!r} is not a calendar date") from None
    return value


def _unit_for(measure: codes.Measure, unit: str | None) -> str:
    if unit is None:
        return measure.unit
    if unit != measure.unit:
        raise ValueError(f"unit {unit!r} is not accepted for {measure.label}; use UCUM {measure.unit!r}")
    return unit


def _known_muscle_group(value: str) -> str:
    if value not in codes.MUSCLE_GROUPS:
        raise ValueError(f"unknown muscle group {value!r}; known: {', '.join(codes.MUSCLE_GROUPS)}")
    return value


class _In(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )


class ReferralConditionIn(_In):
    """A condition behind the referral: stroke, brain injury, trauma or another condition."""

    kind: Literal["stroke", "brain-injury", "trauma", "other"]
    text: ShortText | None = Field(default=None, validate_default=True)
    onset: str | None = None
    category: Literal["problem-list-item", "encounter-diagnosis"] = Field(
        default="problem-list-item",
        description="US Core Condition category: on the problem list (default) or this encounter's diagnosis",
    )
    clinical_status: Literal["active", "recurrence", "relapse", "inactive", "remission", "resolved"] = (
        "active"
    )
    icd10cm: Annotated[str, Field(pattern=_ICD10CM, description="ICD-10-CM code, e.g. I69.351")] | None = None
    snomed: (
        Annotated[str, Field(pattern=r"^[1-9][0-9]{5,17}$", description="SNOMED CT concept id")] | None
    ) = None

    @field_validator("text")
    @classmethod
    def _other_needs_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("kind") == "other":
            raise ValueError("text is required when kind is 'other'")
        return value

    @field_validator("onset")
    @classmethod
    def _onset(cls, value: str | None) -> str | None:
        return None if value is None else _fhir_date_time(value, need_day=False)


class PostureFindingIn(_In):
    region: ShortText
    finding: Text
    severity: Severity | None = None
    position: Literal["standing", "sitting", "supine"] | None = None


class BalanceTestIn(_In):
    """One balance test. ``unit`` defaults to the test's UCUM unit and must match it when given."""

    test: BalanceTestCode
    side: Literal["left", "right"] | None = Field(default=None, validate_default=True)
    vision: Literal["eyes-open", "eyes-closed"] | None = None
    surface: Literal["firm", "foam"] | None = None
    stance: Literal["comfortable", "feet-together", "semi-tandem", "tandem", "single-leg"] | None = None
    unit: str | None = Field(default=None, validate_default=True)
    value: Number

    @field_validator("side")
    @classmethod
    def _stance_leg(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("test") == "single-leg-stance":
            raise ValueError("single-leg-stance needs the stance leg: left or right")
        return value

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str | None, info: ValidationInfo) -> str | None:
        test = info.data.get("test")
        return value if test is None else _unit_for(codes.measure(test), value)

    @field_validator("value")
    @classmethod
    def _value(cls, value: float, info: ValidationInfo) -> float:
        test = info.data.get("test")
        if test is None:
            return value
        if test == "berg" and not value.is_integer():
            raise ValueError("the Berg Balance Scale total is a whole number")
        return _check_range(value, _plausible(test), codes.measure(test).label)


class RomIn(_In):
    """Goniometric range of motion.

    Knee and elbow extension: 0 is full extension, positive hyperextension, negative a lag.
    """

    joint: str
    motion: str
    side: Side
    mode: Literal["active", "passive"]
    degrees: Number

    @field_validator("joint")
    @classmethod
    def _joint(cls, value: str) -> str:
        if value not in codes.rom_joints():
            raise ValueError(f"unknown joint {value!r}; known: {', '.join(codes.rom_joints())}")
        return value

    @field_validator("motion")
    @classmethod
    def _motion(cls, value: str, info: ValidationInfo) -> str:
        joint = info.data.get("joint")
        if joint is not None and codes.rom_measure(joint, value) is None:
            known = ", ".join(codes.rom_motions(joint))
            raise ValueError(f"{value!r} is not a measured motion of the {joint}; known: {known}")
        return value

    @field_validator("degrees")
    @classmethod
    def _degrees(cls, value: float, info: ValidationInfo) -> float:
        joint, motion = info.data.get("joint"), info.data.get("motion")
        if joint is None or motion is None:
            return value
        measure = codes.ROM_MEASURES[(joint, motion)]
        return _check_range(value, _plausible(measure.key), measure.label)

    @property
    def measure(self) -> codes.Measure:
        return codes.ROM_MEASURES[(self.joint, self.motion)]


class StrengthIn(_In):
    """A manual muscle test: muscle group, side and MRC grade 0 to 5 with an optional ``+``/``-``."""

    muscle_group: str
    side: Side
    grade: str

    @field_validator("muscle_group")
    @classmethod
    def _muscle_group(cls, value: str) -> str:
        return _known_muscle_group(value)

    @field_validator("grade", mode="before")
    @classmethod
    def _grade(cls, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError('grade must be 0\u20135, optionally with + or - (e.g. 4, "3+", "4-")')
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f'{value} is not a grade: use whole grades with + or - (e.g. "3+")')
            value = int(value)
        text = str(value).strip().replace("\u2212", "-").replace("\u2013", "-")
        m = _GRADE.match(text)
        if m is None:
            raise ValueError(f'{text!r} is not a grade: use 0\u20135, optionally with + or - (e.g. "3+")')
        base, modifier = int(m.group(1)), m.group(2)
        if not 0 <= base <= 5:
            raise ValueError(f"{base} is outside 0\u20135 for muscle grade")
        if (modifier == "+" and not 1 <= base <= 4) or (modifier == "-" and not 2 <= base <= 5):
            raise ValueError(f"{text!r} is not a grade: + applies to grades 1\u20134, - to grades 2\u20135")
        return f"{base}{modifier}"

    @property
    def base_grade(self) -> int:
        return int(self.grade[0])

    @property
    def modifier(self) -> Literal["+", "-"] | None:
        tail = self.grade[1:]
        return "+" if tail == "+" else "-" if tail == "-" else None


OutcomeKey = Literal[
    "berg",
    "fugl-meyer-ue",
    "ten-metre-walk",
    "six-minute-walk",
    "five-times-sit-to-stand",
    "functional-gait-assessment",
    "arat",
    "modified-ashworth",
]


class OutcomeIn(_In):
    """One standard outcome measure: a number in the measure's unit, or a Modified Ashworth grade
    (``"0"``, ``"1"``, ``"1+"``, ``"2"``, ``"3"``, ``"4"``)."""

    measure: OutcomeKey
    value: float | str
    side: Literal["left", "right"] | None = None
    muscle_group: str | None = None

    @field_validator("muscle_group")
    @classmethod
    def _muscle_group(cls, value: str | None) -> str | None:
        return None if value is None else _known_muscle_group(value)

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any, info: ValidationInfo) -> Any:
        key = info.data.get("measure")
        if key is None:
            return value
        m = OUTCOME_MEASURES[key]
        if key == "modified-ashworth":
            text = str(value).strip() if not isinstance(value, bool) else ""
            if text not in ASHWORTH_GRADES:
                raise ValueError(f"{value!r} is not a Modified Ashworth grade ({', '.join(ASHWORTH_GRADES)})")
            return text
        if isinstance(value, bool | str) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        if m.whole and not float(value).is_integer():
            raise ValueError(f"the {m.label} total is a whole number")
        rng = PlausibleRange(m.low, m.high)
        return _check_range(float(value), rng, m.label)

    @model_validator(mode="after")
    def _where(self) -> OutcomeIn:
        m = self.definition
        if m.needs_side and self.side is None:
            raise ValueError(f"the {m.label} needs the side tested: left or right")
        if m.needs_muscle_group and self.muscle_group is None:
            raise ValueError(f"the {m.label} needs the muscle group tested")
        return self

    @property
    def definition(self) -> OutcomeMeasure:
        return OUTCOME_MEASURES[self.measure]


class GoalTargetIn(_In):
    """A measurable target: a measure key (``tug``, ``rom-knee-flexion``, ``mmt-grade`` ...) and its value."""

    measure: str
    side: Side | None = None
    muscle_group: str | None = Field(default=None, validate_default=True)
    unit: str | None = Field(default=None, validate_default=True)
    value: Number
    due_date: date | None = None

    @field_validator("measure")
    @classmethod
    def _measure(cls, value: str) -> str:
        if value not in codes.MEASURES:
            fixed = ", ".join(k for k in codes.MEASURES if not k.startswith("rom-"))
            raise ValueError(
                f"unknown measure {value!r}; use {fixed} or rom-<joint>-<motion> (e.g. rom-knee-flexion)"
            )
        return value

    @field_validator("muscle_group")
    @classmethod
    def _muscle_group(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("measure") == "mmt-grade":
                raise ValueError("a strength target needs the muscle group")
            return None
        return _known_muscle_group(value)

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str | None, info: ValidationInfo) -> str | None:
        key = info.data.get("measure")
        return value if key is None else _unit_for(codes.measure(key), value)

    @field_validator("value")
    @classmethod
    def _value(cls, value: float, info: ValidationInfo) -> float:
        key = info.data.get("measure")
        if key is None:
            return value
        return _check_range(value, _plausible(key), codes.measure(key).label)


class GoalIn(_In):
    """A goal in the patient's words, optionally with one measurable target."""

    text: Text
    target: GoalTargetIn | None = None


class EvaluationIn(_In):
    """One evaluation (initial or re-assessment) of one patient, recorded in one call.

    ``patient`` and ``encounter`` are resource ids; ``performer`` is a reference
    (``Practitioner/<id>`` or ``PractitionerRole/<id>``). ``effective`` is a FHIR dateTime with at
    least a full date; it is kept as sent. ``ageYears`` selects age-banded norms (single-leg stance).
    """

    patient: Annotated[str, Field(pattern=_FHIR_ID)]
    performer: (
        Annotated[str, Field(pattern=r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")] | None
    ) = None
    encounter: Annotated[str, Field(pattern=_FHIR_ID)] | None = None
    effective: str
    kind: Literal["initial", "reassessment"]
    age_years: Annotated[int, Field(ge=0, le=120)] | None = None
    referral_conditions: Annotated[list[ReferralConditionIn], Field(max_length=20)] = []
    history: Annotated[str, Field(min_length=1, max_length=20000)] | None = None
    pain: int | None = None
    posture: Annotated[list[PostureFindingIn], Field(max_length=100)] = []
    balance: Annotated[list[BalanceTestIn], Field(max_length=100)] = []
    rom: Annotated[list[RomIn], Field(max_length=200)] = []
    strength: Annotated[list[StrengthIn], Field(max_length=200)] = []
    concerns: Annotated[list[Text], Field(max_length=50)] = []
    goals: Annotated[list[GoalIn], Field(max_length=50)] = []
    outcomes: Annotated[list[OutcomeIn], Field(max_length=100)] = []

    @field_validator("effective")
    @classmethod
    def _effective(cls, value: str) -> str:
        return _fhir_date_time(value, need_day=True)

    @field_validator("pain", mode="before")
    @classmethod
    def _pain_is_whole(cls, value: Any) -> Any:
        if isinstance(value, bool | str) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("pain is a whole number on the 0\u201310 numeric rating scale")
        return value

    @field_validator("pain")
    @classmethod
    def _pain(cls, value: int | None) -> int | None:
        if value is not None:
            _check_range(value, _plausible("pain"), codes.measure("pain").label)
        return value

    @model_validator(mode="after")
    def _records_something(self) -> EvaluationIn:
        items = (
            self.referral_conditions,
            self.posture,
            self.balance,
            self.rom,
            self.strength,
            self.concerns,
            self.goals,
            self.outcomes,
        )
        if self.history is None and self.pain is None and not any(items):
            raise ValueError(
                "an evaluation records at least one finding"
                " (history, pain, tests, outcomes, concerns or goals)"
            )
        return self


# pydantic reports a defaulted field that failed validation by its Python name; the client knows the alias.
_ALIASES = {
    name: to_camel(name)
    for model in (
        ReferralConditionIn,
        PostureFindingIn,
        BalanceTestIn,
        RomIn,
        StrengthIn,
        GoalTargetIn,
        GoalIn,
        OutcomeIn,
    )
    for name in model.model_fields
    if "_" in name
} | {name: to_camel(name) for name in EvaluationIn.model_fields if "_" in name}


def error_pairs(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field path, message)`` for each problem, e.g. ``("rom[2].degrees", "400 is outside ...")``."""
    out = []
    for err in exc.errors():
        path = ""
        for part in err["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                name = _ALIASES.get(str(part), str(part))
                path += f".{name}" if path else name
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "missing":
            message = "required"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        out.append((path, message))
    return out


def invalid_evaluation(exc: ValidationError) -> InvalidResource:
    """The 400 OperationOutcome for a bad evaluation request: one issue per problem."""
    pairs = error_pairs(exc)
    issues = [
        Issue("invalid", f"{path}: {msg}" if path else msg, "error", [path] if path else [])
        for path, msg in pairs
    ]
    return InvalidResource(issues[0].diagnostics, issues=issues)


def parse_evaluation(data: Any) -> EvaluationIn:
    """Validate a request body (parsed JSON, or JSON text/bytes); raise :class:`InvalidResource` if bad."""
    try:
        if isinstance(data, str | bytes | bytearray):
            return EvaluationIn.model_validate_json(data)
        return EvaluationIn.model_validate(data)
    except ValidationError as exc:
        raise invalid_evaluation(exc) from None


# -- Event data in (docs/events.md): what the handlers decode and the mapper turns into Observations --------
class _EventIn(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Window(_EventIn):
    start: datetime
    end: datetime


class Component(_EventIn):
    code: str
    value: float
    unit: str


class Samples(_EventIn):
    """A downsampled waveform: value = origin + factor * datum (FHIR SampledData)."""

    period_ms: float = Field(alias="periodMs", gt=0)
    origin: float = 0.0
    factor: float = 1.0
    dimensions: int = Field(default=1, ge=1, le=64)
    unit: str = Field(max_length=32)
    data: str = Field(max_length=2_000_000)


class OnsetReference(_EventIn):
    """What an onset latency is timed against: a synergist channel's onset, or the movement cue."""

    kind: Literal["synergist", "cue"]
    channel: str | None = Field(default=None, max_length=200)
    muscle: str | None = Field(default=None, max_length=64)


class MetricComputed(_EventIn):
    """The data of ``device.metric-computed.v1`` (docs/events.md)."""

    patient: str
    device: str
    stream: str
    session: str | None = None
    channel: str | None = Field(default=None, min_length=1, max_length=200)
    muscle: str | None = Field(default=None, min_length=1, max_length=64)
    antagonist: str | None = Field(default=None, min_length=1, max_length=64)
    metric: str = Field(description="a code of the evaluation CodeSystem, e.g. emg-rms, sway-ellipse-area")
    window: Window
    observation: str | None = Field(
        default=None,
        pattern=r"^Observation/[A-Za-z0-9\-.]{1,64}$",
        description="the Observation the gateway names for this metric (absent in older events)",
    )
    value: float | None = None
    unit: str | None = None
    status: Literal["measured", "not-detected", "not-computable"] = "measured"
    reason: str | None = Field(default=None, max_length=1000)
    reference: OnsetReference | None = None
    components: list[Component] = []
    samples: Samples | None = None


class TrialResult(_EventIn):
    """One channel's (or pair's, or the whole stream's) part of a trial summary."""

    channel: str | None = Field(default=None, min_length=1, max_length=200)
    muscle: str | None = Field(default=None, min_length=1, max_length=64)
    antagonist: str | None = Field(default=None, min_length=1, max_length=64)
    value: float | None = None
    unit: str | None = Field(default=None, max_length=32)
    status: Literal["measured", "not-detected", "not-computable"] = "measured"
    reason: str | None = Field(default=None, max_length=1000)
    reference: OnsetReference | None = None
    components: list[Component] = Field(default=[], max_length=32)
    samples: Samples | None = None
    series: Samples | None = Field(default=None, description="the channel's 1 s window values")
    partial: bool = False


class WindowGap(_EventIn):
    index: int = Field(ge=0)
    reason: str = Field(max_length=1000)


class TrialWindows(_EventIn):
    period_ms: float = Field(alias="periodMs", gt=0)
    count: int = Field(ge=0)
    partial: int = Field(default=0, ge=0)
    gaps: list[WindowGap] = Field(default=[], max_length=100)
    gap_count: int = Field(default=0, alias="gapCount", ge=0)
    cut: bool = False


class TrialSummarized(_EventIn):
    """The data of ``device.trial-summarized.v1`` (docs/events.md): one metric of one trial (a stream
    binding's recording), every channel's whole-trial result with its window series."""

    patient: str
    device: str
    stream: str
    session: str | None = None
    stream_type: str | None = Field(default=None, alias="streamType")
    metric: str = Field(description="a code of the evaluation CodeSystem, e.g. emg-rms, sway-ellipse-area")
    unit: str | None = Field(default=None, max_length=32)
    trial: Window
    observation: str = Field(pattern=r"^Observation/[A-Za-z0-9\-.]{1,64}$")
    results: list[TrialResult] = Field(min_length=1, max_length=256)
    windows: TrialWindows | None = None
    partial: bool = False

    @property
    def observation_id(self) -> str:
        return self.observation.removeprefix("Observation/")


# Field names are the event's own (camelCase), as docs/events.md writes them.
class RomReached(_EventIn):
    valueDeg: float = Field(ge=0, le=360)
    method: Literal["goniometer", "inclinometer", "device"]
    motion: str | None = Field(default=None, max_length=100)
    observation: str = Field(pattern=r"^Observation/[A-Za-z0-9\-.]{1,64}$")

    @property
    def observation_id(self) -> str:
        return self.observation.removeprefix("Observation/")


class ExerciseOutcome(_EventIn):
    procedure: str
    activity: str
    pattern: str | None = None
    quality: int | None = None
    selfRating: int | None = None
    painBefore: int | None = None
    painAfter: int | None = None
    rom: RomReached | None = None
    start: str | None = None
    end: str | None = None
    sets: int | None = Field(default=None, ge=0, le=100)
    reps: list[int] = Field(default=[], max_length=100)
    deviceStreams: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default=[], max_length=32)


class SessionLogged(_EventIn):
    session: str  # Encounter/<id> (clinic) or the exercise's Procedure/<id> (home practice)
    encounter: str | None = None  # the clinic session's Encounter (absent in older events)
    patient: str
    setting: Literal["clinic", "home"] = "clinic"
    start: str | None = None
    end: str
    exercises: list[ExerciseOutcome] = []


class SymptomsRecorded(_EventIn):
    session: str
    patient: str
    recordedAt: str
    pain24h: int
    flare: bool


# -- The answer of POST /evaluations ----------------------------------------------------------------------
class EvaluationRecorded(BaseModel):
    """What was stored and what the plan service will be told."""

    evaluation: str = Field(
        description="The panel Observation, e.g. Observation/<id>", examples=["Observation/4f1c"]
    )
    kind: str = Field(description="initial | reassessment")
    event_type: str = Field(
        alias="eventType", description="evaluation.completed.v1 | evaluation.reassessed.v1"
    )
    members: list[str] = Field(description="The member Observations (hasMember), in request order")
    conditions: list[str] = Field(
        default=[], description="The referral diagnoses as Conditions (Condition/<id>), in request order"
    )
    deficits: list[dict[str, Any]] = Field(description="Deficits found against the normative values")
    goals: list[dict[str, Any]] = Field(description="The patient's goals with their measurable targets")

    model_config = {"populate_by_name": True}


# -- The answer of GET /evaluations/outcome-measures -------------------------------------------------------
class OutcomePoint(BaseModel):
    effective: str
    value: float = Field(
        description="In the measure's unit; for the Modified Ashworth Scale the grade's rank 0-5"
    )
    grade: str | None = Field(default=None, description="The Modified Ashworth grade as recorded (1+)")
    observation: str


class McidOut(BaseModel):
    value: float
    unit: str
    kind: Literal["MCID", "MDC95"]
    population: str
    source: str


class OutcomeTrend(BaseModel):
    """One measure (per side and muscle group) over time, and whether it changed beyond its MCID."""

    measure: str
    label: str
    code: dict[str, str]
    unit: str
    better: Literal["higher", "lower"]
    side: str | None
    muscle_group: str | None = Field(alias="muscleGroup")
    mcid: McidOut
    series: list[OutcomePoint]
    change: float | None = Field(description="latest minus the first (baseline); null with one value")
    verdict: str | None = Field(
        description="improved-beyond-mcid | improved-within-mcid | no-change | worse-within-mcid | "
        "worse-beyond-mcid; null with one value"
    )
    improved_beyond_mcid: bool = Field(alias="improvedBeyondMcid")

    model_config = {"populate_by_name": True}


class OutcomeTrends(BaseModel):
    patient: str
    measures: list[OutcomeTrend]
