"""The FHIR resource types the evaluation service serves, and how each is searched."""

from __future__ import annotations

from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.observation import Observation

from relearn.shared.fhir import (
    OBSERVATION_PARAMS,
    ResourceDefinition,
    date,
    published_code_systems,
    reference,
    token,
)

_SP = "http://hl7.org/fhir/SearchParameter/"
_US_CORE_SP = "http://hl7.org/fhir/us/core/SearchParameter/"

OBSERVATION = ResourceDefinition(
    type="Observation",
    model=Observation,
    search_params=OBSERVATION_PARAMS,
    compartment_param="patient",
    includes=["has-member", "derived-from"],
    documentation="Every measurement: evaluations, re-assessments, session outcomes, device metrics.",
)

# Referral diagnoses (US Core 6.1 Condition profiles) with the searches US Core asks of a server.
CONDITION = ResourceDefinition(
    type="Condition",
    model=Condition,
    search_params=[
        reference(
            "patient", "subject", targets=("Patient",), definition=f"{_US_CORE_SP}us-core-condition-patient"
        ),
        reference("subject", "subject", definition=f"{_SP}Condition-subject"),
        token("identifier", "identifier", definition=f"{_SP}Condition-identifier"),
        token("category", "category", definition=f"{_US_CORE_SP}us-core-condition-category"),
        token("code", "code", definition=f"{_US_CORE_SP}us-core-condition-code"),
        token(
            "clinical-status",
            "clinicalStatus",
            definition=f"{_US_CORE_SP}us-core-condition-clinical-status",
        ),
        token("verification-status", "verificationStatus", definition=f"{_SP}Condition-verification-status"),
        date(
            "onset-date",
            "onsetDateTime",
            "onsetPeriod",
            definition=f"{_US_CORE_SP}us-core-condition-onset-date",
        ),
        date("recorded-date", "recordedDate", definition=f"{_US_CORE_SP}us-core-condition-recorded-date"),
        reference(
            "encounter",
            "encounter",
            targets=("Encounter",),
            definition=f"{_US_CORE_SP}us-core-condition-encounter",
        ),
    ],
    compartment_param="patient",
    documentation="Referral diagnoses (stroke, brain injury, trauma) as US Core Conditions.",
)

# The local CodeSystem is published read-only: it changes with the code, not through the API.
CODE_SYSTEM = published_code_systems(
    "Relearn's local codes for neuromuscular evaluation, session outcomes and device metrics."
)

DEFINITIONS = [OBSERVATION, CONDITION, CODE_SYSTEM]
