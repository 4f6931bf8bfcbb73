"""Recording an evaluation: the panel and its members in one transaction, and the event that says so.

The same use case serves the domain API and any future importer; it never commits (the
caller's transaction does) and never talks to Kafka (the event goes to the outbox).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from relearn.evaluation.events import SOURCE
from relearn.evaluation.observations import evaluation_completed_data, evaluation_to_observations, event_type
from relearn.evaluation.resources import OBSERVATION
from relearn.evaluation.schemas import EvaluationIn
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.events.outbox import stage
from relearn.shared.fhir.errors import Conflict, Forbidden
from relearn.shared.fhir.store import FhirStore

# Namespace for ids derived from a client's Idempotency-Key (a retried request gets the same ids).
_IDEMPOTENT_IDS = uuid.UUID("6f1d9a52-8c1e-4f4e-9b0e-2b7f5d2f1a10")


@dataclass(frozen=True)
class RecordedEvaluation:
    panel: dict[str, Any]
    members: list[dict[str, Any]]
    event_type: str
    event_data: dict[str, Any]
    created: bool  # False when an Idempotency-Key replay found the evaluation already stored


def record_evaluation(
    session: Session,
    store: FhirStore,
    ev: EvaluationIn,
    *,
    idempotency_key: str | None = None,
    patient_restriction: str | None = None,
) -> RecordedEvaluation:
    """Store the evaluation as a panel Observation with ``hasMember`` members and stage its event."""
    if patient_restriction is not None and patient_restriction != ev.patient:
        raise Forbidden(f"This token may only record evaluations of Patient/{patient_restriction}")

    if idempotency_key:
        seed = f"{ev.patient}|{idempotency_key}"

        def ids(path: str) -> str:
            return str(uuid.uuid5(_IDEMPOTENT_IDS, f"{seed}|{path}"))
    else:

        def ids(path: str) -> str:
            return str(uuid.uuid4())

    panel, members = evaluation_to_observations(ev, ids=ids)
    data = evaluation_completed_data(ev, panel, members)
    kind = event_type(ev)

    existing = store.get(session, OBSERVATION.type, panel["id"])
    if existing is not None:
        if existing.deleted or existing.resource().get("subject") != panel.get("subject"):
            raise Conflict("This Idempotency-Key was already used for another evaluation")
        return RecordedEvaluation(panel, members, kind, data, created=False)

    for member in members:
        store.create(session, OBSERVATION, member, id=member["id"])
    store.create(session, OBSERVATION, panel, id=panel["id"])
    stage(session, CloudEvent.new(SOURCE, kind, ev.patient, data))
    return RecordedEvaluation(panel, members, kind, data, created=True)
