"""The Device convention: how a FHIR Device tells the gateway what a sensor is and what its frames look like.

A device registered with the gateway (``PUT /fhir/Device/<id>``) may declare, all optional::

    {"resourceType": "Device", "id": "emg-7", "status": "active",
     "type": {"coding": [{"system": "https://relearn.health/fhir/CodeSystem/device-kind",
                          "code": "emg-sensor", "display": "EMG sensor"}]},
     "serialNumber": "DL-2231-0042",
     "parent": {"reference": "Device/hub-clinic-1"},            # the clinic gateway that carries it
     "property": [
       {"type": {"coding": [{"system": PROPERTY_SYSTEM, "code": "sampling-rate"}]},
        "valueQuantity": [{"value": 1000, "unit": "Hz", "system": UCUM, "code": "Hz"}]},
       {"type": {"coding": [{"system": PROPERTY_SYSTEM, "code": "channel"}]},       # one per channel
        "valueCode": [{"text": "vastus-medialis-left"}],
        "valueQuantity": [{"unit": "mV", "system": UCUM, "code": "mV"}]},
       {"type": ... "adc-resolution"}, "valueQuantity": [{"value": 16, "code": "{bits}", ...}]},
       {"type": ... "adc-gain"},       "valueQuantity": [{"value": 0.000195, "code": "mV", ...}]},
       {"type": ... "adc-offset"},     "valueQuantity": [{"value": 32768, "code": "{counts}", ...}]},
       {"type": ... "load-cell-spacing"},
        "valueQuantity": [{"value": 43.3, "code": "cm", ...}, {"value": 23.8, "code": "cm", ...}]}
     ]}

- ``Device.type``: a coding from :data:`KIND_SYSTEM` (:class:`DeviceKind`); other codings (an EHR's own) are
  left alone. No SNOMED CT code was verified for these device types, so the codes are local only.
- ``Device.property``: entries whose ``type`` has a coding from :data:`PROPERTY_SYSTEM`
  (:class:`PropertyCode`); others are left alone. R4 ``Device.property`` carries ``valueQuantity`` and
  ``valueCode`` (CodeableConcept) lists, so a channel is its name in ``valueCode[0].text`` with its unit in a
  value-less ``valueQuantity[0]``.
- ``Device.parent``: ``Device/<id>`` of the clinic gateway (a hub's token may push its sensors' frames).

Both CodeSystems ship in ``codesystem/`` and are published read-only at ``/fhir/CodeSystem``.

:func:`check_device` is the FHIR store's validator for Device writes (400 OperationOutcome naming each wrong
element, ``Device.property[1].valueQuantity[0].value``); :func:`device_spec` reads a stored Device into a
:class:`DeviceSpec`, tolerantly (what is missing or malformed is just not declared);
:func:`frame_matches_device` checks a sensor frame against the spec; :class:`DeviceSpecCache` keeps specs
per device id for a few seconds so the ingest path does not parse a Device per frame.

Where each part lives: :mod:`.domain.codes` (the codes, CodeSystem URLs, unit tables, the shipped
CodeSystems), :mod:`.domain.spec` (:class:`DeviceSpec`), :mod:`.mapper` (a Device -> its spec and its
problems),
:mod:`.service` (the validator and write hook for Device writes; :class:`DeviceSpecCache`),
:mod:`.domain.matching` (a frame against its Device).
"""

from relearn.device_gateway.device_profile.domain.codes import (
    CHANNEL_NAMES,
    CHANNEL_UNITS,
    CODESYSTEM_FILES,
    KIND_SYSTEM,
    PROPERTY_SYSTEM,
    STREAM_TYPES,
    UCUM,
    DeviceKind,
    PropertyCode,
    code_systems,
    defined_codes,
)
from relearn.device_gateway.device_profile.domain.matching import frame_matches_device
from relearn.device_gateway.device_profile.domain.spec import AdcSpec, ChannelSpec, DeviceSpec
from relearn.device_gateway.device_profile.mapper import device_spec
from relearn.device_gateway.device_profile.service import DeviceSpecCache, check_device, device_written_hook

__all__ = [
    "CHANNEL_NAMES",
    "CHANNEL_UNITS",
    "CODESYSTEM_FILES",
    "KIND_SYSTEM",
    "PROPERTY_SYSTEM",
    "STREAM_TYPES",
    "UCUM",
    "AdcSpec",
    "ChannelSpec",
    "DeviceKind",
    "DeviceSpec",
    "DeviceSpecCache",
    "PropertyCode",
    "check_device",
    "code_systems",
    "defined_codes",
    "device_spec",
    "device_written_hook",
    "frame_matches_device",
]
