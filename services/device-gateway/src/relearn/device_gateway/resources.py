"""The FHIR resource types the device gateway serves, and how each is searched.

Device writes are checked against the Device convention (``device_profile``: kind, channels, sampling rate,
ADC, parent); the two CodeSystems of that convention (device-kind, device-property) are published read-only.
"""

from __future__ import annotations

from fhir.resources.R4B.device import Device
from sqlalchemy.engine import Engine

from relearn.device_gateway.device_profile import check_device, code_systems
from relearn.shared.fhir import (
    CANONICAL_URL,
    FhirStore,
    ResourceDefinition,
    publish_shipped,
    published_code_systems,
    reference,
    string,
    token,
)

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
    validators=[check_device],
    documentation="EMG sensors and balance boards, with the clinic gateway that carries them "
    "(Device.parent); kind, channels, sampling rate and ADC as Device.type and Device.property coded from "
    f"{CANONICAL_URL}/CodeSystem/device-kind and .../device-property.",
)

# The Device convention's CodeSystems are published read-only: they change with the code, not through the API.
CODE_SYSTEM = published_code_systems(
    "Relearn's device kinds (Device.type) and device properties (Device.property.type)."
)

DEFINITIONS = [DEVICE, CODE_SYSTEM]


def publish_code_systems(store: FhirStore, engine: Engine) -> None:
    """Store each shipped CodeSystem as ``CodeSystem/<id>`` unless the stored one already says the same."""
    publish_shipped(store, engine, CODE_SYSTEM, code_systems())
