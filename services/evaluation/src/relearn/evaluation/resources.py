"""The FHIR resource types the evaluation service serves, and how each is searched."""

from __future__ import annotations

from fhir.resources.R4B.observation import Observation

from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.search_params import date, quantity, reference, token

_SP = "http://hl7.org/fhir/SearchParameter/"

OBSERVATION = ResourceDefinition(
    type="Observation",
    model=Observation,
    search_params=[
        reference("patient", "subject", targets=("Patient",), definition=f"{_SP}clinical-patient"),
        reference("subject", "subject", definition=f"{_SP}Observation-subject"),
        token("code", "code", definition=f"{_SP}clinical-code"),
        token("category", "category", definition=f"{_SP}Observation-category"),
        token("status", "status", definition=f"{_SP}Observation-status"),
        date("date", "effective[x]", definition=f"{_SP}clinical-date"),
        reference("encounter", "encounter", targets=("Encounter",), definition=f"{_SP}clinical-encounter"),
        reference("device", "device", targets=("Device", "DeviceMetric"), definition=f"{_SP}Observation-device"),
        reference("has-member", "hasMember", targets=("Observation", "QuestionnaireResponse", "MolecularSequence"),
                  definition=f"{_SP}Observation-has-member"),
        reference("derived-from", "derivedFrom", definition=f"{_SP}Observation-derived-from"),
        reference("based-on", "basedOn", definition=f"{_SP}Observation-based-on"),
        reference("performer", "performer", definition=f"{_SP}Observation-performer"),
        quantity("value-quantity", "valueQuantity", definition=f"{_SP}Observation-value-quantity"),
    ],
    compartment_param="patient",
    includes=["has-member", "derived-from"],
    documentation="Every measurement in Relearn: evaluations, re-assessments, session outcomes, device metrics.",
)

DEFINITIONS = [OBSERVATION]
