"""The FHIR resource types the evaluation service serves, and how each is searched."""

from __future__ import annotations

from fhir.resources.R4B.observation import Observation

from relearn.shared.fhir import OBSERVATION_PARAMS, ResourceDefinition, published_code_systems

OBSERVATION = ResourceDefinition(
    type="Observation",
    model=Observation,
    search_params=OBSERVATION_PARAMS,
    compartment_param="patient",
    includes=["has-member", "derived-from"],
    documentation="Every measurement: evaluations, re-assessments, session outcomes, device metrics.",
)

# The local CodeSystem is published read-only: it changes with the code, not through the API.
CODE_SYSTEM = published_code_systems(
    "Relearn's local codes for neuromuscular evaluation, session outcomes and device metrics."
)

DEFINITIONS = [OBSERVATION, CODE_SYSTEM]
