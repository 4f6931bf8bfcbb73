"""The Device repository: Devices are FHIR resources in this service's store (``fhir_resource``)."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session

from relearn.shared.fhir import FhirResource


def read_device(session: Session, device_id: str) -> dict[str, Any] | None:
    """The current Device resource, or None when it is unknown or deleted."""
    row = session.get(FhirResource, ("Device", device_id))
    if row is None or row.deleted or not row.text:
        return None
    resource: dict[str, Any] = json.loads(row.text)
    return resource
