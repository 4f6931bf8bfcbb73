"""Publish the local CodeSystem through the FHIR store, so EHRs can read what our codes mean."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from relearn.evaluation import codes
from relearn.evaluation.resources import CODE_SYSTEM
from relearn.shared.db import transaction
from relearn.shared.fhir.store import FhirStore


def publish_codesystem(store: FhirStore, engine: Engine) -> None:
    """Store the shipped CodeSystem as ``CodeSystem/<id>`` unless that version is already there."""
    cs = codes.codesystem()
    with transaction(engine) as session:
        current = store.get(session, CODE_SYSTEM.type, cs["id"])
        if current is not None and not current.deleted:
            stored = current.resource()
            if (stored.get("version"), stored.get("date"), stored.get("count")) == (
                cs.get("version"),
                cs.get("date"),
                cs.get("count"),
            ):
                return
        store.update(session, CODE_SYSTEM, cs["id"], dict(cs))
