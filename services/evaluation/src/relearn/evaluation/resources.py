"""The FHIR resource types the evaluation service serves, and how each is searched."""

from __future__ import annotations

from fhir.resources.R4B.observation import Observation

from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.r4_search import OBSERVATION_PARAMS

OBSERVATION = ResourceDefinition(
    type="Observation",
    model=Observation,
    search_params=OBSERVATION_PARAMS,
    compartment_param="patient",
    includes=["has-member", "derived-from"],
    documentation="Every measurement: evaluations, re-assessments, session outcomes, device metrics.",
)

DEFINITIONS = [OBSERVATION]
