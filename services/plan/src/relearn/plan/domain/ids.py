"""Ids for the resources a plan creates, from a factory the caller provides.

The lead passes its own factory (so the store can assign server ids); the default derives a UUID from the
resource type and a natural key (the plan, the pattern and side, the goal's source), so drafting the same
evaluation twice gives the same ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

IdFactory = Callable[[str, str], str]
"""``(resource_type, natural_key) -> id``: a FHIR id (1-64 of ``[A-Za-z0-9-.]``)."""

_NAMESPACE = uuid.UUID("5d0a3f7e-4a5c-4f0e-9a57-2f1b8a6c9e11")


def stable_id(resource_type: str, key: str) -> str:
    """A deterministic FHIR id for ``key`` (UUID v5)."""
    return str(uuid.uuid5(_NAMESPACE, f"{resource_type}|{key}"))
