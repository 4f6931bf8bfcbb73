"""The plan domain API (``/plans``, ``/catalogue``): review, activate and steer plans; edit their rules.

Writes need ``CarePlan.write`` from a ``user/`` or ``system/`` scope; reads need ``CarePlan.read``, and a
``patient/`` token reads only its own patient's plans (another plan is 404). Every change is one transaction:
the plan row, the CarePlan version(s) and their events, or nothing (bad input is an OperationOutcome naming
the field).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from sqlmodel import Session

from relearn.plan import persistence
from relearn.plan.catalogue import Catalogue
from relearn.plan.drafting import apply_proposal
from relearn.plan.editing import (
    activate,
    add_activity,
    override,
    remove_activity,
    resolve_task,
    set_activity_muscles,
    set_activity_status,
    set_rule_overrides,
    set_status,
    set_waivers,
)
from relearn.plan.ids import stable_id
from relearn.plan.patterns import Dimension, MovementPattern
from relearn.plan.persistence import PlanRecord
from relearn.plan.progression import Outcome, activity_rules
from relearn.plan.rules import DEFAULT_RULES, ProgressionRules, RuleError, canonical_patch
from relearn.plan.stages import CompetenceStage
from relearn.plan.state import (
    ActivityStatus,
    CriterionMuscles,
    PlanError,
    PlanState,
    PlanStatus,
    Side,
    Waiver,
)
from relearn.plan.writer import PlanWriter
from relearn.shared.auth.dependency import PrincipalDep
from relearn.shared.auth.principal import Principal
from relearn.shared.deps import SessionDep
from relearn.shared.fhir.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    UnprocessableEntity,
    validation_issues,
)

PlanId = Annotated[str, Path(description="The CarePlan id", max_length=64)]
ActivityId = Annotated[str, Path(description="The activity id (= its ServiceRequest id)", max_length=64)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "OperationOutcome naming each invalid field"},
    401: {"description": "No or invalid bearer token"},
    403: {"description": "Scopes do not allow CarePlan write (patient tokens never write)"},
    404: {"description": "No such plan (or not this patient's)"},
    409: {"description": "The plan's status does not allow it (e.g. another plan is active)"},
    422: {"description": "A change the plan cannot take (unknown activity, level off the ladder ...)"},
}


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


Reason = Annotated[str, Field(min_length=1, max_length=2000, description="Why: recorded with the version")]


class ReasonIn(_Body):
    reason: Reason = "reviewed and activated"


class StatusIn(_Body):
    status: PlanStatus
    reason: Reason


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


class ProposalView(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: str
    evaluation: str
    status: str
    applied_version: int | None
    proposal: dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


def _by(principal: Principal) -> str:
    return principal.subject or principal.client_id


def _view(plan: PlanState) -> PlanView:
    return PlanView(
        id=plan.id,
        patient=plan.patient,
        status=plan.status,
        version=plan.version,
        care_plan=plan.reference,
        goals=[f"Goal/{g.id}" for g in plan.goals],
        service_requests=[f"ServiceRequest/{a.id}" for a in plan.activities],
        state=plan.model_dump(mode="json", by_alias=True),
    )


def _readable(session: Session, principal: Principal, plan_id: str) -> PlanRecord:
    principal.require("CarePlan", "read")
    patient = principal.patient_restriction("CarePlan", "read")
    record = persistence.load(session, plan_id, lock=False)
    if record is None or (patient is not None and record.patient_id != patient):
        raise NotFound(f"CarePlan/{plan_id} is not known")
    return record


def _writable(session: Session, principal: Principal, plan_id: str) -> PlanRecord:
    principal.require("CarePlan", "write")
    if principal.patient_restriction("CarePlan", "write") is not None:
        raise Forbidden("Plans are changed by clinicians and systems (user/ or system/ CarePlan.write)")
    record = persistence.load(session, plan_id)
    if record is None:
        raise NotFound(f"CarePlan/{plan_id} is not known")
    return record


def _merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _checked_rules(patch: dict[str, Any]) -> dict[str, Any]:
    """The patch in camelCase, refused whole (400 naming each field) if the rules it makes are invalid."""
    camel = canonical_patch(patch)
    try:
        ProgressionRules.model_validate(_merge(DEFAULT_RULES.model_dump(mode="json", by_alias=True), camel))
    except ValidationError as exc:
        issues = validation_issues(exc.errors(), prefix="rules")
        raise InvalidRequest("invalid progression rules", issues=issues) from None
    return dict(camel)


def _pattern(catalogue: Catalogue, code: str) -> MovementPattern:
    pattern = catalogue.find(code)
    if pattern is None:
        raise NotFound(f"no movement pattern '{code}' in catalogue {catalogue.version}")
    return pattern


def plans_router(writer: PlanWriter) -> APIRouter:
    catalogue = writer.catalogue
    router = APIRouter(prefix="/plans", tags=["plans"], responses=_ERRORS)

    def commit(session: Session, record: PlanRecord, change: Any) -> PlanView:
        """Run a domain edit on the plan and write what it produced; PlanError is a 422."""
        before = record.plan()
        try:
            outcome: Outcome = change(before)
        except PlanError as exc:
            raise UnprocessableEntity(str(exc)) from None
        plan, _ = writer.apply(session, record, before, outcome)
        return _view(plan)

    @router.get("", summary="List a patient's plans (newest first)")
    def list_plans(
        principal: PrincipalDep,
        session: SessionDep,
        patient: Annotated[
            str | None, Query(description="Patient id; a patient token defaults to its own")
        ] = None,
        status: Annotated[PlanStatus | None, Query()] = None,
    ) -> list[PlanSummary]:
        principal.require("CarePlan", "read")
        own = principal.patient_restriction("CarePlan", "read")
        if own is not None:
            if patient not in (None, own):
                return []
            patient = own
        if patient is None:
            raise InvalidRequest("patient is required", expression="patient")
        return [
            PlanSummary(
                id=r.id,
                patient=r.patient_id,
                status=r.status,
                version=r.version,
                care_plan=f"CarePlan/{r.id}",
                evaluation=r.evaluation,
            )
            for r in persistence.plans_of(session, patient)
            if status is None or r.status == status
        ]

    @router.get("/{plan_id}", summary="A plan: FHIR references and full state")
    def get_plan(plan_id: PlanId, principal: PrincipalDep, session: SessionDep) -> PlanView:
        return _view(_readable(session, principal, plan_id).plan())

    @router.post("/{plan_id}/activate", summary="Activate a reviewed draft (plan.activated.v1)")
    def activate_plan(
        plan_id: PlanId,
        principal: PrincipalDep,
        session: SessionDep,
        body: Annotated[ReasonIn | None, Body()] = None,
    ) -> PlanView:
        record = _writable(session, principal, plan_id)
        active = persistence.active_for(session, record.patient_id)
        if active is not None and active.id != record.id:
            raise Conflict(
                f"patient {record.patient_id} already has an active plan CarePlan/{active.id}: complete or "
                "revoke it first"
            )
        reason = (body or ReasonIn()).reason
        return commit(session, record, lambda p: activate(p, by=_by(principal), at=_now(), reason=reason))

    @router.put("/{plan_id}/status", summary="Put on hold, resume, complete or revoke a plan")
    def change_status(
        plan_id: PlanId, body: StatusIn, principal: PrincipalDep, session: SessionDep
    ) -> PlanView:
        record = _writable(session, principal, plan_id)
        if body.status == "active" and record.status != "active":
            active = persistence.active_for(session, record.patient_id)
            if active is not None and active.id != record.id:
                raise Conflict(f"patient {record.patient_id} already has an active plan CarePlan/{active.id}")
        return commit(
            session,
            record,
            lambda p: set_status(p, body.status, by=_by(principal), reason=body.reason, at=_now()),
        )

    @router.post("/{plan_id}/activities", summary="Add an exercise (a pattern at its simplest form)")
    def add(plan_id: PlanId, body: AddActivityIn, principal: PrincipalDep, session: SessionDep) -> PlanView:
        record = _writable(session, principal, plan_id)
        if catalogue.find(body.pattern) is None:
            raise InvalidRequest(
                f"no movement pattern '{body.pattern}' in the catalogue", expression="pattern"
            )
        known = {g.id for g in record.plan().goals}
        for i, goal in enumerate(body.goals):
            if goal not in known:
                raise InvalidRequest(f"goal '{goal}' is not a goal of this plan", expression=f"goals[{i}]")
        return commit(
            session,
            record,
            lambda p: add_activity(
                p,
                body.pattern,
                side=body.side,
                by=_by(principal),
                reason=body.reason,
                at=_now(),
                catalogue=catalogue,
                ids=stable_id,
                goals=tuple(body.goals),
            ),
        )

    @router.delete("/{plan_id}/activities/{activity_id}", summary="Remove an exercise from a draft")
    def remove(
        plan_id: PlanId, activity_id: ActivityId, body: RemoveIn, principal: PrincipalDep, session: SessionDep
    ) -> PlanView:
        record = _writable(session, principal, plan_id)
        return commit(
            session,
            record,
            lambda p: remove_activity(p, activity_id, by=_by(principal), reason=body.reason, at=_now()),
        )

    @router.put(
        "/{plan_id}/activities/{activity_id}/status", summary="Pause, resume, complete or cancel one exercise"
    )
    def activity_status(
        plan_id: PlanId,
        activity_id: ActivityId,
        body: ActivityStatusIn,
        principal: PrincipalDep,
        session: SessionDep,
    ) -> PlanView:
        record = _writable(session, principal, plan_id)
        return commit(
            session,
            record,
            lambda p: set_activity_status(
                p, activity_id, body.status, by=_by(principal), reason=body.reason, at=_now()
            ),
        )

    @router.post(
        "/{plan_id}/activities/{activity_id}/override",
        summary="Therapist override of an exercise's level, stage and/or dose (recorded; plan.updated.v1)",
    )
    def override_activity(
        plan_id: PlanId,
        activity_id: ActivityId,
        body: OverrideIn,
        principal: PrincipalDep,
        session: SessionDep,
    ) -> PlanView:
        record = _writable(session, principal, plan_id)
        activity = record.plan().find_activity(activity_id)
        if activity is None:
            raise NotFound(f"CarePlan/{plan_id} has no activity '{activity_id}'")
        pattern = _pattern(catalogue, activity.pattern)
        for dim, level in (body.levels or {}).items():
            if not 0 <= level <= pattern.top_level(dim):
                raise InvalidRequest(
                    f"levels.{dim.value}: {level} is off the ladder of {pattern.code} "
                    f"(0-{pattern.top_level(dim)})",
                    expression=f"levels.{dim.value}",
                )
        dose = body.dose.model_dump(exclude_none=True) if body.dose else None
        if body.levels is None and body.stage is None and not dose:
            raise InvalidRequest("set at least one of levels, stage, dose", expression="levels")
        return commit(
            session,
            record,
            lambda p: override(
                p,
                activity_id,
                by=_by(principal),
                reason=body.reason,
                at=_now(),
                catalogue=catalogue,
                levels={d.value: v for d, v in body.levels.items()} if body.levels else None,
                stage=body.stage,
                dose=dose,
            ),
        )

    def rules_view(plan: PlanState) -> RulesView:
        effective = {}
        for code in dict.fromkeys(a.pattern for a in plan.activities):
            pattern = catalogue.find(code)
            if pattern is not None:
                effective[code] = activity_rules(plan, pattern).model_dump(mode="json", by_alias=True)
        return RulesView(
            plan=dict(plan.rule_overrides.plan),
            patterns={k: dict(v) for k, v in plan.rule_overrides.patterns.items()},
            defaults=DEFAULT_RULES.model_dump(mode="json", by_alias=True),
            effective=effective,
        )

    @router.get("/{plan_id}/rules", summary="The plan's progression rules: overrides, defaults, in force")
    def get_rules(plan_id: PlanId, principal: PrincipalDep, session: SessionDep) -> RulesView:
        return rules_view(_readable(session, principal, plan_id).plan())

    def put_rules(
        session: Session, principal: Principal, plan_id: str, body: RulesIn, pattern: str | None
    ) -> RulesView:
        record = _writable(session, principal, plan_id)
        patch = _checked_rules(body.rules)
        if pattern is not None:
            _pattern(catalogue, pattern)

        def change(p: PlanState) -> Outcome:
            try:
                return set_rule_overrides(
                    p,
                    by=_by(principal),
                    reason=body.reason,
                    at=_now(),
                    catalogue=catalogue,
                    plan_patch=patch if pattern is None else None,
                    pattern=pattern,
                    pattern_patch=patch if pattern is not None else None,
                )
            except RuleError as exc:
                raise PlanError(str(exc)) from None

        view = commit(session, record, change)
        return rules_view(PlanState.model_validate(view.state))

    @router.put("/{plan_id}/rules", summary="Replace the plan-wide rules override")
    def replace_rules(
        plan_id: PlanId, body: RulesIn, principal: PrincipalDep, session: SessionDep
    ) -> RulesView:
        return put_rules(session, principal, plan_id, body, None)

    @router.put(
        "/{plan_id}/rules/patterns/{code}", summary="Replace one pattern's rules override in this plan"
    )
    def replace_pattern_rules(
        plan_id: PlanId,
        code: Annotated[str, Path(max_length=64)],
        body: RulesIn,
        principal: PrincipalDep,
        session: SessionDep,
    ) -> RulesView:
        return put_rules(session, principal, plan_id, body, code)

    @router.put(
        "/{plan_id}/activities/{activity_id}/muscles",
        summary="The muscles this exercise's EMG criteria judge (recorded; over the pattern's choice)",
    )
    def put_muscles(
        plan_id: PlanId,
        activity_id: ActivityId,
        body: MusclesIn,
        principal: PrincipalDep,
        session: SessionDep,
    ) -> PlanView:
        record = _writable(session, principal, plan_id)
        if record.plan().find_activity(activity_id) is None:
            raise NotFound(f"CarePlan/{plan_id} has no activity '{activity_id}'")
        chosen = {
            kind: CriterionMuscles(
                muscle=m.muscle, reference_muscle=m.reference_muscle, antagonist=m.antagonist
            )
            for kind, m in body.criteria.items()
        }
        return commit(
            session,
            record,
            lambda p: set_activity_muscles(
                p, activity_id, chosen, by=_by(principal), reason=body.reason, at=_now(), catalogue=catalogue
            ),
        )

    @router.get("/{plan_id}/waivers", summary="Criteria a therapist waived for this plan, with reasons")
    def get_waivers(plan_id: PlanId, principal: PrincipalDep, session: SessionDep) -> list[dict[str, Any]]:
        plan = _readable(session, principal, plan_id).plan()
        return [w.model_dump(mode="json", by_alias=True) for w in plan.waivers]

    @router.put(
        "/{plan_id}/waivers",
        summary="Replace the plan's criterion waivers (recorded; the activities they touch are re-judged)",
    )
    def put_waivers(
        plan_id: PlanId, body: WaiversIn, principal: PrincipalDep, session: SessionDep
    ) -> PlanView:
        record = _writable(session, principal, plan_id)
        by, at = _by(principal), _now()
        waivers = [
            Waiver(pattern=w.pattern, criterion=w.criterion, muscle=w.muscle, reason=w.reason, by=by, at=at)
            for w in body.waivers
        ]
        return commit(
            session,
            record,
            lambda p: set_waivers(p, waivers, by=by, reason=body.reason, at=at, catalogue=catalogue),
        )

    @router.get("/{plan_id}/tasks", summary="Questions the progression engine asks the therapist (FHIR Task)")
    def get_tasks(plan_id: PlanId, principal: PrincipalDep, session: SessionDep) -> list[dict[str, Any]]:
        plan = _readable(session, principal, plan_id).plan()
        return [t.model_dump(mode="json", by_alias=True) for t in plan.tasks]

    def answer(
        plan_id: str, task_id: str, approve: bool, body: TaskAnswerIn, principal: Principal, session: Session
    ) -> PlanView:
        record = _writable(session, principal, plan_id)
        plan = record.plan()
        if not any(t.id == task_id for t in plan.tasks):
            raise NotFound(f"CarePlan/{plan_id} has no task '{task_id}'")
        if plan.task(task_id).status != "requested":
            raise Conflict(f"Task/{task_id} is already {plan.task(task_id).status}")
        return commit(
            session,
            record,
            lambda p: resolve_task(
                p,
                task_id,
                approve=approve,
                by=_by(principal),
                reason=body.reason,
                at=_now(),
                catalogue=catalogue,
            ),
        )

    @router.post(
        "/{plan_id}/tasks/{task_id}/approve", summary="Approve a proposed advance / allow another try"
    )
    def approve_task(
        plan_id: PlanId,
        task_id: Annotated[str, Path(max_length=64)],
        body: TaskAnswerIn,
        principal: PrincipalDep,
        session: SessionDep,
    ) -> PlanView:
        return answer(plan_id, task_id, True, body, principal, session)

    @router.post("/{plan_id}/tasks/{task_id}/reject", summary="Decline a proposed advance / keep it blocked")
    def reject_task(
        plan_id: PlanId,
        task_id: Annotated[str, Path(max_length=64)],
        body: TaskAnswerIn,
        principal: PrincipalDep,
        session: SessionDep,
    ) -> PlanView:
        return answer(plan_id, task_id, False, body, principal, session)

    @router.get("/{plan_id}/proposals", summary="Changes proposed by re-assessments")
    def get_proposals(plan_id: PlanId, principal: PrincipalDep, session: SessionDep) -> list[ProposalView]:
        record = _readable(session, principal, plan_id)
        return [
            ProposalView(
                id=r.id,
                evaluation=r.evaluation,
                status=r.status,
                applied_version=r.applied_version,
                proposal=r.parsed().model_dump(mode="json", by_alias=True),
            )
            for r in persistence.proposals_of(session, record.id)
        ]

    @router.post("/{plan_id}/proposals/{proposal_id}/apply", summary="Accept a re-assessment's proposal")
    def apply(
        plan_id: PlanId,
        proposal_id: Annotated[str, Path(max_length=64)],
        principal: PrincipalDep,
        session: SessionDep,
    ) -> PlanView:
        record = _writable(session, principal, plan_id)
        proposal = session.get(persistence.ProposalRecord, proposal_id)
        if proposal is None or proposal.plan_id != plan_id:
            raise NotFound(f"CarePlan/{plan_id} has no proposal '{proposal_id}'")
        if proposal.status != "open":
            raise Conflict(f"proposal {proposal_id} is {proposal.status}")
        parsed = proposal.parsed()
        view = commit(session, record, lambda p: apply_proposal(p, parsed, by=_by(principal), at=_now()))
        proposal.status, proposal.applied_at, proposal.applied_version = "applied", _now(), view.version
        session.add(proposal)
        return view

    return router


def catalogue_router(catalogue: Catalogue) -> APIRouter:
    router = APIRouter(prefix="/catalogue", tags=["catalogue"])

    @router.get("", summary="The movement-pattern catalogue")
    def list_patterns(principal: PrincipalDep) -> dict[str, Any]:
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

    @router.get("/{code}", summary="One movement pattern: ladders, dosing, mastery criteria")
    def get_pattern(code: Annotated[str, Path(max_length=64)], principal: PrincipalDep) -> dict[str, Any]:
        pattern = _pattern(catalogue, code)
        body = pattern.model_dump(mode="json", by_alias=True)
        # The measured criteria as the engine judges them: metric, limits, muscle(s), who measures it.
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

    return router
