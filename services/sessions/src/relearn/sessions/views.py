"""What the sessions API answers (camelCase JSON), built from the domain's states."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from relearn.sessions.adherence import WeekAdherence
from relearn.sessions.recording import AdherenceReport
from relearn.sessions.schemas import Assistance, RomMethod, Setting
from relearn.sessions.workflow import (
    PainZone,
    RecordedExercise,
    RecordedRom,
    SessionState,
    SessionStatus,
    SessionSummary,
    SymptomRecord,
)


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class RomView(_View):
    value_deg: float
    method: RomMethod
    motion: str | None
    observation: str = Field(description="the Observation the evaluation service stores: Observation/<id>")

    @classmethod
    def of(cls, r: RecordedRom) -> RomView:
        return cls(value_deg=r.value_deg, method=r.method, motion=r.motion, observation=r.observation)


class DualTaskTrialView(_View):
    measure: str
    single: float
    dual: float
    unit: str | None
    lower_is_better: bool


class ExerciseView(_View):
    procedure: str = Field(description="the exercise as FHIR: Procedure/<id>")
    activity: str
    pattern: str
    level: dict[str, int] = Field(description="progression level used, per dimension")
    sets: int
    reps: list[int]
    target_reps: int | None
    target_met: bool | None = Field(description="every set reached the target; null without a target")
    load_kg: float
    assistance: Assistance
    cues: list[str]
    quality: int | None
    self_rating: int | None
    difficulty: int | None
    pain_before: int | None
    pain_after: int
    with_feedback: bool
    dual_task: bool
    dual_task_trial: DualTaskTrialView | None
    dual_task_cost_pct: float | None = Field(
        description="computed from dualTaskTrial: 100*(single-dual)/|single|, sign flipped when lower is "
        "better; positive = worse under the dual task"
    )
    retention_attempt: bool = Field(description="a feedback-free retention attempt")
    rom: RomView | None = Field(description="active range of motion reached in the exercise")
    device_streams: list[str]
    start: datetime | None
    end: datetime | None
    notes: str | None

    @classmethod
    def of(cls, e: RecordedExercise) -> ExerciseView:
        return cls(
            procedure=f"Procedure/{e.procedure_id}",
            activity=e.activity,
            pattern=e.pattern,
            level=dict(e.level),
            sets=e.sets,
            reps=list(e.reps),
            target_reps=e.target_reps,
            target_met=e.target_met,
            load_kg=e.load_kg,
            assistance=e.assistance,
            cues=list(e.cues),
            quality=e.quality,
            self_rating=e.self_rating,
            difficulty=e.difficulty,
            pain_before=e.pain_before,
            pain_after=e.pain_after,
            with_feedback=e.with_feedback,
            dual_task=e.dual_task,
            dual_task_trial=DualTaskTrialView.model_validate(e.dual_task_trial.model_dump())
            if e.dual_task_trial is not None
            else None,
            dual_task_cost_pct=e.dual_task_cost_pct,
            retention_attempt=e.retention_attempt,
            rom=RomView.of(e.rom) if e.rom is not None else None,
            device_streams=list(e.device_streams),
            start=e.start,
            end=e.end,
            notes=e.notes,
        )


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
    encounter: str = Field(description="the session as FHIR: Encounter/<id>")
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
    exercises: list[ExerciseView]
    summary: SummaryView | None = Field(description="computed on close")
    symptoms: SymptomsView | None = Field(description="the 24-hour response (latest correction)")
    symptom_history: list[SymptomsView] = Field(description="records since corrected, oldest first")

    @classmethod
    def of(cls, s: SessionState) -> SessionView:
        return cls(
            id=s.id,
            encounter=s.reference,
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
            exercises=[ExerciseView.of(e) for e in s.exercises],
            summary=SummaryView.of(s.summary) if s.summary else None,
            symptoms=SymptomsView.of(s.symptoms) if s.symptoms else None,
            symptom_history=[SymptomsView.of(h) for h in s.symptom_history],
        )


class PlanAdherenceView(_View):
    care_plan: str
    status: str
    weeks: list[WeekAdherence]


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
    weeks: list[WeekAdherence] = Field(description="all the patient's plans together")
    plans: list[PlanAdherenceView] = Field(description="active plans and plans with sessions in the range")

    @classmethod
    def of(cls, r: AdherenceReport) -> AdherenceView:
        return cls(
            patient=r.patient,
            first=r.first,
            last=r.last,
            weeks=r.weeks,
            plans=[PlanAdherenceView(care_plan=p.care_plan, status=p.status, weeks=p.weeks) for p in r.plans],
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
