"""The FHIR resource types the sessions service serves, and how each is searched."""

from __future__ import annotations

from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.procedure import Procedure

from relearn.shared.fhir import ResourceDefinition, date, reference, token

_SP = "http://hl7.org/fhir/SearchParameter/"

ENCOUNTER = ResourceDefinition(
    type="Encounter",
    model=Encounter,
    search_params=[
        reference("patient", "subject", targets=("Patient",), definition=f"{_SP}clinical-patient"),
        reference("subject", "subject", definition=f"{_SP}Encounter-subject"),
        token("status", "status", definition=f"{_SP}Encounter-status"),
        token("class", "class", definition=f"{_SP}Encounter-class"),
        token("type", "type", definition=f"{_SP}clinical-type"),
        date("date", "period", definition=f"{_SP}clinical-date"),
        reference("based-on", "basedOn", definition=f"{_SP}Encounter-based-on"),
    ],
    compartment_param="patient",
    documentation="One Encounter per therapy session or home-practice session.",
)

PROCEDURE = ResourceDefinition(
    type="Procedure",
    model=Procedure,
    search_params=[
        reference("patient", "subject", targets=("Patient",), definition=f"{_SP}clinical-patient"),
        reference("subject", "subject", definition=f"{_SP}Procedure-subject"),
        token("status", "status", definition=f"{_SP}Procedure-status"),
        token("code", "code", definition=f"{_SP}clinical-code"),
        date("date", "performed[x]", definition=f"{_SP}clinical-date"),
        reference(
            "based-on",
            "basedOn",
            targets=("CarePlan", "ServiceRequest"),
            definition=f"{_SP}Procedure-based-on",
        ),
        reference("encounter", "encounter", targets=("Encounter",), definition=f"{_SP}clinical-encounter"),
        reference("part-of", "partOf", definition=f"{_SP}Procedure-part-of"),
    ],
    compartment_param="patient",
    includes=["encounter", "based-on"],
    documentation="One Procedure per exercise performed in a session.",
)

DEFINITIONS = [ENCOUNTER, PROCEDURE]
