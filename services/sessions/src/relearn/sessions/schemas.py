"""Bodies of the sessions API: what clients send (camelCase, unknown fields refused) and what it answers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
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
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from relearn.sessions.domain.adherence import AdherenceReport, WeekAdherence
from relearn.sessions.domain.codes import CUES, Assistance, RomMethod, Setting
from relearn.sessions.domain.session import (
    ClientData,
    DualTaskTrial,
    PainZone,
    RecordedExercise,
    SessionState,
    SessionStatus,
    SessionSummary,
    SymptomRecord,
)
from relearn.shared.fhir import BUSINESS_RULE, ID_PATTERN, invalid_request


# -- what clients send --------------------------------------------------------------------------------------
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


class _Request(ClientData):
    """A body a client sends to a sessions route (unknown fields refused, like every ClientData)."""


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
    """A broken rule between fields: the request is well formed but cannot be accepted (a 422, not a 400)."""
    return PydanticCustomError(BUSINESS_RULE, message)


class RomMeasured(_Request):
    """Active range of motion reached in the exercise, as the therapist measured it."""

    value_deg: float = Field(ge=0, le=360, description="degrees, 0-360")
    method: RomMethod = Field(description="goniometer, inclinometer or a device (motion sensor)")
    motion: str | None = Field(
        default=None, min_length=1, max_length=100, description="the motion measured, e.g. knee-flexion"
    )


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
    # Retired: clients used to send it, the service now derives it; refused with what to send instead.
    dual_task_cost_pct: SkipJsonSchema[Any] = Field(default=None, exclude=True)

    @field_validator("dual_task_cost_pct")
    @classmethod
    def _cost_is_derived(cls, v: Any) -> Any:
        raise _rule(
            "is computed by the service: send dualTaskTrial {measure, single, dual, unit?, lowerIsBetter} "
            "(the paired single- and dual-task measurements) instead"
        )

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


def parse(model: type[M], payload: Mapping[str, Any] | Any, prefix: str = "") -> M:
    """Validate ``payload`` as ``model`` or raise the shared pipeline's error naming each bad field."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request(exc.errors(include_url=False), prefix) from None


# -- what the API answers, built from the domain's states ---------------------------------------------------
class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class SummaryView(_View):
    exercises: int
    sets: int
    reps: int
    targets_met: int
    targets_missed: int
    pain_before_max: int | None
    pain_after_max: int | None
    pain_increase_max: int | None
    pain_zone: PainZone | None = Field(description="0-3 safe, 4-5 acceptable, >5 not acceptable")
    mean_quality: float | None
    duration_minutes: float

    @classmethod
    def of(cls, s: SessionSummary) -> SummaryView:
        return cls.model_validate(s.model_dump())


class SymptomsView(_View):
    recorded_at: datetime
    pain24h: int = Field(alias="pain24h")  # to_camel would make it "pain24H"
    flare: bool
    notes: str | None
    amendment: int = Field(description="0 for the first record, then 1, 2, ... per correction")

    @classmethod
    def of(cls, s: SymptomRecord) -> SymptomsView:
        return cls.model_validate(s.model_dump())


_SESSION_EXAMPLE: dict[str, Any] = {
    "id": "0b6f6a52-3f0e-4a51-9a7e-6f1b1d1f2c11",
    "encounter": "Encounter/0b6f6a52-3f0e-4a51-9a7e-6f1b1d1f2c11",
    "record": "Encounter/0b6f6a52-3f0e-4a51-9a7e-6f1b1d1f2c11",
    "patient": "p1",
    "carePlan": "CarePlan/cp1",
    "planVersion": 2,
    "setting": "clinic",
    "status": "finished",
    "practitioner": "Practitioner/t1",
    "reasonReference": [],
    "start": "2026-01-05T09:00:00Z",
    "end": "2026-01-05T09:45:00Z",
    "notes": None,
    "exercises": [
        {
            "procedure": "Procedure/5d2c1e0f-6a1b-5c3d-9e8f-0a1b2c3d4e5f",
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
            "targetMet": False,
            "loadKg": 2.0,
            "assistance": "minimal",
            "cues": ["tactile-cueing", "emg-biofeedback"],
            "quality": 3,
            "selfRating": 2,
            "difficulty": None,
            "painBefore": 2,
            "painAfter": 3,
            "withFeedback": True,
            "dualTask": False,
            "dualTaskTrial": None,
            "dualTaskCostPct": None,
            "retentionAttempt": False,
            "rom": {
                "valueDeg": 85.0,
                "method": "goniometer",
                "motion": "knee-extension",
                "observation": "Observation/9a4b7c1d-2e3f-5a6b-8c7d-0e1f2a3b4c5d",
            },
            "deviceStreams": ["emg-7f3a"],
            "start": None,
            "end": None,
            "notes": None,
        }
    ],
    "summary": {
        "exercises": 1,
        "sets": 3,
        "reps": 28,
        "targetsMet": 0,
        "targetsMissed": 1,
        "painBeforeMax": 2,
        "painAfterMax": 3,
        "painIncreaseMax": 1,
        "painZone": "safe",
        "meanQuality": 3.0,
        "durationMinutes": 45.0,
    },
    "symptoms": None,
    "symptomHistory": [],
}


class SessionView(_View):
    """A therapy session or home practice with everything recorded in it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SESSION_EXAMPLE]})

    id: str
    encounter: str | None = Field(description="the clinic session's Encounter/<id>; null for home practice")
    record: str = Field(
        description="the FHIR resource that records the session: its Encounter (clinic), or the Procedure "
        "of its one exercise (home practice is patient-reported exercise, not a visit)"
    )
    patient: str
    care_plan: str
    plan_version: int = Field(description="CarePlan versionId the session started against")
    setting: Setting
    status: SessionStatus
    practitioner: str | None
    reason_reference: list[str]
    start: datetime
    end: datetime | None
    notes: str | None
    exercises: list[RecordedExercise] = Field(description="the exercises recorded, in order")
    summary: SummaryView | None = Field(description="computed on close")
    symptoms: SymptomsView | None = Field(description="the 24-hour response (latest correction)")
    symptom_history: list[SymptomsView] = Field(description="records since corrected, oldest first")

    @classmethod
    def of(cls, s: SessionState) -> SessionView:
        return cls(
            id=s.id,
            encounter=s.encounter,
            record=s.reference,
            patient=s.patient,
            care_plan=s.care_plan,
            plan_version=s.plan_version,
            setting=s.setting,
            status=s.status,
            practitioner=s.practitioner,
            reason_reference=list(s.reasons),
            start=s.start,
            end=s.end,
            notes=s.notes,
            exercises=list(s.exercises),
            summary=SummaryView.of(s.summary) if s.summary else None,
            symptoms=SymptomsView.of(s.symptoms) if s.symptoms else None,
            symptom_history=[SymptomsView.of(h) for h in s.symptom_history],
        )


class PlanAdherenceView(_View):
    care_plan: str
    status: str
    weeks: list[WeekAdherence]


class RpmRuleView(_View):
    """The remote-monitoring rule in force (settings SESSIONS_RPM_MIN_DAYS, SESSIONS_RPM_PERIOD_DAYS)."""

    min_days: int = Field(description="days with device data a period needs (default 16)")
    period_days: int = Field(description="the period's length in days (default 30)")
    source: str = Field(description="where the rule comes from (default: CMS, CPT 99454)")


class DeviceDaysPeriodView(_View):
    start: date
    end: date
    days: int = Field(description="distinct days with device data, in the patient's time zone")
    dates: list[date]
    met: bool = Field(description="days >= minDays")


class RemoteMonitoringView(_View):
    rule: RpmRuleView
    time_zone: str | None = Field(
        description="the IANA time zone days were counted in (`tz`); null: each session's own recorded offset"
    )
    periods: list[DeviceDaysPeriodView] = Field(description="the last ends on `to`; oldest first")


class AdherenceView(_View):
    """Exercise bouts done against those prescribed, per ISO week: over all plans and per plan."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "patient": "p1",
                    "from": "2026-01-05",
                    "to": "2026-01-18",
                    "weeks": [
                        {
                            "week": "2026-W02",
                            "prescribed": 5,
                            "done": 4,
                            "clinic": 2,
                            "home": 1,
                            "percent": 80.0,
                        },
                        {
                            "week": "2026-W03",
                            "prescribed": 5,
                            "done": 0,
                            "clinic": 0,
                            "home": 0,
                            "percent": 0.0,
                        },
                    ],
                    "plans": [
                        {
                            "carePlan": "CarePlan/cp1",
                            "status": "active",
                            "weeks": [
                                {
                                    "week": "2026-W02",
                                    "prescribed": 5,
                                    "done": 4,
                                    "clinic": 2,
                                    "home": 1,
                                    "percent": 80.0,
                                },
                                {
                                    "week": "2026-W03",
                                    "prescribed": 5,
                                    "done": 0,
                                    "clinic": 0,
                                    "home": 0,
                                    "percent": 0.0,
                                },
                            ],
                        }
                    ],
                }
            ]
        }
    )

    patient: str
    first: date = Field(alias="from")
    last: date = Field(alias="to")
    weeks: list[WeekAdherence] = Field(
        description="all the patient's plans together; the week holding `to` counts only its days up to `to`"
    )
    plans: list[PlanAdherenceView] = Field(description="active plans and plans with sessions in the range")
    remote_monitoring: RemoteMonitoringView | None = Field(
        default=None, description="device data days per period against the remote-monitoring rule"
    )

    @classmethod
    def of(cls, r: AdherenceReport) -> AdherenceView:
        rm = r.remote_monitoring
        return cls(
            patient=r.patient,
            first=r.first,
            last=r.last,
            weeks=r.weeks,
            plans=[PlanAdherenceView(care_plan=p.care_plan, status=p.status, weeks=p.weeks) for p in r.plans],
            remote_monitoring=None
            if rm is None
            else RemoteMonitoringView(
                rule=RpmRuleView(
                    min_days=rm.rule.min_days, period_days=rm.rule.period_days, source=rm.rule.source
                ),
                time_zone=rm.time_zone,
                periods=[DeviceDaysPeriodView.model_validate(p.model_dump()) for p in rm.periods],
            ),
        )


class Issue(BaseModel):
    severity: str
    code: str
    diagnostics: str
    expression: list[str] | None = None


class OperationOutcome(BaseModel):
    """Every error: a FHIR OperationOutcome (``application/fhir+json``); ``expression`` names the field."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "error",
                            "code": "invalid",
                            "diagnostics": "painAfter: Input should be less than or equal to 10",
                            "expression": ["painAfter"],
                        }
                    ],
                }
            ]
        }
    )

    resource_type: Literal["OperationOutcome"] = Field(alias="resourceType")
    issue: list[Issue]
