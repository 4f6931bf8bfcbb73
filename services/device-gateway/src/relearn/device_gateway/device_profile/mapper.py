"""Reading a FHIR Device into a :class:`DeviceSpec`, walking it once and noting every element that breaks
the convention on the way (the validator on write reports them; the ingest path just ignores them)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeGuard

from relearn.device_gateway.device_profile.domain.codes import (
    ANY_CHANNEL_UNIT,
    CHANNEL_NAMES,
    CHANNEL_UNITS,
    KIND_SYSTEM,
    PROPERTY_SYSTEM,
    UCUM,
    DeviceKind,
    PropertyCode,
)
from relearn.device_gateway.device_profile.domain.spec import AdcSpec, ChannelSpec, DeviceSpec
from relearn.device_gateway.signals.metrics import ucum_unit
from relearn.shared.fhir import Issue

_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # as SensorFrame channels
_TRANSFER_UNITS = frozenset({"V", "mV", "uV"})
_TO_CM = {"cm": 1.0, "mm": 0.1, "m": 100.0}


def device_spec(device: Mapping[str, Any]) -> DeviceSpec:
    """The spec of a stored Device; what is absent or malformed is simply not declared."""
    return read_spec(device)[0]


def read_spec(device: Mapping[str, Any]) -> tuple[DeviceSpec, list[Issue]]:
    """The spec of a Device and one issue per element that breaks the convention (only elements that use
    the Relearn CodeSystems, and ``parent``, are checked)."""
    reader = _Reader(device)
    spec = reader.spec()
    return spec, reader.issues


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
            known = ", ".join(sorted(allowed if allowed is not None else ANY_CHANNEL_UNIT))
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
        allowed_units = CHANNEL_UNITS.get(kind) if kind is not None else ANY_CHANNEL_UNIT
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
