"""Incoming sensor frames, as a device (or its bridge app) sends them to the gateway.

A frame is one chunk of one stream: a few hundred milliseconds to a few seconds of samples for every channel
of the stream. Samples travel row-major, `samples[i][c]` = sample `i` of channel `c`, because that is what
devices and bridges naturally produce (one row per ADC conversion); pydantic parses the rows in its Rust core
and `to_arrays()` turns them into one float64 block with a single `numpy.asarray` call, so there is no
per-sample Python work.

Times: sample `i` is at `start_time + i / sampling_rate_hz` unless `timestamps` is given (seconds from
`start_time`, strictly increasing) for devices that sample unevenly; the nominal rate is then informative
only.

Raw ADC counts stay counts (`{counts}`) unless the frame declares a transfer function in `adc.transfer`.

On the wire fields are camelCase (`deviceId`, `streamType`, `streamId`, `startTime`, `samplingRateHz`,
`adc.resolutionBits`); `to_wire()` / `wire_json()` give that form back (e.g. for the raw event).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

from relearn.device_gateway.signals.metrics import ucum_unit

MAX_SAMPLES_PER_FRAME = 10_000
"""Largest frame accepted: about 4.6 s at 2148 Hz, 10 s at 1 kHz. Larger chunks must be split by the
sender."""

MAX_CHANNELS = 64

FloatArray = NDArray[np.float64]

# camelCase on the wire (`deviceId`, `samplingRateHz` ...), like every Relearn REST API; Python code may still
# build models by field name.
_WIRE = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class StreamType(StrEnum):
    EMG = "emg"
    FORCE_PLATE = "force-plate"
    LOAD_CELLS = "load-cells"
    COP = "cop"


# The largest frame sequence number accepted.
MAX_SEQUENCE = 2**31 - 1

# Units a device may declare per stream type (spellings as sent; UCUM via `ucum_unit`).
_ALLOWED_UNITS: dict[StreamType, frozenset[str]] = {
    StreamType.EMG: frozenset({"V", "mV", "uV", "µV", "counts"}),
    StreamType.FORCE_PLATE: frozenset({"N", "Nm", "N.m"}),
    StreamType.LOAD_CELLS: frozenset({"N", "kg"}),
    StreamType.COP: frozenset({"cm", "mm", "m"}),
}
_FORCE_PLATE_UNITS = {"Fx": "N", "Fy": "N", "Fz": "N", "Mx": "N.m", "My": "N.m", "Mz": "N.m"}
_LOAD_CELL_NAMES = frozenset({"TL", "TR", "BL", "BR"})
_COP_NAMES = frozenset({"x", "y"})


# Per-thread hand-off of the float64 block from the samples validator to the model being built.
_validated = threading.local()


class StreamKey(NamedTuple):
    device_id: str
    stream_type: StreamType
    stream_id: str


class Channel(BaseModel):
    """One channel of a stream: e.g. EMG `vastus-medialis-left` in `mV`, force plate `Fz` in `N`."""

    model_config = _WIRE

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    unit: Annotated[str, Field(max_length=32)]

    @field_validator("unit", mode="before")
    @classmethod
    def _ucum_counts(cls, unit: Any) -> Any:
        # `{counts}` is the UCUM spelling (the docs' and the Device convention's); `counts` the short one.
        return "counts" if unit == "{counts}" else unit


class LinearTransfer(BaseModel):
    """physical = (counts - offset) * gain, in `unit`."""

    model_config = _WIRE

    gain: FiniteFloat
    offset: FiniteFloat = 0.0
    unit: Literal["V", "mV", "uV"]

    @field_validator("gain")
    @classmethod
    def _gain_not_zero(cls, gain: float) -> float:
        if gain == 0:
            raise ValueError("gain must not be 0")
        return gain


class Adc(BaseModel):
    """ADC description for channels declared in `counts`."""

    model_config = _WIRE

    resolution_bits: Annotated[int, Field(ge=1, le=32)]
    transfer: LinearTransfer | None = None


class SensorFrame(BaseModel):
    """One frame of one sensor stream (see module docstring for layout and time conventions)."""

    model_config = _WIRE

    device_id: Annotated[str, Field(min_length=1, max_length=128)]
    stream_type: StreamType
    stream_id: Annotated[str, Field(min_length=1, max_length=128)]
    # Bounded: a forged or corrupt sequence cannot record an absurd gap (2^31 frames is years of one stream).
    sequence: Annotated[int, Field(ge=0, le=MAX_SEQUENCE)]
    start_time: AwareDatetime
    sampling_rate_hz: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    channels: Annotated[list[Channel], Field(min_length=1, max_length=MAX_CHANNELS)]
    adc: Adc | None = None
    samples: Annotated[list[list[float]], Field(min_length=1, max_length=MAX_SAMPLES_PER_FRAME)]
    timestamps: list[float] | None = None

    _values: FloatArray | None = PrivateAttr(default=None)
    # The samples as sent, as one float64 block: built once while validating (see `_check_samples`).
    _raw: FloatArray | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        # Pick up the block `_check_samples` built for exactly this samples list, if it did.
        handed = _validated.__dict__.pop("samples", None)
        if handed is not None and handed[0] is self.samples:
            self._raw = handed[1]

    @field_validator("channels")
    @classmethod
    def _check_channels(cls, channels: list[Channel], info: ValidationInfo) -> list[Channel]:
        names = [c.name for c in channels]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"channel names must be unique; repeated: {', '.join(duplicated)}")
        stream_type = info.data.get("stream_type")
        if stream_type is None:
            return channels
        allowed = _ALLOWED_UNITS[stream_type]
        for i, channel in enumerate(channels):
            if channel.unit not in allowed:
                raise ValueError(
                    f"channels[{i}] ({channel.name}): unit {channel.unit!r} is not allowed for {stream_type} "
                    f"streams (allowed: {', '.join(sorted(allowed))})"
                )
        _check_layout(stream_type, channels)
        return channels

    @field_validator("samples")
    @classmethod
    def _check_samples(cls, samples: list[list[float]], info: ValidationInfo) -> list[list[float]]:
        channels: list[Channel] | None = info.data.get("channels")
        if channels is None:
            return samples
        width = len(channels)
        try:
            values = np.asarray(samples, dtype=np.float64)  # C-speed; raises on ragged rows
        except ValueError:
            values = None
        if values is None or values.ndim != 2 or values.shape[1] != width:
            # Error path only: find the first offending row for the message.
            bad = next(i for i, row in enumerate(samples) if len(row) != width)
            raise ValueError(f"row {bad} has {len(samples[bad])} values, expected {width} (one per channel)")
        finite = np.isfinite(values)
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            raise ValueError(f"row {row}, channel {channels[col].name}: value is not finite")
        adc: Adc | None = info.data.get("adc")
        counts = [i for i, c in enumerate(channels) if c.unit == "counts"]
        if adc is not None and counts:
            # Signed or unsigned converters both fit in [-2^bits, 2^bits).
            limit = float(2**adc.resolution_bits)
            block = values[:, counts]
            outside = (block < -limit) | (block >= limit)
            if outside.any():
                row, col = np.argwhere(outside)[0]
                raise ValueError(
                    f"row {row}, channel {channels[counts[col]].name}: {block[row, col]} is outside "
                    f"the range of a {adc.resolution_bits}-bit ADC"
                )
        # Hand the block to this frame's `model_post_init` (same thread, right after the fields), so the
        # nested lists are converted once per frame, not again for storage and signal processing.
        values.flags.writeable = False
        _validated.samples = (samples, values)
        return samples

    @field_validator("timestamps")
    @classmethod
    def _check_timestamps(cls, timestamps: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if timestamps is None:
            return None
        samples: list[list[float]] | None = info.data.get("samples")
        if samples is not None and len(timestamps) != len(samples):
            raise ValueError(f"has {len(timestamps)} entries for {len(samples)} samples")
        t = np.asarray(timestamps, dtype=np.float64)
        if not np.isfinite(t).all():
            raise ValueError(f"entry {int(np.argmin(np.isfinite(t)))} is not finite")
        if t.size and t[0] < 0:
            raise ValueError("must be seconds from start_time, so not negative")
        steps = np.diff(t)
        if (steps <= 0).any():
            bad = int(np.argmax(steps <= 0)) + 1
            raise ValueError(f"must be strictly increasing; entry {bad} ({t[bad]}) <= entry {bad - 1}")
        return timestamps

    def to_wire(self) -> dict[str, Any]:
        """The frame as camelCase JSON-ready data, as a device sends it (absent optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def wire_json(self) -> bytes:
        """The frame as camelCase JSON bytes (see `to_wire`)."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")

    @property
    def key(self) -> StreamKey:
        return StreamKey(self.device_id, self.stream_type, self.stream_id)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    @property
    def units(self) -> tuple[str, ...]:
        """UCUM unit of each `to_arrays()` column (counts converted only with a declared transfer)."""
        transfer = self.adc.transfer if self.adc else None
        return tuple(
            ucum_unit(transfer.unit if (c.unit == "counts" and transfer) else c.unit) for c in self.channels
        )

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    @property
    def end_time_offset(self) -> float:
        """Seconds from start_time to just after the last sample (one nominal period past it)."""
        last = self.timestamps[-1] if self.timestamps else (self.n_samples - 1) / self.sampling_rate_hz
        return last + 1.0 / self.sampling_rate_hz

    @property
    def end_time(self) -> AwareDatetime:
        return self.start_time + timedelta(seconds=self.end_time_offset)

    def raw_values(self) -> FloatArray:
        """The samples exactly as sent (counts stay counts), float64 ``[n, channels]``, read-only."""
        if self._raw is None:
            raw = np.asarray(self.samples, dtype=np.float64)
            raw.flags.writeable = False
            self._raw = raw
        return self._raw

    def to_arrays(self) -> tuple[FloatArray, FloatArray]:
        """(values float64 [n, channels], times float64 [n] in seconds from start_time).

        Columns in `counts` are converted with the declared transfer function, if any; see `units`.
        """
        if self._values is None:
            values = self.raw_values()
            transfer = self.adc.transfer if self.adc else None
            if transfer is not None:
                values = values.copy()
                counts = [i for i, c in enumerate(self.channels) if c.unit == "counts"]
                values[:, counts] = (values[:, counts] - transfer.offset) * transfer.gain
                values.flags.writeable = False
            self._values = values
        if self.timestamps is not None:
            times = np.asarray(self.timestamps, dtype=np.float64)
        else:
            times = np.arange(self.n_samples, dtype=np.float64) / self.sampling_rate_hz
        return self._values, times


def _check_layout(stream_type: StreamType, channels: list[Channel]) -> None:
    names = {c.name for c in channels}
    if stream_type is StreamType.FORCE_PLATE:
        unknown = names - _FORCE_PLATE_UNITS.keys()
        if unknown:
            raise ValueError(f"force-plate channels must be among Fx Fy Fz Mx My Mz; got {sorted(unknown)}")
        missing = {"Fz", "Mx", "My"} - names
        if missing:
            raise ValueError(f"force-plate streams need Fz, Mx and My for COP; missing {sorted(missing)}")
        for c in channels:
            if ucum_unit(c.unit) != _FORCE_PLATE_UNITS[c.name]:
                raise ValueError(f"force-plate channel {c.name} must be in {_FORCE_PLATE_UNITS[c.name]}")
    elif stream_type is StreamType.LOAD_CELLS:
        if names != _LOAD_CELL_NAMES or len(channels) != 4:
            raise ValueError(f"load-cells streams have exactly the channels TL TR BL BR; got {sorted(names)}")
        if len({c.unit for c in channels}) != 1:
            raise ValueError("load-cells channels must share one unit")
    elif stream_type is StreamType.COP:
        if names != _COP_NAMES or len(channels) != 2:
            raise ValueError(f"cop streams have exactly the channels x y; got {sorted(names)}")
        if len({c.unit for c in channels}) != 1:
            raise ValueError("cop channels must share one unit")
