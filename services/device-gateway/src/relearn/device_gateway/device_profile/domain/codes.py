"""The codes of the Device convention: the device kinds and property codes with their CodeSystem URLs, what
each kind sends (stream types, channel units and names), and the two CodeSystems as shipped."""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from relearn.device_gateway.signals.frames import StreamType
from relearn.shared.fhir import CANONICAL_URL

KIND_SYSTEM = f"{CANONICAL_URL}/CodeSystem/device-kind"
PROPERTY_SYSTEM = f"{CANONICAL_URL}/CodeSystem/device-property"
UCUM = "http://unitsofmeasure.org"

MUSCLE_SYSTEM = f"{CANONICAL_URL}/CodeSystem/muscle"

# The muscle CodeSystem (stream bindings' protocol.muscles, see streams.domain) is published with these two.
CODESYSTEM_FILES = (
    "relearn-device-kind-codesystem.json",
    "relearn-device-property-codesystem.json",
    "relearn-muscle-codesystem.json",
)


class DeviceKind(StrEnum):
    EMG_SENSOR = "emg-sensor"
    FORCE_PLATE = "force-plate"
    LOAD_CELL_BOARD = "load-cell-board"
    COP_BOARD = "cop-board"
    CLINIC_GATEWAY = "clinic-gateway"


class PropertyCode(StrEnum):
    SAMPLING_RATE = "sampling-rate"
    CHANNEL = "channel"
    ADC_RESOLUTION = "adc-resolution"
    ADC_GAIN = "adc-gain"
    ADC_OFFSET = "adc-offset"
    LOAD_CELL_SPACING = "load-cell-spacing"


# The stream types a device of each kind sends (a clinic gateway only forwards its sensors' frames).
STREAM_TYPES: dict[DeviceKind, frozenset[StreamType]] = {
    DeviceKind.EMG_SENSOR: frozenset({StreamType.EMG}),
    DeviceKind.FORCE_PLATE: frozenset({StreamType.FORCE_PLATE}),
    DeviceKind.LOAD_CELL_BOARD: frozenset({StreamType.LOAD_CELLS}),
    DeviceKind.COP_BOARD: frozenset({StreamType.COP}),
    DeviceKind.CLINIC_GATEWAY: frozenset(),
}

# Channel units (UCUM) per kind, as the frames of the matching stream type allow them.
CHANNEL_UNITS: dict[DeviceKind, frozenset[str]] = {
    DeviceKind.EMG_SENSOR: frozenset({"V", "mV", "uV", "{counts}"}),
    DeviceKind.FORCE_PLATE: frozenset({"N", "N.m"}),
    DeviceKind.LOAD_CELL_BOARD: frozenset({"N", "kg"}),
    DeviceKind.COP_BOARD: frozenset({"cm", "mm", "m"}),
}
# Any of them (a Device of no declared kind).
ANY_CHANNEL_UNIT = frozenset().union(*CHANNEL_UNITS.values())

# Kinds with a fixed channel layout: the names their channels may have.
CHANNEL_NAMES: dict[DeviceKind, frozenset[str]] = {
    DeviceKind.FORCE_PLATE: frozenset({"Fx", "Fy", "Fz", "Mx", "My", "Mz"}),
    DeviceKind.LOAD_CELL_BOARD: frozenset({"TL", "TR", "BL", "BR"}),
    DeviceKind.COP_BOARD: frozenset({"x", "y"}),
}


# -- the published CodeSystems -----------------------------------------------------------------------------
@cache
def _code_system_texts() -> tuple[str, ...]:
    folder = resources.files("relearn.device_gateway") / "codesystem"
    return tuple((folder / name).read_text(encoding="utf-8") for name in CODESYSTEM_FILES)


def code_systems() -> list[dict[str, Any]]:
    """The shipped CodeSystems (device-kind, device-property, muscle), fresh copies."""
    return [json.loads(text) for text in _code_system_texts()]


def defined_codes(url: str) -> frozenset[str]:
    """Codes the shipped CodeSystem ``url`` defines (for tests and tooling)."""
    for cs in code_systems():
        if cs["url"] == url:
            return frozenset(c["code"] for c in cs["concept"])
    raise KeyError(url)
