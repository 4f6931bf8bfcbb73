"""Bodies of the plan domain API (``/plans``, ``/catalogue``): what a request carries in and an answer out."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.patterns import Dimension, MovementPattern
from relearn.plan.domain.progression import activity_rules
from relearn.plan.domain.rules import DEFAULT_RULES
from relearn.plan.domain.stages import CompetenceStage
from relearn.plan.domain.state import ActivityStatus, PlanState, PlanStatus, Side


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


Reason = Annotated[str, Field(min_length=1, max_length=2000, description="Why: recorded with the version")]


class ReasonIn(_Body):
    reason: Reason = "reviewed and activated"


class StatusIn(_Body):
    status: PlanStatus
    reason: Reason


class DischargeIn(_Body):
    """Discharge: the plan is completed and each goal closed as achieved or not-achieved."""

    reason: Reason = "discharged"
    achieved: dict[Annotated[str, Field(max_length=64)], bool] = Field(
        default={},
        max_length=200,
        description="goal id -> met, where the therapist decides; any other goal keeps its re-assessed "
        "verdict (achieved stays achieved, anything else becomes not-achieved)",
    )


class AddActivityIn(_Body):
    pattern: str = Field(description="Movement pattern code (GET /catalogue)", max_length=64)
    side: Side | None = None
    reason: Reason
    goals: list[str] = Field(default=[], description="Goal ids of the plan this exercise serves")


class RemoveIn(_Body):
    reason: Reason


class ActivityStatusIn(_Body):
    status: ActivityStatus
    reason: Reason


class DoseIn(_Body):
    sets: int | None = Field(default=None, ge=1, le=50)
    reps: int | None = Field(default=None, ge=1, le=1000)
    hold_s: float | None = Field(default=None, ge=0, le=600)
    rest_s: float | None = Field(default=None, ge=0, le=1800)
    frequency_per_week: int | None = Field(default=None, ge=1, le=21)
    load_kg: float | None = Field(default=None, ge=0, le=500)


class OverrideIn(_Body):
    """Set any of level (per dimension), competence stage and dose; the reason is recorded."""

    levels: dict[Dimension, int] | None = Field(default=None, description='e.g. {"joints": 1}')
    stage: CompetenceStage | None = None
    dose: DoseIn | None = None
    reason: Reason


class RulesIn(_Body):
    """A partial rules object (camelCase, as GET .../rules shows them); ``{}`` removes the override."""

    rules: dict[str, Any] = Field(
        examples=[{"mastery": {"consecutiveSessions": 2}, "advance": {"strategy": "round-robin"}}]
    )
    reason: Reason = "progression rules edited"


class WaiverIn(_Body):
    """One criterion a therapist waives for this plan (e.g. EMG onset when no synergist electrode is used)."""

    pattern: str | None = Field(default=None, max_length=64, description="None: every pattern of the plan")
    criterion: str = Field(
        min_length=1, max_length=64, description="criterion key: rom, emg-onset-latency, co-contraction, ..."
    )
    muscle: str | None = Field(
        default=None, max_length=64, description="None: the criterion for every muscle"
    )
    reason: Reason


class WaiversIn(_Body):
    """The plan's waivers, replaced whole (``[]`` removes them); every decision repeats the ones it used."""

    waivers: list[WaiverIn] = Field(max_length=50)
    reason: Reason = "criterion waivers changed"


class CriterionMusclesIn(_Body):
    muscle: str | None = Field(default=None, max_length=64)
    reference_muscle: str | None = Field(default=None, max_length=64)
    antagonist: str | None = Field(default=None, max_length=64)


class MusclesIn(_Body):
    """Which muscles this exercise's EMG criteria judge, e.g. ``{"emg-onset-latency": {"muscle":
    "vastus-medialis", "referenceMuscle": "rectus-femoris"}}``; ``{}`` goes back to the pattern's."""

    criteria: dict[Annotated[str, Field(max_length=64)], CriterionMusclesIn] = Field(max_length=10)
    reason: Reason


class TaskAnswerIn(_Body):
    reason: Reason


class PlanView(BaseModel):
    """A plan: where an EHR reads it (FHIR references) and its full state (activities, goals, history)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: str
    patient: str
    status: str
    version: int = Field(description="= the CarePlan's meta.versionId")
    care_plan: str = Field(description="CarePlan/<id>")
    goals: list[str] = Field(description="Goal/<id> of the plan")
    service_requests: list[str] = Field(description="ServiceRequest/<id>, one per exercise")
    state: dict[str, Any] = Field(description="The plan state: activities, goals, rule overrides, history")

    @classmethod
    def of(cls, plan: PlanState) -> PlanView:
        return cls(
            id=plan.id,
            patient=plan.patient,
            status=plan.status,
            version=plan.version,
            care_plan=plan.reference,
            goals=[f"Goal/{g.id}" for g in plan.goals],
            service_requests=[f"ServiceRequest/{a.id}" for a in plan.activities],
            state=plan.model_dump(mode="json", by_alias=True),
        )


class PlanSummary(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: str
    patient: str
    status: str
    version: int
    care_plan: str
    evaluation: str | None


class RulesView(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    plan: dict[str, Any] = Field(description="The plan-wide override")
    patterns: dict[str, dict[str, Any]] = Field(description="Per-pattern overrides")
    defaults: dict[str, Any] = Field(description="The service defaults (from the brief)")
    effective: dict[str, dict[str, Any]] = Field(
        description="The rules in force for each pattern of the plan"
    )

    @classmethod
    def of(cls, plan: PlanState, catalogue: Catalogue) -> RulesView:
        effective = {}
        for code in dict.fromkeys(a.pattern for a in plan.activities):
            pattern = catalogue.find(code)
            if pattern is not None:
                effective[code] = activity_rules(plan, pattern).model_dump(mode="json", by_alias=True)
        return cls(
            plan=dict(plan.rule_overrides.plan),
            patterns={k: dict(v) for k, v in plan.rule_overrides.patterns.items()},
            defaults=DEFAULT_RULES.model_dump(mode="json", by_alias=True),
            effective=effective,
        )


class ProposalView(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: str
    evaluation: str
    status: str
    applied_version: int | None
    proposal: dict[str, Any]


def catalogue_view(catalogue: Catalogue) -> dict[str, Any]:
    """``GET /catalogue``: the version, the metrics the devices produce, and one line per pattern."""
    return {
        "version": catalogue.version,
        "producedMetrics": list(catalogue.produced_metrics),
        "patterns": [
            {
                "code": p.code,
                "name": p.name,
                "region": p.region,
                "sided": p.sided,
                "startingForm": p.starting_form,
            }
            for p in catalogue.patterns
        ],
    }


def pattern_view(pattern: MovementPattern) -> dict[str, Any]:
    """``GET /catalogue/{code}``: the pattern, and its measured criteria as the engine judges them (metric,
    limits, muscle(s), who measures it)."""
    body = pattern.model_dump(mode="json", by_alias=True)
    body["criteria"] = [
        {
            "metric": c.kind,
            "label": c.label,
            "min": c.minimum,
            "max": c.maximum,
            "unit": c.unit,
            "muscle": c.muscle,
            "reference": None
            if c.reference_kind is None
            else {"kind": c.reference_kind, "muscle": c.reference_muscle},
            "antagonist": c.antagonist,
            "source": c.source,
        }
        for c in pattern.mastery.checks()
    ]
    return body
