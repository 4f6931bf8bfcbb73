"""Publish the plan's local CodeSystems through the FHIR store, so an EHR can resolve every code it reads."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from relearn.plan.careplan_fhir import code_systems
from relearn.plan.catalogue import Catalogue
from relearn.plan.resources import CODE_SYSTEM
from relearn.shared.fhir.publishing import publish_shipped
from relearn.shared.fhir.store import FhirStore


def publish_code_systems(store: FhirStore, catalogue: Catalogue, engine: Engine) -> None:
    """Store each CodeSystem as ``CodeSystem/<id>`` unless the stored one already says the same."""
    publish_shipped(store, engine, CODE_SYSTEM, code_systems(catalogue))
