"""Publish the plan's local CodeSystems through the FHIR store, so an EHR can resolve every code it reads."""

from __future__ import annotations

import json

from sqlalchemy.engine import Engine

from relearn.plan.careplan_fhir import code_systems
from relearn.plan.catalogue import Catalogue
from relearn.plan.resources import CODE_SYSTEM
from relearn.shared.db import transaction
from relearn.shared.fhir.store import FhirStore


def publish_code_systems(store: FhirStore, catalogue: Catalogue, engine: Engine) -> None:
    """Store each CodeSystem as ``CodeSystem/<id>`` unless the stored one already says the same."""
    with transaction(engine) as session:
        for cs in code_systems(catalogue):
            current = store.get(session, CODE_SYSTEM.type, cs["id"])
            if current is not None and not current.deleted:
                stored = json.loads(current.text)
                stored.pop("meta", None)
                if stored == json.loads(json.dumps(cs)):
                    continue
            store.update(session, CODE_SYSTEM, cs["id"], dict(cs))
