"""The R4 search parameters of resource types several services serve, ready to declare.

    ResourceDefinition(type="Observation", model=Observation, search_params=OBSERVATION_PARAMS,
                       compartment_param="patient", includes=["has-member", "derived-from"])

Paths name concrete choice elements where R4 restricts the type (``value-concept`` is
``valueCodeableConcept``, not every ``value[x]``).
"""

from __future__ import annotations

from relearn.shared.fhir.search_params import SearchParam, date, quantity, reference, string, token

_SUBJECT_TARGETS = ("Patient", "Group", "Device", "Location")
_PERFORMER_TARGETS = (
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "CareTeam",
    "Patient",
    "RelatedPerson",
)

OBSERVATION_PARAMS: tuple[SearchParam, ...] = (
    token("identifier", "identifier", description="Business identifier"),
    token("status", "status"),
    token("category", "category"),
    token("code", "code"),
    token("combo-code", "code", "component.code", description="code or component.code"),
    token("component-code", "component.code"),
    token("data-absent-reason", "dataAbsentReason"),
    token("method", "method"),
    token("value-concept", "valueCodeableConcept"),
    date("date", "effective[x]", description="Clinically relevant time (effective[x])"),
    date("value-date", "valueDateTime", "valuePeriod"),
    quantity("value-quantity", "valueQuantity"),
    quantity("component-value-quantity", "component.valueQuantity"),
    string("value-string", "valueString"),
    reference("subject", "subject", targets=_SUBJECT_TARGETS),
    reference("patient", "subject", targets=("Patient",)),
    reference("encounter", "encounter", targets=("Encounter",)),
    reference("performer", "performer", targets=_PERFORMER_TARGETS),
    reference(
        "has-member", "hasMember", targets=("Observation", "QuestionnaireResponse", "MolecularSequence")
    ),
    reference("derived-from", "derivedFrom"),
    reference("part-of", "partOf"),
    reference("based-on", "basedOn"),
    reference("device", "device", targets=("Device", "DeviceMetric")),
    reference("focus", "focus"),
    reference("specimen", "specimen", targets=("Specimen",)),
)

PATIENT_PARAMS: tuple[SearchParam, ...] = (
    token("identifier", "identifier"),
    token("active", "active"),
    token("gender", "gender"),
    token("telecom", "telecom"),
    token("language", "communication.language"),
    token("address-use", "address.use"),
    token("deceased", "deceasedBoolean"),
    date("birthdate", "birthDate"),
    date("death-date", "deceasedDateTime"),
    string("name", "name"),
    string("family", "name.family"),
    string("given", "name.given"),
    string("address", "address"),
    string("address-city", "address.city"),
    string("address-country", "address.country"),
    string("address-postalcode", "address.postalCode"),
    string("address-state", "address.state"),
    reference("general-practitioner", "generalPractitioner"),
    reference("organization", "managingOrganization", targets=("Organization",)),
    reference("link", "link.other", targets=("Patient", "RelatedPerson")),
)
