"""The FHIR resource types the device gateway serves, and how each is searched."""

from __future__ import annotations

from fhir.resources.R4B.device import Device

from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.search_params import reference, string, token

_SP = "http://hl7.org/fhir/SearchParameter/"

DEVICE = ResourceDefinition(
    type="Device",
    model=Device,
    search_params=[
        reference("patient", "patient", targets=("Patient",), definition=f"{_SP}Device-patient"),
        token("type", "type", definition=f"{_SP}Device-type"),
        token("identifier", "identifier", definition=f"{_SP}Device-identifier"),
        token("status", "status", definition=f"{_SP}Device-status"),
        string("manufacturer", "manufacturer", definition=f"{_SP}Device-manufacturer"),
        string("model", "modelNumber", definition=f"{_SP}Device-model"),
        reference("location", "location", targets=("Location",), definition=f"{_SP}Device-location"),
    ],
    compartment_param="patient",
    documentation="EMG sensors and balance boards, with the clinic gateway that carries them.",
)

DEFINITIONS = [DEVICE]
