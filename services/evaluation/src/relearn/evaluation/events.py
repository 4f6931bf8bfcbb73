"""Facts the evaluation service publishes, staged in the outbox in the writing transaction."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session

from relearn.shared.events.envelope import CloudEvent
from relearn.shared.events.outbox import stage
from relearn.shared.fhir.store import FhirStore, ResourceChange, WriteHook

SOURCE = "/relearn/evaluation"
OBSERVATION_RECORDED = "observation.recorded.v1"


def patient_of(observation: dict[str, Any]) -> str | None:
    ref = str((observation.get("subject") or {}).get("reference", ""))
    kind, _, rid = ref.rpartition("/")
    return rid if kind.endswith("Patient") and rid else None


def observation_recorded_hook(store: FhirStore) -> WriteHook:
    """Every stored version of a patient's Observation becomes ``observation.recorded.v1``.

    Consumers (the plan service's progression engine) get the measurement itself so they
    never call back; a delete is published with ``status: entered-in-error`` so they stop
    counting it.
    """

    def hook(session: Session, change: ResourceChange) -> None:
        if change.resource_type != "Observation":
            return
        if change.resource is None:
            before = store.get_version(session, "Observation", change.id, change.previous_version_id)
            observation = json.loads(before.text) if before is not None and before.text else {}
            observation["status"] = "entered-in-error"
        else:
            # Plain floats are fine for consumers; the stored text keeps the exact digits.
            observation = json.loads(change.stored.text)
        patient = patient_of(observation)
        if patient is None:
            return
        data = {"id": change.id, "versionId": change.stored.version_id, "observation": observation}
        stage(session, CloudEvent.new(SOURCE, OBSERVATION_RECORDED, patient, data))

    return hook
