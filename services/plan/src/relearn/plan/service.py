"""Use cases of the plan service: draft, review, steer and progress plans, each written as CarePlan versions.

Every use case runs in the caller's transaction and never builds an HTTP answer (it raises FhirError
subclasses). Writing a version is one CarePlan write (so the store's ``versionId`` counts with
:attr:`PlanState.version`, checked with ``If-Match``), plus the Goals, ServiceRequests and Tasks whose content
changed, plus one event staged in the outbox, in version order, plus the plan row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from relearn.plan import repository
from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.drafting import apply_proposal, draft_plan, propose_changes, screening_of
from relearn.plan.domain.editing import (
    activate,
    add_activity,
    discharge,
    override,
    remove_activity,
    resolve_task,
    set_activity_muscles,
    set_activity_status,
    set_rule_overrides,
    set_status,
    set_waivers,
)
from relearn.plan.domain.ids import stable_id
from relearn.plan.domain.inputs import (
    DeviceMetricComputed,
    EvaluationCompleted,
    SessionLogged,
    StreamMetricsCompleted,
    SymptomsRecorded,
    TrialSummarized,
    bare_id,
)
from relearn.plan.domain.patterns import MovementPattern
from relearn.plan.domain.progression import (
    Outcome,
    apply_metric,
    apply_session,
    apply_stream_completed,
    apply_symptoms,
    expire_evidence,
)
from relearn.plan.domain.rules import DEFAULT_RULES, ProgressionRules, RuleError, canonical_patch
from relearn.plan.domain.state import (
    ActivityStatus,
    CriterionMuscles,
    PlanError,
    PlanState,
    PlanStatus,
    Side,
    Waiver,
)
from relearn.plan.domain.versions import PlanVersion, split_versions
from relearn.plan.events import GoalVersion, stage_version
from relearn.plan.mapper import (
    care_plan,
    code_systems,
    definitions,
    goal_resources,
    provenance,
    provenance_patient,
    service_requests,
    task_resources,
)
from relearn.plan.resources import (
    ACTIVITY_DEFINITION,
    CARE_PLAN,
    CODE_SYSTEM,
    GOAL,
    PLAN_DEFINITION,
    PROVENANCE,
    SERVICE_REQUEST,
    TASK,
)
from relearn.plan.schemas import MusclesIn, OverrideIn, WaiverIn
from relearn.plan.tables import PlanRecord, ProposalRecord
from relearn.shared.events import CloudEvent
from relearn.shared.fhir import (
    Conflict,
    FhirStore,
    InvalidRequest,
    NotFound,
    ResourceDefinition,
    StoredResource,
    UnprocessableEntity,
    publish_shipped,
    validation_issues,
)
from relearn.shared.service import client_provenance, request_agent, touch_patients

logger = logging.getLogger(__name__)

Ignored = tuple[str, ...]
"""Why an event changed nothing (empty: it was applied)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _same(stored_text: str, resource: dict[str, Any]) -> bool:
    """The stored version says what ``resource`` says (the store's versionId/lastUpdated aside)."""
    old = json.loads(stored_text)
    new = json.loads(json.dumps(resource))
    for r in (old, new):
        meta = {k: v for k, v in (r.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
        if meta:
            r["meta"] = meta
    new.setdefault("id", old.get("id"))
    return bool(old == new)


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


@dataclass
class PlanService:
    store: FhirStore
    catalogue: Catalogue
    now: Callable[[], datetime] = field(default=_now)

    # -- writing versions ---------------------------------------------------------------------------------

    def _write_if_changed(
        self, session: Session, rdef: ResourceDefinition, resource: dict[str, Any]
    ) -> StoredResource | None:
        current = self.store.get(session, rdef.type, resource["id"])
        if current is not None and not current.deleted and _same(current.text, resource):
            return None
        return self.store.update(session, rdef, resource["id"], resource)

    def _write_version(
        self,
        session: Session,
        version: PlanVersion,
        removed: Iterable[str] = (),
        previous: PlanState | None = None,
    ) -> CloudEvent:
        plan = version.plan
        resource = care_plan(plan, self.catalogue)
        if plan.version == 1:
            stored = self.store.create(session, CARE_PLAN, resource, id=plan.id)
        else:
            stored = self.store.update(session, CARE_PLAN, plan.id, resource, if_match=plan.version - 1)
        if stored.version_id != plan.version:  # pragma: no cover - the If-Match above guarantees it
            raise RuntimeError(f"CarePlan/{plan.id} is at {stored.version_id}, plan at {plan.version}")
        written: list[StoredResource | None] = [stored]
        before = {g.id: g for g in previous.goals} if previous is not None else {}
        goals: list[GoalVersion] = []
        for resource, goal in zip(goal_resources(plan), plan.goals, strict=True):
            goal_stored = self._write_if_changed(session, GOAL, resource)
            written.append(goal_stored)
            if goal_stored is not None:
                was = before.get(goal.id)
                achieved = goal.achievement == "achieved" and (was is None or was.achievement != "achieved")
                goals.append(GoalVersion(goal, goal_stored.version_id, achieved))
        for request in service_requests(plan, self.catalogue):
            written.append(self._write_if_changed(session, SERVICE_REQUEST, request))
        for task in task_resources(plan):
            self._write_if_changed(session, TASK, task)
        for activity_id in removed:
            current = self.store.get(session, SERVICE_REQUEST.type, activity_id)
            if current is not None and not current.deleted:
                written.append(self.store.delete(session, SERVICE_REQUEST, activity_id))
        self._record_provenance(session, plan, [w for w in written if w is not None])
        return stage_version(session, plan, version.decision, self.catalogue, goals)

    def _record_provenance(self, session: Session, plan: PlanState, written: list[StoredResource]) -> None:
        """Provenance of the version's CarePlan, Goals and ServiceRequests, in the version's transaction: ours
        (engine, therapist, client, the decision) and the client's own X-Provenance if it sent one."""
        targets = [f"{w.resource_type}/{w.id}/_history/{w.version_id}" for w in written]
        agent = request_agent()
        ours = provenance(
            plan,
            targets,
            client=agent.client_id if agent else None,
            user=(agent.fhir_user or agent.subject) if agent else None,
            recorded=self.now(),
        )
        self.store.create(session, PROVENANCE, ours)
        theirs = client_provenance(targets)
        if theirs is not None:
            theirs["extension"] = [*(theirs.get("extension") or []), provenance_patient(plan.patient)]
            self.store.create(session, PROVENANCE, theirs)

    def create(self, session: Session, plan: PlanState) -> tuple[PlanRecord, list[CloudEvent]]:
        """A new draft (version 1): its row, CarePlan, Goals, ServiceRequests and ``plan.drafted.v1``."""
        event = self._write_version(session, PlanVersion(plan, None))
        return repository.save(session, plan), [event]

    def apply(
        self, session: Session, record: PlanRecord, before: PlanState, outcome: Outcome
    ) -> tuple[PlanState, list[CloudEvent]]:
        """Persist an outcome of ``before``: one version (and event) per decision when it changed the plan."""
        if not outcome.changed:
            if outcome.plan != before:  # the session log, a pending metric: kept, no new version
                repository.save(session, outcome.plan, record)
                for task in task_resources(outcome.plan):
                    self._write_if_changed(session, TASK, task)
            return outcome.plan, []
        versions = split_versions(before, outcome.plan)
        kept = {a.id for a in outcome.plan.activities}
        removed = [a.id for a in before.activities if a.id not in kept]
        events = [
            self._write_version(
                session, v, removed if i == 0 else (), before if i == 0 else versions[i - 1].plan
            )
            for i, v in enumerate(versions)
        ]
        final = versions[-1].plan
        repository.save(session, final, record)
        logger.info(
            "plan versioned",
            extra={
                "care_plan": final.reference,
                "versions": [v.plan.version for v in versions],
                "events": [e.type for e in events],
            },
        )
        return final, events

    def publish_code_systems(self, engine: Engine) -> None:
        """Store each local CodeSystem as ``CodeSystem/<id>`` unless the stored one already says the same, so
        an EHR can resolve every code it reads."""
        publish_shipped(self.store, engine, CODE_SYSTEM, code_systems(self.catalogue))
        activity_definitions, plan_def = definitions(self.catalogue)
        publish_shipped(self.store, engine, ACTIVITY_DEFINITION, activity_definitions)
        publish_shipped(self.store, engine, PLAN_DEFINITION, [plan_def])

    # -- reading ------------------------------------------------------------------------------------------

    def plan(self, session: Session, plan_id: str, *, patient: str | None = None) -> PlanState:
        """The plan; NotFound when unknown or (``patient`` given) another patient's."""
        return self._readable(session, plan_id, patient).plan()

    def plans(self, session: Session, patient: str, status: PlanStatus | None = None) -> list[PlanRecord]:
        """A patient's plans, newest first."""
        return [r for r in repository.plans_of(session, patient) if status is None or r.status == status]

    def proposals(
        self, session: Session, plan_id: str, *, patient: str | None = None
    ) -> list[ProposalRecord]:
        """The re-assessments' proposals for the plan, newest first."""
        return repository.proposals_of(session, self._readable(session, plan_id, patient).id)

    def pattern(self, code: str) -> MovementPattern:
        pattern = self.catalogue.find(code)
        if pattern is None:
            raise NotFound(f"no movement pattern '{code}' in catalogue {self.catalogue.version}")
        return pattern

    def _readable(self, session: Session, plan_id: str, patient: str | None) -> PlanRecord:
        record = repository.load(session, plan_id, lock=False)
        if record is None or (patient is not None and record.patient_id != patient):
            raise NotFound(f"CarePlan/{plan_id} is not known")
        touch_patients(record.patient_id)  # the audit trail: whose plan this request read
        return record

    # -- a therapist's changes ----------------------------------------------------------------------------

    def _writable(self, session: Session, plan_id: str) -> PlanRecord:
        record = repository.load(session, plan_id)
        if record is None:
            raise NotFound(f"CarePlan/{plan_id} is not known")
        touch_patients(record.patient_id)  # the audit trail: whose plan this request changes
        return record

    def _edit(
        self, session: Session, record: PlanRecord, change: Callable[[PlanState], Outcome]
    ) -> PlanState:
        """Run a domain edit on the plan and write the versions it produced; PlanError is a 422."""
        before = record.plan()
        try:
            outcome = change(before)
        except PlanError as exc:
            raise UnprocessableEntity(str(exc)) from None
        plan, _ = self.apply(session, record, before, outcome)
        return plan

    def _no_other_active(self, session: Session, record: PlanRecord, hint: str = "") -> None:
        active = repository.active_for(session, record.patient_id)
        if active is not None and active.id != record.id:
            raise Conflict(
                f"patient {record.patient_id} already has an active plan CarePlan/{active.id}{hint}"
            )

    def activate(self, session: Session, plan_id: str, *, by: str, reason: str) -> PlanState:
        """Activate a reviewed draft (plan.activated.v1); one active plan per patient."""
        record = self._writable(session, plan_id)
        self._no_other_active(session, record, ": complete or revoke it first")
        return self._edit(session, record, lambda p: activate(p, by=by, at=self.now(), reason=reason))

    def set_status(
        self, session: Session, plan_id: str, status: PlanStatus, *, by: str, reason: str
    ) -> PlanState:
        """Put on hold, resume, complete or revoke a plan."""
        record = self._writable(session, plan_id)
        if status == "active" and record.status != "active":
            self._no_other_active(session, record)
        return self._edit(
            session, record, lambda p: set_status(p, status, by=by, reason=reason, at=self.now())
        )

    def discharge(
        self,
        session: Session,
        plan_id: str,
        *,
        by: str,
        reason: str,
        achieved: Mapping[str, bool] | None = None,
    ) -> PlanState:
        """Discharge: the plan completed, each goal achieved or not-achieved (plan.discharged.v1)."""
        record = self._writable(session, plan_id)
        return self._edit(
            session, record, lambda p: discharge(p, by=by, reason=reason, at=self.now(), achieved=achieved)
        )

    def add_activity(
        self,
        session: Session,
        plan_id: str,
        pattern: str,
        *,
        side: Side | None,
        goals: Sequence[str],
        by: str,
        reason: str,
    ) -> PlanState:
        """Add an exercise: a pattern of the catalogue at its simplest form, serving goals of the plan."""
        record = self._writable(session, plan_id)
        if self.catalogue.find(pattern) is None:
            raise InvalidRequest(f"no movement pattern '{pattern}' in the catalogue", expression="pattern")
        known = {g.id for g in record.plan().goals}
        for i, goal in enumerate(goals):
            if goal not in known:
                raise InvalidRequest(f"goal '{goal}' is not a goal of this plan", expression=f"goals[{i}]")
        return self._edit(
            session,
            record,
            lambda p: add_activity(
                p,
                pattern,
                side=side,
                by=by,
                reason=reason,
                at=self.now(),
                catalogue=self.catalogue,
                ids=stable_id,
                goals=tuple(goals),
            ),
        )

    def remove_activity(
        self, session: Session, plan_id: str, activity_id: str, *, by: str, reason: str
    ) -> PlanState:
        """Remove an exercise from a draft."""
        record = self._writable(session, plan_id)
        return self._edit(
            session, record, lambda p: remove_activity(p, activity_id, by=by, reason=reason, at=self.now())
        )

    def set_activity_status(
        self,
        session: Session,
        plan_id: str,
        activity_id: str,
        status: ActivityStatus,
        *,
        by: str,
        reason: str,
    ) -> PlanState:
        """Pause, resume, complete or cancel one exercise."""
        record = self._writable(session, plan_id)
        return self._edit(
            session,
            record,
            lambda p: set_activity_status(p, activity_id, status, by=by, reason=reason, at=self.now()),
        )

    def override(
        self, session: Session, plan_id: str, activity_id: str, body: OverrideIn, *, by: str
    ) -> PlanState:
        """A therapist's override of an exercise's level, stage and/or dose (recorded; plan.updated.v1)."""
        record = self._writable(session, plan_id)
        activity = record.plan().find_activity(activity_id)
        if activity is None:
            raise NotFound(f"CarePlan/{plan_id} has no activity '{activity_id}'")
        pattern = self.pattern(activity.pattern)
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
        return self._edit(
            session,
            record,
            lambda p: override(
                p,
                activity_id,
                by=by,
                reason=body.reason,
                at=self.now(),
                catalogue=self.catalogue,
                levels={d.value: v for d, v in body.levels.items()} if body.levels else None,
                stage=body.stage,
                dose=dose,
            ),
        )

    def set_rules(
        self,
        session: Session,
        plan_id: str,
        rules: dict[str, Any],
        *,
        pattern: str | None,
        by: str,
        reason: str,
    ) -> PlanState:
        """Replace the plan-wide (``pattern`` None) or one pattern's rules override; ``{}`` removes it."""
        record = self._writable(session, plan_id)
        patch = _checked_rules(rules)
        if pattern is not None:
            self.pattern(pattern)

        def change(p: PlanState) -> Outcome:
            try:
                return set_rule_overrides(
                    p,
                    by=by,
                    reason=reason,
                    at=self.now(),
                    catalogue=self.catalogue,
                    plan_patch=patch if pattern is None else None,
                    pattern=pattern,
                    pattern_patch=patch if pattern is not None else None,
                )
            except RuleError as exc:
                raise PlanError(str(exc)) from None

        return self._edit(session, record, change)

    def set_muscles(
        self, session: Session, plan_id: str, activity_id: str, body: MusclesIn, *, by: str
    ) -> PlanState:
        """The muscles an exercise's EMG criteria judge (recorded; over the pattern's choice)."""
        record = self._writable(session, plan_id)
        if record.plan().find_activity(activity_id) is None:
            raise NotFound(f"CarePlan/{plan_id} has no activity '{activity_id}'")
        chosen = {
            kind: CriterionMuscles(
                muscle=m.muscle, reference_muscle=m.reference_muscle, antagonist=m.antagonist
            )
            for kind, m in body.criteria.items()
        }
        return self._edit(
            session,
            record,
            lambda p: set_activity_muscles(
                p, activity_id, chosen, by=by, reason=body.reason, at=self.now(), catalogue=self.catalogue
            ),
        )

    def set_waivers(
        self, session: Session, plan_id: str, waivers: Sequence[WaiverIn], *, by: str, reason: str
    ) -> PlanState:
        """Replace the plan's criterion waivers (recorded; the activities they touch are re-judged)."""
        record = self._writable(session, plan_id)
        at = self.now()
        kept = [
            Waiver(pattern=w.pattern, criterion=w.criterion, muscle=w.muscle, reason=w.reason, by=by, at=at)
            for w in waivers
        ]
        return self._edit(
            session,
            record,
            lambda p: set_waivers(p, kept, by=by, reason=reason, at=at, catalogue=self.catalogue),
        )

    def answer_task(
        self, session: Session, plan_id: str, task_id: str, *, approve: bool, by: str, reason: str
    ) -> PlanState:
        """Approve or decline a question the progression engine asked (a proposed advance, another try)."""
        record = self._writable(session, plan_id)
        plan = record.plan()
        if not any(t.id == task_id for t in plan.tasks):
            raise NotFound(f"CarePlan/{plan_id} has no task '{task_id}'")
        if plan.task(task_id).status != "requested":
            raise Conflict(f"Task/{task_id} is already {plan.task(task_id).status}")
        return self._edit(
            session,
            record,
            lambda p: resolve_task(
                p, task_id, approve=approve, by=by, reason=reason, at=self.now(), catalogue=self.catalogue
            ),
        )

    def apply_proposal(self, session: Session, plan_id: str, proposal_id: str, *, by: str) -> PlanState:
        """Accept a re-assessment's proposal: its changes become versions of the plan."""
        record = self._writable(session, plan_id)
        proposal = repository.proposal(session, proposal_id)
        if proposal is None or proposal.plan_id != plan_id:
            raise NotFound(f"CarePlan/{plan_id} has no proposal '{proposal_id}'")
        if proposal.status != "open":
            raise Conflict(f"proposal {proposal_id} is {proposal.status}")
        parsed = proposal.parsed()
        plan = self._edit(session, record, lambda p: apply_proposal(p, parsed, by=by, at=self.now()))
        repository.mark_applied(session, proposal, plan.version)
        return plan

    # -- what events ask for ------------------------------------------------------------------------------

    def draft(self, session: Session, evaluation: EvaluationCompleted) -> Ignored:
        """An evaluation: a plan drafted (status ``draft``) for the therapist to review."""
        plan = draft_plan(evaluation, catalogue=self.catalogue, ids=stable_id)
        if repository.load(session, plan.id) is not None:
            return (f"plan {plan.id} was already drafted from {evaluation.evaluation}",)
        self.create(session, plan)
        logger.info("plan drafted", extra={"care_plan": plan.reference, "evaluation": evaluation.evaluation})
        return ()

    def reassess(self, session: Session, evaluation: EvaluationCompleted) -> Ignored:
        """A re-assessment: fall risk kept at once; the changes it suggests kept as a proposal."""
        record = None
        if evaluation.care_plan:
            record = repository.load(session, bare_id(evaluation.care_plan))
        record = record or repository.active_for(session, evaluation.patient)
        if record is None:
            drafts = [r for r in repository.plans_of(session, evaluation.patient) if r.status == "draft"]
            record = drafts[0] if drafts else None
        if record is None or record.patient_id != evaluation.patient:
            return (f"patient {evaluation.patient} has no active or draft plan to re-assess",)
        screening = screening_of(evaluation)
        if screening is not None and record.plan().screening != screening:
            # Fall risk is judged on the last evaluation: kept at once, whatever the therapist does with the
            # proposal.
            repository.save(session, record.plan().model_copy(update={"screening": screening}), record)
        proposal = propose_changes(record.plan(), evaluation, catalogue=self.catalogue, ids=stable_id)
        pid = stable_id("Proposal", f"{record.id}|{evaluation.evaluation}")
        if repository.proposal(session, pid) is not None:
            return (f"re-assessment {evaluation.evaluation} already proposed for {record.id}",)
        repository.add_proposal(session, pid, record, proposal)
        logger.info("re-assessment proposal kept", extra={"care_plan": record.id, "reason": proposal.reason})
        return ()

    def _progress(
        self, session: Session, patient: str, record: PlanRecord | None, step: Callable[[PlanState], Outcome]
    ) -> Ignored:
        if record is None:
            return (f"patient {patient} has no active plan",)
        before = record.plan()
        outcome = step(before)
        self.apply(session, record, before, outcome)
        return outcome.ignored

    def session_logged(self, session: Session, logged: SessionLogged) -> Ignored:
        """A session (clinic or home): the progression engine on the plan it names or the active one."""
        record = None
        if logged.care_plan:
            record = repository.load(session, bare_id(logged.care_plan))
            if record is not None and record.patient_id != logged.patient:
                record = None
        record = record or repository.active_for(session, logged.patient)
        return self._progress(
            session, logged.patient, record, lambda p: apply_session(p, logged, catalogue=self.catalogue)
        )

    def symptoms(self, session: Session, recorded: SymptomsRecorded) -> Ignored:
        """A 24-hour symptom response: the engine on the patient's active plan."""
        record = repository.active_for(session, recorded.patient)
        return self._progress(
            session, recorded.patient, record, lambda p: apply_symptoms(p, recorded, catalogue=self.catalogue)
        )

    def metric(self, session: Session, m: DeviceMetricComputed) -> Ignored:
        """A device metric (stored by the evaluation service as the Observation the event names): evidence for
        a session."""
        record = repository.active_for(session, m.patient)
        return self._progress(
            session,
            m.patient,
            record,
            lambda p: apply_metric(p, m, catalogue=self.catalogue, observation=m.observation),
        )

    def trial(self, session: Session, summary: TrialSummarized) -> Ignored:
        """A trial summary: each channel's whole-trial result is evidence for the session, in turn (as the
        separate metric events of a close were), each citing the summary's Observation."""
        ignored: list[str] = []
        for m in summary.metrics():
            ignored.extend(self.metric(session, m))
        return tuple(ignored)

    def stream_completed(
        self, session: Session, completed: StreamMetricsCompleted, *, at: datetime
    ) -> Ignored:
        """A stream's metrics are all in: the session waiting on it is judged."""
        record = repository.active_for(session, completed.patient)
        return self._progress(
            session,
            completed.patient,
            record,
            lambda p: apply_stream_completed(p, completed, catalogue=self.catalogue, at=at),
        )

    def sweep_evidence(self, session: Session, at: datetime) -> None:
        """Sessions whose wait for their streams' metrics has ended are judged on what arrived."""
        for record in repository.evidence_overdue(session, at):
            before = record.plan()
            outcome = expire_evidence(before, now=at, catalogue=self.catalogue)
            self.apply(session, record, before, outcome)
            logger.info(
                "evidence wait ended",
                extra={"care_plan": before.reference, "decisions": len(outcome.decisions)},
            )
