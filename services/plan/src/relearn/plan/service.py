"""Writing plan versions: the plan row, the FHIR resources an EHR reads, and one event per version.

All in the caller's transaction. Each version is one CarePlan write (so the store's ``versionId`` counts
with :attr:`PlanState.version`, checked with ``If-Match``), plus the Goals and ServiceRequests whose content
changed, plus one event staged in the outbox, in version order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from relearn.plan import persistence
from relearn.plan.careplan_fhir import care_plan, goal_resources, service_requests, task_resources
from relearn.plan.catalogue import Catalogue
from relearn.plan.outbound import SOURCE, version_event
from relearn.plan.persistence import PlanRecord
from relearn.plan.progression import Outcome
from relearn.plan.resources import CARE_PLAN, GOAL, SERVICE_REQUEST, TASK
from relearn.plan.state import PlanState
from relearn.plan.versions import PlanVersion, split_versions
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.events.outbox import stage
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.store import FhirStore

logger = logging.getLogger(__name__)


def _same(stored_text: str, resource: dict[str, Any]) -> bool:
    old = json.loads(stored_text)
    old.pop("meta", None)
    new = json.loads(json.dumps(resource))
    new.setdefault("id", old.get("id"))
    return bool(old == new)


@dataclass
class PlanWriter:
    store: FhirStore
    catalogue: Catalogue

    def _write_if_changed(self, session: Session, rdef: ResourceDefinition, resource: dict[str, Any]) -> None:
        current = self.store.get(session, rdef.type, resource["id"])
        if current is not None and not current.deleted and _same(current.text, resource):
            return
        self.store.update(session, rdef, resource["id"], resource)

    def _write_version(
        self, session: Session, version: PlanVersion, removed: Iterable[str] = ()
    ) -> CloudEvent:
        plan = version.plan
        resource = care_plan(plan, self.catalogue)
        if plan.version == 1:
            stored = self.store.create(session, CARE_PLAN, resource, id=plan.id)
        else:
            stored = self.store.update(session, CARE_PLAN, plan.id, resource, if_match=plan.version - 1)
        if stored.version_id != plan.version:  # pragma: no cover - the If-Match above guarantees it
            raise RuntimeError(f"CarePlan/{plan.id} is at {stored.version_id}, plan at {plan.version}")
        for goal in goal_resources(plan):
            self._write_if_changed(session, GOAL, goal)
        for request in service_requests(plan, self.catalogue):
            self._write_if_changed(session, SERVICE_REQUEST, request)
        for task in task_resources(plan):
            self._write_if_changed(session, TASK, task)
        for activity_id in removed:
            current = self.store.get(session, SERVICE_REQUEST.type, activity_id)
            if current is not None and not current.deleted:
                self.store.delete(session, SERVICE_REQUEST, activity_id)
        event_type, data = version_event(plan, version.decision)
        event = CloudEvent.new(SOURCE, event_type, plan.patient, data)
        stage(session, event)
        return event

    def create(self, session: Session, plan: PlanState) -> tuple[PlanRecord, list[CloudEvent]]:
        """A new draft (version 1): its row, CarePlan, Goals, ServiceRequests and ``plan.drafted.v1``."""
        event = self._write_version(session, PlanVersion(plan, None))
        return persistence.save(session, plan), [event]

    def apply(
        self, session: Session, record: PlanRecord, before: PlanState, outcome: Outcome
    ) -> tuple[PlanState, list[CloudEvent]]:
        """Persist an outcome of ``before``: one version (and event) per decision when it changed the plan."""
        if not outcome.changed:
            if outcome.plan != before:  # the session log, a pending metric: kept, no new version
                persistence.save(session, outcome.plan, record)
                for task in task_resources(outcome.plan):
                    self._write_if_changed(session, TASK, task)
            return outcome.plan, []
        versions = split_versions(before, outcome.plan)
        kept = {a.id for a in outcome.plan.activities}
        removed = [a.id for a in before.activities if a.id not in kept]
        events = [self._write_version(session, v, removed if i == 0 else ()) for i, v in enumerate(versions)]
        final = versions[-1].plan
        persistence.save(session, final, record)
        logger.info(
            "plan versioned",
            extra={
                "care_plan": final.reference,
                "versions": [v.plan.version for v in versions],
                "events": [e.type for e in events],
            },
        )
        return final, events
