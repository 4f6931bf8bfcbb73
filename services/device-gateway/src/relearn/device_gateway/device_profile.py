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
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, TypeGuard

from sqlmodel import Session

from relearn.device_gateway.authz import read_device
from relearn.device_gateway.signals.frames import SensorFrame, StreamType
from relearn.device_gateway.signals.metrics import ucum_unit
from relearn.shared.fhir.errors import InvalidResource, Issue, UnprocessableEntity
from relearn.shared.fhir.records import ResourceChange, WriteHook
from relearn.shared.fhir.store import FhirStore

KIND_SYSTEM = "https://relearn.health/fhir/CodeSystem/device-kind"
PROPERTY_SYSTEM = "https://relearn.health/fhir/CodeSystem/device-property"
UCUM = "http://unitsofmeasure.org"

CODESYSTEM_FILES = ("relearn-device-kind-codesystem.json", "relearn-device-property-codesystem.json")


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
_ANY_CHANNEL_UNIT = frozenset().union(*CHANNEL_UNITS.values())

# Kinds with a fixed channel layout: the names their channels may have.
CHANNEL_NAMES: dict[DeviceKind, frozenset[str]] = {
    DeviceKind.FORCE_PLATE: frozenset({"Fx", "Fy", "Fz", "Mx", "My", "Mz"}),
    DeviceKind.LOAD_CELL_BOARD: frozenset({"TL", "TR", "BL", "BR"}),
    DeviceKind.COP_BOARD: frozenset({"x", "y"}),
}
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # as SensorFrame channels
_TRANSFER_UNITS = frozenset({"V", "mV", "uV"})
_TO_CM = {"cm": 1.0, "mm": 0.1, "m": 100.0}
_RATE_TOLERANCE = 0.01  # relative: a frame at 1000 Hz fits a device declared at 1005 Hz


# -- the parsed convention ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChannelSpec:
    name: str
    unit: str | None  # UCUM ("mV", "N.m", "{counts}"), None when the Device gives none


@dataclass(frozen=True, slots=True)
class AdcSpec:
    """physical = (counts - offset) * gain, in ``gain_unit``."""

    resolution_bits: int | None = None
    gain: float | None = None
    gain_unit: str | None = None
    offset: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What a Device declares under the convention; every part optional (None / empty = not declared)."""

    id: str | None = None
    kind: DeviceKind | None = None
    serial: str | None = None
    parent: str | None = None  # id of the Device that carries it (the clinic gateway)
    sampling_rate_hz: float | None = None
    channels: tuple[ChannelSpec, ...] = ()
    adc: AdcSpec | None = None
    load_cell_spacing_cm: tuple[float, float] | None = None  # (left-right, front-back)

    @property
    def stream_types(self) -> frozenset[StreamType] | None:
        """The stream types this device may send (None: no kind declared, so any)."""
        return None if self.kind is None else STREAM_TYPES[self.kind]

    def channel(self, name: str) -> ChannelSpec | None:
        return next((c for c in self.channels if c.name == name), None)


# -- reading (and checking) a Device ----------------------------------------------------------------------
def device_spec(device: Mapping[str, Any]) -> DeviceSpec:
    """The spec of a stored Device; what is absent or malformed is simply not declared."""
    return _Reader(device).spec()


def check_device(device: dict[str, Any]) -> None:
    """The FHIR store's validator for Device: 400 OperationOutcome with one issue per element that breaks
    the convention (only elements that use the Relearn CodeSystems, and ``parent``, are checked)."""
    reader = _Reader(device)
    reader.spec()
    if reader.issues:
        raise InvalidResource(reader.issues[0].diagnostics, issues=reader.issues)


class _Reader:
    """Walks a Device once, building the spec and noting every problem (``issues``) on the way."""

    def __init__(self, device: Mapping[str, Any]) -> None:
        self.device = device
        self.issues: list[Issue] = []

    def fail(self, where: str, message: str, code: str = "value") -> None:
        self.issues.append(Issue(code, f"{where}: {message}", "error", [where]))

    def spec(self) -> DeviceSpec:
        device = self.device
        kind = self._kind()
        serial = device.get("serialNumber")
        values: dict[PropertyCode, list[tuple[int, dict[str, Any]]]] = {}
        props = device.get("property")
        for i, prop in enumerate(props if isinstance(props, list) else []):
            code = self._property_code(i, prop)
            if code is not None:
                values.setdefault(code, []).append((i, prop))
        rate = self._rate(values.get(PropertyCode.SAMPLING_RATE, []))
        channels = self._channels(kind, values.get(PropertyCode.CHANNEL, []))
        adc = self._adc(values)
        spacing = self._spacing(kind, values.get(PropertyCode.LOAD_CELL_SPACING, []))
        if kind is DeviceKind.CLINIC_GATEWAY:
            for code in (PropertyCode.SAMPLING_RATE, PropertyCode.CHANNEL):
                for i, _ in values.get(code, []):
                    self.fail(f"Device.property[{i}]", f"a clinic gateway records nothing itself: no {code}")
        ident = device.get("id")
        return DeviceSpec(
            id=ident if isinstance(ident, str) else None,
            kind=kind,
            serial=serial if isinstance(serial, str) else None,
            parent=self._parent(),
            sampling_rate_hz=rate,
            channels=channels,
            adc=adc,
            load_cell_spacing_cm=spacing,
        )

    # -- Device.type, Device.parent ---------------------------------------------------------------------
    def _kind(self) -> DeviceKind | None:
        concept = self.device.get("type")
        codings = _list(concept.get("coding")) if _is_dict(concept) else []
        kinds: list[DeviceKind] = []
        for j, coding in enumerate(codings):
            if not _is_dict(coding) or coding.get("system") != KIND_SYSTEM:
                continue
            code = coding.get("code")
            where = f"Device.type.coding[{j}].code"
            if not isinstance(code, str) or code not in DeviceKind.__members__.values():
                known = ", ".join(k.value for k in DeviceKind)
                self.fail(where, f"{code!r} is not a code of {KIND_SYSTEM} ({known})", "code-invalid")
                continue
            kind = DeviceKind(code)
            if kinds and kind not in kinds:
                self.fail(where, f"a device is one kind; {kinds[0].value} is already given")
                continue
            kinds.append(kind)
        return kinds[0] if kinds else None

    def _parent(self) -> str | None:
        parent = self.device.get("parent")
        if parent is None:
            return None
        where = "Device.parent"
        if not _is_dict(parent):
            self.fail(where, "must be a reference 'Device/<id>' to the clinic gateway that carries it")
            return None
        if parent.get("type") not in (None, "Device"):
            self.fail(f"{where}.type", "the parent of a Device is a Device (the clinic gateway)")
            return None
        ref = parent.get("reference")
        if not isinstance(ref, str):
            self.fail(where, "must be a reference 'Device/<id>' to the clinic gateway that carries it")
            return None
        parent_id = ref.removeprefix("Device/").split("/_history/")[0]
        if not ref.startswith("Device/") or not parent_id or "/" in parent_id:
            self.fail(f"{where}.reference", f"{ref!r} is not a reference 'Device/<id>' (the clinic gateway)")
            return None
        if parent_id == self.device.get("id"):
            self.fail(f"{where}.reference", "a Device cannot be its own parent")
            return None
        return parent_id

    # -- Device.property --------------------------------------------------------------------------------
    def _property_code(self, i: int, prop: Any) -> PropertyCode | None:
        if not _is_dict(prop) or not _is_dict(prop.get("type")):
            return None
        for j, coding in enumerate(_list(prop["type"].get("coding"))):
            if _is_dict(coding) and coding.get("system") == PROPERTY_SYSTEM:
                code = coding.get("code")
                if isinstance(code, str) and code in PropertyCode.__members__.values():
                    return PropertyCode(code)
                known = ", ".join(p.value for p in PropertyCode)
                self.fail(
                    f"Device.property[{i}].type.coding[{j}].code",
                    f"{code!r} is not a code of {PROPERTY_SYSTEM} ({known})",
                    "code-invalid",
                )
        return None

    def _single(
        self, entries: list[tuple[int, dict[str, Any]]], code: PropertyCode
    ) -> tuple[int, Any] | None:
        """The one valueQuantity of a property given once (later entries are reported, not used)."""
        for i, _ in entries[1:]:
            self.fail(f"Device.property[{i}]", f"{code} is declared more than once")
        if not entries:
            return None
        i, prop = entries[0]
        quantities = _list(prop.get("valueQuantity"))
        if len(quantities) != 1 or not _is_dict(quantities[0]):
            self.fail(f"Device.property[{i}].valueQuantity", f"{code} needs exactly one valueQuantity")
            return None
        return i, quantities[0]

    def _value(self, where: str, quantity: dict[str, Any]) -> float | None:
        value = _number(quantity.get("value"))
        if value is None:
            self.fail(f"{where}.value", "a number is required")
        return value

    def _unit(self, where: str, quantity: dict[str, Any], allowed: frozenset[str] | None) -> str | None:
        """The UCUM unit of a Quantity (its ``code``, else its ``unit``); None and an issue when unknown."""
        system = quantity.get("system")
        code = quantity.get("code")
        if code is None:
            code, where = quantity.get("unit"), f"{where}.unit"
        else:
            where = f"{where}.code"
        if code is None:
            return None
        if system not in (None, UCUM):
            self.fail(f"{where.rsplit('.', 1)[0]}.system", f"units are UCUM ({UCUM}), not {system!r}")
            return None
        try:
            unit = ucum_unit(str(code))
        except ValueError:
            unit = None
        if unit is None or (allowed is not None and unit not in allowed):
            known = ", ".join(sorted(allowed if allowed is not None else _ANY_CHANNEL_UNIT))
            self.fail(where, f"unit {code!r} is not allowed here (allowed: {known})", "code-invalid")
            return None
        return unit

    def _rate(self, entries: list[tuple[int, dict[str, Any]]]) -> float | None:
        found = self._single(entries, PropertyCode.SAMPLING_RATE)
        if found is None:
            return None
        i, quantity = found
        where = f"Device.property[{i}].valueQuantity[0]"
        value = self._value(where, quantity)
        unit = quantity.get("code", quantity.get("unit"))
        if unit not in (None, "Hz") or quantity.get("system") not in (None, UCUM):
            self.fail(f"{where}.code", f"the sampling rate is in Hz (UCUM 'Hz'), not {unit!r}")
            return None
        if value is not None and not (value > 0 and math.isfinite(value)):
            self.fail(f"{where}.value", f"the sampling rate must be a positive number of Hz, not {value:g}")
            return None
        return value

    def _channels(
        self, kind: DeviceKind | None, entries: list[tuple[int, dict[str, Any]]]
    ) -> tuple[ChannelSpec, ...]:
        allowed_units = CHANNEL_UNITS.get(kind) if kind is not None else _ANY_CHANNEL_UNIT
        allowed_names = CHANNEL_NAMES.get(kind) if kind is not None else None
        channels: list[ChannelSpec] = []
        seen: dict[str, int] = {}
        for i, prop in entries:
            where = f"Device.property[{i}]"
            codes = _list(prop.get("valueCode"))
            name = _concept_text(codes[0]) if len(codes) == 1 else None
            if name is None:
                self.fail(f"{where}.valueCode", "a channel needs exactly one valueCode: the channel's name")
                continue
            name_at = f"{where}.valueCode[0].text"
            if len(name) > 64 or not _CHANNEL_NAME.match(name):
                self.fail(name_at, f"{name!r} is not a channel name (letters, digits, '.', '_', '-'; max 64)")
                continue
            if allowed_names is not None and kind is not None and name not in allowed_names:
                names = " ".join(sorted(allowed_names))
                self.fail(name_at, f"a {kind} has the channels {names}; not {name!r}")
                continue
            if name in seen:
                first = f"Device.property[{seen[name]}]"
                self.fail(name_at, f"channel {name!r} is declared twice (first in {first})")
                continue
            seen[name] = i
            quantities = _list(prop.get("valueQuantity"))
            unit = None
            if len(quantities) > 1:
                self.fail(f"{where}.valueQuantity", "a channel has at most one valueQuantity (its unit)")
            elif quantities and _is_dict(quantities[0]):
                unit = self._unit(f"{where}.valueQuantity[0]", quantities[0], allowed_units)
            channels.append(ChannelSpec(name, unit))
        return tuple(channels)

    def _adc(self, values: Mapping[PropertyCode, list[tuple[int, dict[str, Any]]]]) -> AdcSpec | None:
        bits = gain = gain_unit = offset = None
        found = self._single(values.get(PropertyCode.ADC_RESOLUTION, []), PropertyCode.ADC_RESOLUTION)
        if found is not None:
            where = f"Device.property[{found[0]}].valueQuantity[0]"
            value = self._value(where, found[1])
            if value is not None and (value != int(value) or not 1 <= value <= 32):
                self.fail(f"{where}.value", f"the ADC resolution is whole bits, 1..32, not {value:g}")
            elif value is not None:
                bits = int(value)
        found = self._single(values.get(PropertyCode.ADC_GAIN, []), PropertyCode.ADC_GAIN)
        if found is not None:
            where = f"Device.property[{found[0]}].valueQuantity[0]"
            value = self._value(where, found[1])
            unit = None
            if _has_unit(found[1]):
                unit = self._unit(where, found[1], _TRANSFER_UNITS)
            else:
                self.fail(f"{where}.code", "the ADC gain needs its physical unit per count (V, mV or uV)")
            if value is not None and (value == 0 or not math.isfinite(value)):
                self.fail(f"{where}.value", "the ADC gain must be a finite number other than 0")
            elif value is not None and unit is not None:
                gain, gain_unit = value, unit
        found = self._single(values.get(PropertyCode.ADC_OFFSET, []), PropertyCode.ADC_OFFSET)
        if found is not None:
            where = f"Device.property[{found[0]}].valueQuantity[0]"
            value = self._value(where, found[1])
            if value is not None and not math.isfinite(value):
                self.fail(f"{where}.value", "the ADC offset must be finite")
            elif value is not None:
                offset = value
        if bits is None and gain is None and offset is None:
            return None
        return AdcSpec(resolution_bits=bits, gain=gain, gain_unit=gain_unit, offset=offset)

    def _spacing(
        self, kind: DeviceKind | None, entries: list[tuple[int, dict[str, Any]]]
    ) -> tuple[float, float] | None:
        for i, _ in entries[1:]:
            self.fail(f"Device.property[{i}]", "load-cell-spacing is declared more than once")
        if not entries:
            return None
        i, prop = entries[0]
        where = f"Device.property[{i}]"
        if kind not in (None, DeviceKind.LOAD_CELL_BOARD):
            self.fail(where, f"load-cell-spacing is for a load-cell-board, not a {kind}")
            return None
        quantities = _list(prop.get("valueQuantity"))
        if not 1 <= len(quantities) <= 2:
            self.fail(f"{where}.valueQuantity", "give the left-right and (optionally) front-back distances")
            return None
        distances: list[float] = []
        for j, quantity in enumerate(quantities):
            at = f"{where}.valueQuantity[{j}]"
            if not _is_dict(quantity):
                self.fail(at, "must be a Quantity")
                return None
            value = self._value(at, quantity)
            unit = self._unit(at, quantity, frozenset(_TO_CM)) if _has_unit(quantity) else "cm"
            if value is None or unit is None:
                return None
            cm = value * _TO_CM[unit]
            if not (0 < cm <= 500):
                self.fail(f"{at}.value", f"a load-cell distance is over 0 and at most 500 cm, not {cm:g} cm")
                return None
            distances.append(cm)
        return (distances[0], distances[-1])


def _is_dict(value: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _has_unit(quantity: Mapping[str, Any]) -> bool:
    return quantity.get("code") is not None or quantity.get("unit") is not None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


def _concept_text(concept: Any) -> str | None:
    """A channel name from a CodeableConcept: its ``text``, else its first coding's ``code``."""
    if not _is_dict(concept):
        return None
    text = concept.get("text")
    if isinstance(text, str) and text:
        return text
    codings = _list(concept.get("coding"))
    code = codings[0].get("code") if codings and _is_dict(codings[0]) else None
    return code if isinstance(code, str) and code else None


# -- frames against the Device -----------------------------------------------------------------------------
def frame_matches_device(spec: DeviceSpec, frame: SensorFrame, where: str = "frame") -> list[Issue]:
    """What in ``frame`` contradicts the Device it comes from (empty: nothing), each issue naming the field
    under ``where`` (ingest passes ``frames[i]``): ``frames[i].streamType`` for a stream type the device's
    kind does not send, ``frames[i].samplingRateHz`` off the declared rate by more than 1 %,
    ``frames[i].channels[c].name`` for a channel the Device does not declare, ``frames[i].channels[c].unit``
    for another unit than declared (a channel in counts with a transfer function matches either ``{counts}``
    or the transfer's unit), ``frames[i].adc.resolutionBits`` / ``frames[i].adc.transfer.gain`` when they
    differ from the declared ADC. What the Device does not declare is not checked."""
    issues: list[Issue] = []

    def fail(path: str, message: str) -> None:
        issues.append(Issue("processing", f"{path}: {message}", "error", [path]))

    device = f"Device/{spec.id}" if spec.id else "the Device"
    allowed = spec.stream_types
    if allowed is not None and frame.stream_type not in allowed:
        sends = " or ".join(sorted(allowed)) or "no stream itself"
        fail(f"{where}.streamType", f"{device} is a {spec.kind} and sends {sends}, not {frame.stream_type}")
    rate = spec.sampling_rate_hz
    if rate is not None and abs(frame.sampling_rate_hz - rate) > _RATE_TOLERANCE * rate:
        fail(
            f"{where}.samplingRateHz",
            f"{frame.sampling_rate_hz:g} Hz is not the {rate:g} Hz {device} declares (1 % tolerance)",
        )
    if spec.channels:
        transfer = frame.adc.transfer if frame.adc else None
        for c, channel in enumerate(frame.channels):
            declared = spec.channel(channel.name)
            if declared is None:
                names = ", ".join(d.name for d in spec.channels)
                message = f"{channel.name!r} is not a channel of {device} ({names})"
                fail(f"{where}.channels[{c}].name", message)
                continue
            if declared.unit is None:
                continue
            sent = {ucum_unit(channel.unit)}
            if channel.unit == "counts" and transfer is not None:
                sent.add(ucum_unit(transfer.unit))
            if declared.unit not in sent:
                fail(
                    f"{where}.channels[{c}].unit",
                    f"{channel.name} is in {declared.unit} on {device}, not {channel.unit}",
                )
    adc = spec.adc
    if adc is not None and frame.adc is not None:
        if adc.resolution_bits is not None and frame.adc.resolution_bits != adc.resolution_bits:
            fail(
                f"{where}.adc.resolutionBits",
                f"{device} has a {adc.resolution_bits}-bit ADC, not {frame.adc.resolution_bits}-bit",
            )
        transfer = frame.adc.transfer
        if adc.gain is not None and transfer is not None and adc.gain_unit is not None:
            declared_gain = adc.gain * _VOLTS[adc.gain_unit]
            sent_gain = transfer.gain * _VOLTS[ucum_unit(transfer.unit)]
            if not math.isclose(declared_gain, sent_gain, rel_tol=1e-6):
                fail(
                    f"{where}.adc.transfer.gain",
                    f"{transfer.gain:g} {transfer.unit}/count is not the gain {device} declares "
                    f"({adc.gain:g} {adc.gain_unit}/count)",
                )
    return issues


_VOLTS = {"V": 1.0, "mV": 1e-3, "uV": 1e-6}


class DeviceSpecCache:
    """Device specs by id, read from the FHIR store at most once per ``ttl_s`` per device (ingest checks many
    frames per second against the same few devices). ``invalidate`` drops an entry when a Device is written
    in this process (see :func:`device_written_hook`); other processes see a change within ``ttl_s``.
    Thread-safe; holds at most ``max_entries`` devices (least recently read dropped first)."""

    def __init__(
        self, ttl_s: float = 5.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, DeviceSpec | None]] = OrderedDict()

    def get(self, session: Session, device_id: str) -> DeviceSpec | None:
        """The spec of ``device_id`` (None when the Device is unknown or deleted)."""
        now = self._clock()
        with self._lock:
            hit = self._entries.get(device_id)
            if hit is not None and now - hit[0] < self.ttl_s:
                self._entries.move_to_end(device_id)
                return hit[1]
        resource = read_device(session, device_id)
        spec = device_spec(resource) if resource is not None else None
        with self._lock:
            self._entries[device_id] = (now, spec)
            self._entries.move_to_end(device_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return spec

    def invalidate(self, device_id: str | None = None) -> None:
        """Forget ``device_id`` (or every device)."""
        with self._lock:
            if device_id is None:
                self._entries.clear()
            else:
                self._entries.pop(device_id, None)


def device_written_hook(specs: DeviceSpecCache) -> Callable[[FhirStore], WriteHook]:
    """A FHIR store write hook (``fhir_api(..., hooks=[...])``) for Device writes: refuses (422
    ``Device.parent``) a parent that is registered as something other than a clinic gateway, and drops the
    written Device from ``specs``. Runs in the write's transaction, so a refusal stores nothing."""

    def make(store: FhirStore) -> WriteHook:
        def hook(session: Session, change: ResourceChange) -> None:
            if change.resource_type != "Device":
                return
            specs.invalidate(change.stored.id)
            if change.resource is None:
                return
            parent_id = device_spec(change.resource).parent
            parent = read_device(session, parent_id) if parent_id is not None else None
            if parent is None:
                return  # not registered yet: a hub may be registered after its sensors
            kind = device_spec(parent).kind
            if kind not in (None, DeviceKind.CLINIC_GATEWAY):
                raise UnprocessableEntity(
                    f"Device.parent: Device/{parent_id} is a {kind}, not a clinic-gateway",
                    expression="Device.parent",
                )

        return hook

    return make


# -- the published CodeSystems -----------------------------------------------------------------------------
@cache
def _code_system_texts() -> tuple[str, ...]:
    folder = resources.files("relearn.device_gateway") / "codesystem"
    return tuple((folder / name).read_text(encoding="utf-8") for name in CODESYSTEM_FILES)


def code_systems() -> list[dict[str, Any]]:
    """The two CodeSystems (device-kind, device-property) as shipped, fresh copies."""
    return [json.loads(text) for text in _code_system_texts()]


def defined_codes(url: str) -> frozenset[str]:
    """Codes the shipped CodeSystem ``url`` defines (for tests and tooling)."""
    for cs in code_systems():
        if cs["url"] == url:
            return frozenset(c["code"] for c in cs["concept"])
    raise KeyError(url)
