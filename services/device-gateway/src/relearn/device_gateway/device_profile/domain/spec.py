"""What a Device declares under the convention, parsed: :class:`DeviceSpec` with its channels and ADC."""

from __future__ import annotations

from dataclasses import dataclass

from relearn.device_gateway.device_profile.domain.codes import STREAM_TYPES, DeviceKind
from relearn.device_gateway.signals.frames import StreamType


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
