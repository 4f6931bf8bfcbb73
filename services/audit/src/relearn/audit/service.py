"""Use cases of the audit service: keep each access's AuditEvent once."""

from __future__ import annotations

from sqlmodel import Session

from relearn.audit import repository
from relearn.audit.events import Recorded
from relearn.audit.mapper import audit_event
from relearn.shared.fhir import FhirStore


class AuditLog:
    def __init__(self, store: FhirStore) -> None:
        self.store = store

    def record(self, session: Session, recorded: Recorded) -> None:
        """Store the AuditEvent of one access (its id is the event's, so a redelivery changes nothing)."""
        repository.store_once(session, self.store, recorded.id, audit_event(recorded.record, recorded.id))
