"""Publish resources a service ships (its local CodeSystems) through its FHIR store at startup."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Engine

from relearn.shared.db import transaction
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.store import FhirStore


def publish_shipped(
    store: FhirStore, engine: Engine, rdef: ResourceDefinition, resources: Iterable[dict[str, Any]]
) -> None:
    """Store each resource as ``<type>/<id>`` unless the stored one already says the same (``meta`` aside)."""
    with transaction(engine) as session:
        for resource in resources:
            current = store.get(session, rdef.type, resource["id"])
            if current is not None and not current.deleted:
                stored = json.loads(current.text)
                stored.pop("meta", None)
                if stored == json.loads(json.dumps(resource)):
                    continue
            store.update(session, rdef, resource["id"], dict(resource))
