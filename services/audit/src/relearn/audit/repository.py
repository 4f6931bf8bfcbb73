"""Every query of the audit service: the FHIR store's, on the shared store tables."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from relearn.audit.resources import AUDIT_EVENT
from relearn.shared.fhir import FhirStore


def store_once(session: Session, store: FhirStore, id: str, resource: dict[str, Any]) -> bool:
    """Store the AuditEvent ``id`` unless it is already there (a redelivered event); True if stored."""
    if store.get(session, AUDIT_EVENT.type, id) is not None:
        return False
    store.create(session, AUDIT_EVENT, resource, id=id)
    return True
