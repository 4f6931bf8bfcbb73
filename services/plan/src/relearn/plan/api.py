"""HTTP routes of the plan API (``/plans``, ``/catalogue``): parse, check scopes, call the service, render.

Writes need ``CarePlan.write`` from a ``user/`` or ``system/`` scope; reads need ``CarePlan.read``, and a
``patient/`` token reads only its own patient's plans (another plan is 404). Every change is one transaction:
the plan row, the CarePlan version(s) and their events, or nothing (bad input is an OperationOutcome naming
the field).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query

from relearn.plan.domain.state import PlanStatus
from relearn.plan.schemas import (
    ActivityStatusIn,
    AddActivityIn,
    DischargeIn,
    MusclesIn,
    OverrideIn,
    PlanSummary,
    PlanView,
    ProposalView,
    ReasonIn,
    RemoveIn,
    RulesIn,
    RulesView,
    StatusIn,
    TaskAnswerIn,
    WaiversIn,
    catalogue_view,
    pattern_view,
)
from relearn.plan.service import PlanService
from relearn.shared.auth import Permission, Principal, PrincipalDep
from relearn.shared.fhir import Forbidden, InvalidRequest
from relearn.shared.service import SessionDep

PlanId = Annotated[str, Path(description="The CarePlan id", max_length=64)]
ActivityId = Annotated[str, Path(description="The activity id (= its ServiceRequest id)", max_length=64)]
TaskId = Annotated[str, Path(max_length=64)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "OperationOutcome naming each invalid field"},
    401: {"description": "No or invalid bearer token"},
    403: {"description": "Scopes do not allow CarePlan write (patient tokens never write)"},
    404: {"description": "No such plan (or not this patient's)"},
    409: {"description": "The plan's status does not allow it (e.g. another plan is active)"},
    422: {"description": "A change the plan cannot take (unknown activity, level off the ladder ...)"},
}


def _reader(principal: Principal, letter: Permission = "r") -> str | None:
    """Check the token may read plans (``r`` a plan by id and what hangs off it, ``s`` a patient's list);
    the patient it is restricted to (None: any patient)."""
    principal.require("CarePlan", letter)
    return principal.patient_restriction("CarePlan", letter)


def _writer(principal: Principal) -> str:
    """Check the token may change plans (``u``: every plan route changes an existing plan); who is
    changing them (recorded with each version)."""
    principal.require("CarePlan", "u")
    if principal.patient_restriction("CarePlan", "u") is not None:
        raise Forbidden("Plans are changed by clinicians and systems (user/ or system/ CarePlan.write)")
    return principal.subject or principal.client_id


def plans_router(service: PlanService) -> APIRouter:
    router = APIRouter(prefix="/plans", tags=["plans"], responses=_ERRORS)

    @router.get("", summary="List a patient's plans (newest first)")
    def list_plans(
        principal: PrincipalDep,
        session: SessionDep,
        patient: Annotated[
            str | None, Query(description="Patient id; a patient token defaults to its own")
        ] = None,
        status: Annotated[PlanStatus | None, Query()] = None,
    ) -> list[PlanSummary]:
        own = _reader(principal, "s")
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
            for r in service.plans(session, patient, status)
        ]

    @router.get("/{plan_id}", summary="A plan: FHIR references and full state")
    def get_plan(plan_id: PlanId, principal: PrincipalDep, session: SessionDep) -> PlanView:
        return PlanView.of(service.plan(session, plan_id, patient=_reader(principal)))

    @router.post("/{plan_id}/activate", summary="Activate a reviewed draft (plan.activated.v1)")
    def activate_plan(
        plan_id: PlanId,
        principal: PrincipalDep,
        session: SessionDep,
        body: Annotated[ReasonIn | None, Body()] = None,
    ) -> PlanView:
        by = _writer(principal)
        reason = (body or ReasonIn()).reason
        return PlanView.of(service.activate(session, plan_id, by=by, reason=reason))

    @router.put("/{plan_id}/status", summary="Put on hold, resume, complete or revoke a plan")
    def change_status(
        plan_id: PlanId, body: StatusIn, principal: PrincipalDep, session: SessionDep
    ) -> PlanView:
        by = _writer(principal)
        return PlanView.of(service.set_status(session, plan_id, body.status, by=by, reason=body.reason))

    @router.post(
        "/{plan_id}/discharge",
        summary="Discharge: complete the plan, goals achieved or not-achieved (plan.discharged.v1)",
    )
    def discharge_plan(
        plan_id: PlanId,
        principal: PrincipalDep,
        session: SessionDep,
        body: Annotated[DischargeIn | None, Body()] = None,
    ) -> PlanView:
        by = _writer(principal)
        b = body or DischargeIn()
        return PlanView.of(service.discharge(session, plan_id, by=by, reason=b.reason, achieved=b.achieved))

    @router.post("/{plan_id}/activities", summary="Add an exercise (a pattern at its simplest form)")
    def add(plan_id: PlanId, body: AddActivityIn, principal: PrincipalDep, session: SessionDep) -> PlanView:
        by = _writer(principal)
        plan = service.add_activity(
            session, plan_id, body.pattern, side=body.side, goals=body.goals, by=by, reason=body.reason
        )
        return PlanView.of(plan)

    @router.delete("/{plan_id}/activities/{activity_id}", summary="Remove an exercise from a draft")
    def remove(
        plan_id: PlanId, activity_id: ActivityId, body: RemoveIn, principal: PrincipalDep, session: SessionDep
    ) -> PlanView:
        by = _writer(principal)
        return PlanView.of(service.remove_activity(session, plan_id, activity_id, by=by, reason=body.reason))

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
        by = _writer(principal)
        plan = service.set_activity_status(
            session, plan_id, activity_id, body.status, by=by, reason=body.reason
        )
        return PlanView.of(plan)

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
        by = _writer(principal)
        return PlanView.of(service.override(session, plan_id, activity_id, body, by=by))

    @router.get("/{plan_id}/rules", summary="The plan's progression rules: overrides, defaults, in force")
    def get_rules(plan_id: PlanId, principal: PrincipalDep, session: SessionDep) -> RulesView:
        plan = service.plan(session, plan_id, patient=_reader(principal))
        return RulesView.of(plan, service.catalogue)

    def put_rules(
        session: SessionDep, principal: Principal, plan_id: str, body: RulesIn, pattern: str | None
    ) -> RulesView:
        by = _writer(principal)
        plan = service.set_rules(session, plan_id, body.rules, pattern=pattern, by=by, reason=body.reason)
        return RulesView.of(plan, service.catalogue)

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
        by = _writer(principal)
        return PlanView.of(service.set_muscles(session, plan_id, activity_id, body, by=by))

    @router.get("/{plan_id}/waivers", summary="Criteria a therapist waived for this plan, with reasons")
    def get_waivers(plan_id: PlanId, principal: PrincipalDep, session: SessionDep) -> list[dict[str, Any]]:
        plan = service.plan(session, plan_id, patient=_reader(principal))
        return [w.model_dump(mode="json", by_alias=True) for w in plan.waivers]

    @router.put(
        "/{plan_id}/waivers",
        summary="Replace the plan's criterion waivers (recorded; the activities they touch are re-judged)",
    )
    def put_waivers(
        plan_id: PlanId, body: WaiversIn, principal: PrincipalDep, session: SessionDep
    ) -> PlanView:
        by = _writer(principal)
        return PlanView.of(service.set_waivers(session, plan_id, body.waivers, by=by, reason=body.reason))

    @router.get("/{plan_id}/tasks", summary="Questions the progression engine asks the therapist (FHIR Task)")
    def get_tasks(plan_id: PlanId, principal: PrincipalDep, session: SessionDep) -> list[dict[str, Any]]:
        plan = service.plan(session, plan_id, patient=_reader(principal))
        return [t.model_dump(mode="json", by_alias=True) for t in plan.tasks]

    @router.post(
        "/{plan_id}/tasks/{task_id}/approve", summary="Approve a proposed advance / allow another try"
    )
    def approve_task(
        plan_id: PlanId, task_id: TaskId, body: TaskAnswerIn, principal: PrincipalDep, session: SessionDep
    ) -> PlanView:
        by = _writer(principal)
        plan = service.answer_task(session, plan_id, task_id, approve=True, by=by, reason=body.reason)
        return PlanView.of(plan)

    @router.post("/{plan_id}/tasks/{task_id}/reject", summary="Decline a proposed advance / keep it blocked")
    def reject_task(
        plan_id: PlanId, task_id: TaskId, body: TaskAnswerIn, principal: PrincipalDep, session: SessionDep
    ) -> PlanView:
        by = _writer(principal)
        plan = service.answer_task(session, plan_id, task_id, approve=False, by=by, reason=body.reason)
        return PlanView.of(plan)

    @router.get("/{plan_id}/proposals", summary="Changes proposed by re-assessments")
    def get_proposals(plan_id: PlanId, principal: PrincipalDep, session: SessionDep) -> list[ProposalView]:
        return [
            ProposalView(
                id=r.id,
                evaluation=r.evaluation,
                status=r.status,
                applied_version=r.applied_version,
                proposal=r.parsed().model_dump(mode="json", by_alias=True),
            )
            for r in service.proposals(session, plan_id, patient=_reader(principal))
        ]

    @router.post("/{plan_id}/proposals/{proposal_id}/apply", summary="Accept a re-assessment's proposal")
    def apply(
        plan_id: PlanId,
        proposal_id: Annotated[str, Path(max_length=64)],
        principal: PrincipalDep,
        session: SessionDep,
    ) -> PlanView:
        by = _writer(principal)
        return PlanView.of(service.apply_proposal(session, plan_id, proposal_id, by=by))

    return router


def catalogue_router(service: PlanService) -> APIRouter:
    router = APIRouter(prefix="/catalogue", tags=["catalogue"])

    @router.get("", summary="The movement-pattern catalogue")
    def list_patterns(principal: PrincipalDep) -> dict[str, Any]:
        return catalogue_view(service.catalogue)

    @router.get("/{code}", summary="One movement pattern: ladders, dosing, mastery criteria")
    def get_pattern(code: Annotated[str, Path(max_length=64)], principal: PrincipalDep) -> dict[str, Any]:
        return pattern_view(service.pattern(code))

    return router
