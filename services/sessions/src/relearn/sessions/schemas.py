"""What clients send: session start, exercises performed, close, 24-hour symptoms, home practice.

JSON field names are camelCase (``painAfter``, ``targetReps``); unknown fields are refused so a typo
is an error rather than a silently lost value. :func:`parse` turns pydantic's errors into an
:class:`InvalidResource` whose issues name the field path (``exercises[0].painAfter``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from relearn.shared.fhir.errors import InvalidResource, Issue
from relearn.shared.fhir.validation import ID_PATTERN

Setting = Literal["clinic", "home"]
Assistance = Literal["none", "minimal", "moderate", "maximal"]
RomMethod = Literal["goniometer", "inclinometer", "device"]

# Error type of a rule between fields (retention with feedback, a trial without a dual task, a
# client-typed cost): the request is well formed but cannot be accepted, so it is a 422, not a 400.
RULE_ERROR = "business-rule"

# Fields clients used to send and the service now derives: refused with what to send instead.
RETIRED_FIELDS: dict[str, str] = {
    "dualTaskCostPct": (
        "is computed by the service: send dualTaskTrial {measure, single, dual, unit?, lowerIsBetter} "
        "(the paired single- and dual-task measurements) instead"
    ),
}

# The progression dimensions of the brief (joints, motion, load bearing, proprioception, resistance, tempo).
DIMENSIONS: tuple[str, ...] = ("joints", "motion", "loadBearing", "proprioception", "resistance", "tempo")

# Cues, techniques and apparatus (local CodeSystem https://relearn.health/fhir/CodeSystem/cue-technique).
# The seed names them: motion and task modeling, pressure biofeedback, one-to-one instruction, taping and
# bracing, tactile cueing, audiovisual aids, imagery, dumbbells, EMG, balance boards.
CUES: dict[str, str] = {
    "tactile-cueing": "Tactile cueing",
    "verbal-cueing": "Verbal cueing",
    "visual-cueing": "Visual cueing",
    "mirror": "Mirror feedback",
    "task-modeling": "Motion and task modeling",
    "one-to-one-instruction": "One-to-one instruction",
    "audiovisual-aids": "Audiovisual aids",
    "pressure-biofeedback": "Pressure biofeedback",
    "emg-biofeedback": "EMG biofeedback",
    "imagery": "Motor imagery",
    "taping": "Taping",
    "bracing": "Bracing",
    "balance-board": "Balance board",
    "unstable-surface": "Unstable surface (foam, cushion)",
    "free-weights": "Free weights (dumbbells)",
    "resistance-band": "Elastic resistance band",
    "metronome": "Metronome pacing",
    "manual-assistance": "Manual assistance",
    "mechanical-assistance": "Mechanical assistance (sling, pulley, suspension)",
}


def _known_cue(value: str) -> str:
    if value not in CUES:
        raise ValueError(f"'{value}' is not a known cue or technique (one of: {', '.join(CUES)})")
    return value


def _fhir_id(value: str) -> str:
    if not ID_PATTERN.match(value):
        raise ValueError("must be a FHIR id (1-64 letters, digits, '-' or '.')")
    return value


def _reference_to(*types: str) -> Any:
    """A FHIR-relative reference to one of ``types``; the bare id is accepted when there is one type."""

    def check(value: str) -> str:
        rtype, _, rid = value.partition("/")
        if not rid and len(types) == 1:
            rtype, rid = types[0], value
        if rtype not in types or not ID_PATTERN.match(rid):
            raise ValueError(f"must be a reference to {' or '.join(types)} ('{types[0]}/<id>')")
        return f"{rtype}/{rid}"

    return AfterValidator(check)


def _patient_id(value: str) -> str:
    return _fhir_id(value.removeprefix("Patient/"))


FhirId = Annotated[str, AfterValidator(_fhir_id)]
PatientId = Annotated[str, AfterValidator(_patient_id)]
CueCode = Annotated[str, AfterValidator(_known_cue)]
CarePlanRef = Annotated[str, _reference_to("CarePlan")]
PractitionerRef = Annotated[str, _reference_to("Practitioner", "PractitionerRole")]
ReasonRef = Annotated[str, _reference_to("Condition", "Observation", "Procedure")]
Pain = Annotated[int, Field(ge=0, le=10, description="numeric rating scale 0-10")]
Rating = Annotated[int, Field(ge=0, le=4)]
Notes = Annotated[str, Field(min_length=1, max_length=4000)]


class _Request(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
    )


class LevelUsed(_Request):
    """The progression level actually used per dimension; one left out is the plan's current level."""

    joints: Annotated[int, Field(ge=0, le=20)] | None = None
    motion: Annotated[int, Field(ge=0, le=20)] | None = None
    load_bearing: Annotated[int, Field(ge=0, le=20)] | None = None
    proprioception: Annotated[int, Field(ge=0, le=20)] | None = None
    resistance: Annotated[int, Field(ge=0, le=20)] | None = None
    tempo: Annotated[int, Field(ge=0, le=20)] | None = None

    def given(self) -> dict[str, int]:
        """The dimensions the client stated, keyed by their camelCase names."""
        return {k: v for k, v in self.model_dump(by_alias=True).items() if v is not None}


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


class _SetsAndReps(_Request):
    sets: int = Field(ge=1, le=50)
    reps: list[Annotated[int, Field(ge=0, le=1000)]] = Field(
        min_length=1, max_length=50, description="repetitions done in each set, in order"
    )

    @field_validator("reps")
    @classmethod
    def _one_count_per_set(cls, reps: list[int], info: ValidationInfo) -> list[int]:
        sets = info.data.get("sets")
        if sets is not None and len(reps) != sets:
            raise ValueError(
                f"gives {len(reps)} count(s) but sets is {sets}: give one repetition count per set"
            )
        return reps

    @field_validator("end", check_fields=False)
    @classmethod
    def _end_after_start(cls, v: AwareDatetime | None, info: ValidationInfo) -> AwareDatetime | None:
        start = info.data.get("start")
        if v is not None and start is not None and v < start:
            raise ValueError("must not be before start")
        return v


class SessionStart(_Request):
    """Start a therapy session (clinic) or a home session with several exercises."""

    patient: PatientId
    care_plan: CarePlanRef
    setting: Setting = "clinic"
    practitioner: PractitionerRef | None = None
    start: AwareDatetime | None = Field(default=None, description="defaults to now")
    reason_reference: list[ReasonRef] = Field(default_factory=list, max_length=20)
    notes: Notes | None = None


def _rule(message: str) -> PydanticCustomError:
    return PydanticCustomError(RULE_ERROR, message)


class RomMeasured(_Request):
    """Active range of motion reached in the exercise, as the therapist measured it."""

    value_deg: float = Field(ge=0, le=360, description="degrees, 0-360")
    method: RomMethod = Field(description="goniometer, inclinometer or a device (motion sensor)")
    motion: str | None = Field(
        default=None, min_length=1, max_length=100, description="the motion measured, e.g. knee-flexion"
    )


class DualTaskTrial(_Request):
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


class ExercisePerformed(_SetsAndReps):
    """One exercise performed against a plan activity, as the therapist records it."""

    activity: FhirId = Field(description="the plan activity id (CarePlan.activity / ServiceRequest id)")
    target_reps: int | None = Field(default=None, ge=1, le=1000, description="defaults to the plan's dose")
    load_kg: float = Field(default=0.0, ge=0, le=500)
    assistance: Assistance
    cues: Annotated[list[CueCode], AfterValidator(_unique)] = Field(default_factory=list, max_length=30)
    level: LevelUsed = Field(default_factory=LevelUsed)
    quality: Rating = Field(description="movement quality rated by the therapist, 0 (poor) to 4 (correct)")
    self_rating: Rating | None = Field(default=None, description="the patient's own rating, same scale")
    pain_before: Pain
    pain_after: Pain
    with_feedback: bool = Field(description="performed with external feedback (cues, biofeedback, mirror)")
    dual_task: bool = False
    retention_attempt: bool = Field(
        default=False, description="a feedback-free retention attempt (the therapist marks it)"
    )
    dual_task_trial: DualTaskTrial | None = Field(
        default=None, description="paired single/dual measurements; needs dualTask true"
    )
    rom: RomMeasured | None = Field(default=None, description="active range of motion reached")
    device_streams: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=20
    )
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    notes: Notes | None = None

    @field_validator("retention_attempt")
    @classmethod
    def _retention_is_feedback_free(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("with_feedback"):
            raise _rule("a retention attempt is feedback-free: it cannot be recorded with withFeedback true")
        return v

    @field_validator("dual_task_trial")
    @classmethod
    def _trial_needs_dual_task(cls, v: DualTaskTrial | None, info: ValidationInfo) -> DualTaskTrial | None:
        if v is not None and not info.data.get("dual_task", False):
            raise _rule("a dual-task trial is only recorded when dualTask is true")
        return v


class ExerciseBatch(_Request):
    """Several exercises recorded at once (an app syncing after the session): all are kept or none."""

    exercises: list[ExercisePerformed] = Field(min_length=1, max_length=50)


class SessionClose(_Request):
    end: AwareDatetime | None = Field(default=None, description="defaults to now")
    notes: Notes | None = None


class SymptomResponse(_Request):
    """The 24-hour symptom response to a session (or a correction of it)."""

    pain24h: Pain = Field(alias="pain24h")  # to_camel would make it "pain24H"
    flare: bool = Field(description="symptoms flared and had not settled by the next day")
    notes: Notes | None = None
    recorded_at: AwareDatetime | None = Field(default=None, description="defaults to now")


class HomePractice(_SetsAndReps):
    """Home practice logged by the patient's app: one exercise, fewer fields, closed at once."""

    patient: PatientId
    care_plan: CarePlanRef
    activity: FhirId
    load_kg: float | None = Field(default=None, ge=0, le=500, description="defaults to the plan's dose")
    assistance: Assistance = "none"
    pain_before: Pain | None = None
    pain_after: Pain
    difficulty: Rating | None = Field(
        default=None, description="perceived difficulty, 0 very easy to 4 very hard"
    )
    self_rating: Rating | None = None
    with_feedback: bool = Field(
        default=False, description="the app gave live feedback (e.g. EMG biofeedback)"
    )
    device_streams: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=20
    )
    start: AwareDatetime | None = Field(default=None, description="defaults to now")
    end: AwareDatetime | None = None
    notes: Notes | None = None


M = TypeVar("M", bound=BaseModel)


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """``("exercises", 0, "painAfter")`` -> ``exercises[0].painAfter`` (pydantic's loc as a field path)."""
    path = prefix
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
        else:
            path += f".{item}" if path else str(item)
    return path


def invalid_errors(errors: Iterable[Mapping[str, Any]], prefix: str = "") -> InvalidResource:
    """One issue per pydantic error dict, each naming its field path and saying what is wrong.

    Malformed or out-of-range values are ``invalid`` (400); a rule between fields or a retired field
    (:data:`RETIRED_FIELDS`) is ``business-rule`` and makes the answer a 422.
    """
    issues: list[Issue] = []
    rule_broken = False
    for err in errors:
        loc = tuple(err["loc"])
        path = field_path(loc, prefix) or "(body)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        code = "invalid"
        if err["type"] == "extra_forbidden" and loc and loc[-1] in RETIRED_FIELDS:
            msg, code = RETIRED_FIELDS[str(loc[-1])], "business-rule"
        elif err["type"] == RULE_ERROR:
            code = "business-rule"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known field"
        elif err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "json_invalid":
            path = "(body)"
            msg = f"is not valid JSON ({(err.get('ctx') or {}).get('error', 'decode error')})"
        rule_broken = rule_broken or code == "business-rule"
        issues.append(Issue(code, f"{path}: {msg}", "error", [path]))
    if not issues:
        issues.append(Issue("invalid", "(body): invalid request", "error", ["(body)"]))
    # A broken rule makes the whole request a 422 (every issue is still listed).
    return InvalidResource(issues[0].diagnostics, issues=issues, status_code=422 if rule_broken else None)


def invalid_request(exc: ValidationError, prefix: str = "") -> InvalidResource:
    """One ``invalid`` issue per pydantic error, each naming its field path and saying what is wrong."""
    return invalid_errors(exc.errors(include_url=False), prefix)


def parse(model: type[M], payload: Mapping[str, Any] | Any, prefix: str = "") -> M:
    """Validate ``payload`` as ``model`` or raise :class:`InvalidResource` naming each bad field."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request(exc, prefix) from None
