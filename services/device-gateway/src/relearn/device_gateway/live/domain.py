"""Causal, stateful display processing of live sensor streams (pure numpy/scipy, no I/O).

One processor per stream takes that stream's frames in time order and returns *display updates* decimated
to a display rate (default 25 per second of data): what a biofeedback screen plots. Only filter state is
kept between frames (a few floats per channel), so memory does not grow with the recording.

EMG (`EmgDisplay`): per channel, the first sample is subtracted (so a raw ADC offset such as 2048 counts
does not ring through the filters), then a causal 4th-order Butterworth band-pass 10-450 Hz (high cut
clamped below Nyquist as in `signals.emg.effective_band`; its high-pass edge removes the DC and slow drift),
full-wave rectification and a causal 2nd-order Butterworth low-pass at 6 Hz: the linear envelope, clipped
at 0. Both filters run with `scipy.signal.sosfilt` and carry their `zi` state from frame to frame, so the
per-sample envelope does not depend on how the signal was cut into frames. (The offline metrics use
zero-lag `sosfiltfilt`; a live view cannot look ahead, so its envelope lags by the filters' group delay,
some 30-50 ms at 6 Hz.)

Balance (`CopDisplay`): COP in cm from a force plate (COPx = -My/Fz, COPy = Mx/Fz), a four-load-cell board
or a `cop` stream (`signals.cop`), relative to a reference position: the mean COP over the first
`reference_s` (1 s) of loaded samples. Until that second has passed the reference is the running mean so
far and updates say `calibrating`. Unloaded samples (|Fz| < 10 N) have no COP (NaN).

Decimation is by *time buckets*, not sample counts, so irregular timestamps work: bucket k holds the
samples whose time since the stream's first sample is in [k/rate, (k+1)/rate). Every bucket that receives
samples gives exactly one update, emitted with the frame that first reaches it (so the newest sample of a
frame is on screen as soon as the frame is processed): EMG reports the envelope at the bucket's last sample
in that frame, COP the mean of that bucket's loaded samples in that frame. Samples of an already reported
bucket (the tail of a bucket split across two frames) still feed the filters but are not reported again.
A 0.2 s frame at 25/s therefore gives 5 updates. Samples not later than the last processed sample
(out-of-order or overlapping frames) are skipped; after a hole of more than `max_gap_s` the EMG filters
restart from rest instead of ringing on the jump.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from scipy import signal  # type: ignore[import-untyped]

from relearn.device_gateway.signals.cop import (
    MIN_LOAD_N,
    WII_BALANCE_BOARD_CM,
    cop_from_force_plate,
    cop_from_load_cells,
)
from relearn.device_gateway.signals.emg import (
    DEFAULT_BAND_HZ,
    DEFAULT_ENVELOPE_CUTOFF_HZ,
    bandpass_sos,
    effective_band,
    lowpass_sos,
)
from relearn.device_gateway.signals.frames import SensorFrame, StreamType

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

DEFAULT_DISPLAY_RATE_HZ = 25.0
MIN_DISPLAY_RATE_HZ = 20.0
"""Below about 20 updates per second a biofeedback trace looks jerky; the setting may not go lower."""

DEFAULT_REFERENCE_S = 1.0
DEFAULT_MAX_GAP_S = 0.1

_BUCKET_EPS = 1e-9  # a sample exactly on a bucket edge (t = k / rate) belongs to bucket k despite rounding
_TO_CM = {"cm": 1.0, "mm": 0.1, "m": 100.0}


def check_display_rate(rate_hz: float) -> float:
    if not (math.isfinite(rate_hz) and rate_hz >= MIN_DISPLAY_RATE_HZ):
        raise ValueError(f"display rate must be at least {MIN_DISPLAY_RATE_HZ} updates/s, got {rate_hz}")
    return float(rate_hz)


# -- time buckets ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placed:
    """The part of a frame that is new: `keep` selects its samples, `seconds` are their times since the
    stream origin; `groups` are the start indices (into the kept samples) of each newly reached bucket
    and `last` the index of each such bucket's last kept sample."""

    keep: slice
    seconds: FloatArray
    report_from: int  # first kept sample that belongs to a bucket not reported yet
    groups: NDArray[np.intp]
    last: NDArray[np.intp]
    gap_before: float  # seconds between the previous processed sample and the first kept one (inf at start)


class TimeBuckets:
    """Places each frame's samples on the stream's time axis and picks one update per new display bucket."""

    def __init__(self, rate_hz: float = DEFAULT_DISPLAY_RATE_HZ) -> None:
        self.rate_hz = check_display_rate(rate_hz)
        self.origin: datetime | None = None
        self._last_time = -math.inf
        self._last_bucket = -1

    def place(self, frame: SensorFrame) -> Placed:
        _, times = frame.to_arrays()
        if self.origin is None:
            self.origin = frame.start_time
        offset = (frame.start_time - self.origin).total_seconds()
        seconds = times + offset
        first = int(np.searchsorted(seconds, self._last_time, side="right"))  # skip what we already had
        seconds = seconds[first:]
        gap = float(seconds[0] - self._last_time) if seconds.size else 0.0
        if seconds.size == 0:
            empty = np.zeros(0, dtype=np.intp)
            return Placed(slice(first, first), seconds, 0, empty, empty, gap)
        buckets = np.floor(seconds * self.rate_hz + _BUCKET_EPS).astype(np.int64)
        report_from = int(np.searchsorted(buckets, self._last_bucket, side="right"))
        new = buckets[report_from:]
        if new.size:
            starts = np.flatnonzero(np.concatenate(([True], new[1:] != new[:-1])))
            lasts = np.concatenate((starts[1:] - 1, [new.size - 1]))
            groups = (starts + report_from).astype(np.intp)
            last = (lasts + report_from).astype(np.intp)
            self._last_bucket = int(new[-1])
        else:
            groups = last = np.zeros(0, dtype=np.intp)
        self._last_time = float(seconds[-1])
        return Placed(slice(first, None), seconds, report_from, groups, last, gap)


# -- EMG ------------------------------------------------------------------------------------------------


class EmgEnvelope:
    """Causal linear envelope of several channels at rate `fs`, carried across calls (see module doc)."""

    def __init__(
        self,
        fs: float,
        n_channels: int,
        *,
        band: tuple[float, float] = DEFAULT_BAND_HZ,
        cutoff_hz: float = DEFAULT_ENVELOPE_CUTOFF_HZ,
    ) -> None:
        lo, hi = effective_band(fs, *band)
        if not 0 < cutoff_hz < fs / 2:
            raise ValueError(f"envelope cutoff {cutoff_hz} Hz must be below Nyquist ({fs / 2} Hz)")
        self.fs = fs
        self.n_channels = n_channels
        # Writable copies of the cached designs (scipy's sosfilt rejects read-only arrays).
        self._bandpass = np.array(bandpass_sos(fs, lo, hi, 4))
        self._lowpass = np.array(lowpass_sos(fs, cutoff_hz, 2))
        self.reset()

    def reset(self) -> None:
        """Back to rest: the next sample becomes the new offset."""
        self._offset: FloatArray | None = None
        self._zi_bp = np.zeros((self._bandpass.shape[0], 2, self.n_channels))
        self._zi_lp = np.zeros((self._lowpass.shape[0], 2, self.n_channels))

    def process(self, values: FloatArray) -> FloatArray:
        """Envelope [n, channels] of the next `values` [n, channels] (same unit)."""
        if values.shape[0] == 0:
            return np.zeros((0, self.n_channels))
        if self._offset is None:
            self._offset = values[0].copy()
        band, self._zi_bp = signal.sosfilt(self._bandpass, values - self._offset, axis=0, zi=self._zi_bp)
        env, self._zi_lp = signal.sosfilt(self._lowpass, np.abs(band), axis=0, zi=self._zi_lp)
        return np.clip(np.asarray(env, dtype=np.float64), 0.0, None)


@dataclass(frozen=True, slots=True)
class EmgUpdates:
    origin: datetime
    seconds: FloatArray  # update times, seconds since `origin`
    channels: tuple[str, ...]
    units: tuple[str, ...]  # UCUM, per channel
    envelope: FloatArray  # [updates, channels]

    def __len__(self) -> int:
        return int(self.seconds.size)


@dataclass(frozen=True, slots=True)
class CopUpdates:
    origin: datetime
    seconds: FloatArray
    x: FloatArray  # cm relative to the reference; NaN when nothing was loaded in the bucket
    y: FloatArray
    calibrating: BoolArray  # the reference is still the running mean of the first second

    def __len__(self) -> int:
        return int(self.seconds.size)

    @property
    def radius(self) -> FloatArray:
        return np.asarray(np.hypot(self.x, self.y), dtype=np.float64)


class EmgDisplay:
    """Frames of one EMG stream in, envelope updates at the display rate out."""

    stream_type = StreamType.EMG

    def __init__(
        self,
        *,
        display_rate_hz: float = DEFAULT_DISPLAY_RATE_HZ,
        cutoff_hz: float = DEFAULT_ENVELOPE_CUTOFF_HZ,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
    ) -> None:
        self.buckets = TimeBuckets(display_rate_hz)
        self.cutoff_hz = cutoff_hz
        self.max_gap_s = max_gap_s
        self._envelope: EmgEnvelope | None = None
        self._layout: tuple[float, tuple[str, ...]] | None = None

    def envelope(self, frame: SensorFrame) -> tuple[Placed, FloatArray]:
        """The per-sample envelope of the new part of `frame` (what `feed` decimates)."""
        layout = (frame.sampling_rate_hz, frame.channel_names)
        if self._envelope is None or layout != self._layout:
            self._envelope = EmgEnvelope(
                frame.sampling_rate_hz, len(frame.channels), cutoff_hz=self.cutoff_hz
            )
            self._layout = layout
        placed = self.buckets.place(frame)
        values, _ = frame.to_arrays()
        values = values[placed.keep]
        if placed.gap_before > self.max_gap_s + 1.0 / frame.sampling_rate_hz and math.isfinite(
            placed.gap_before
        ):
            self._envelope.reset()
        return placed, self._envelope.process(values)

    def feed(self, frame: SensorFrame) -> EmgUpdates:
        placed, env = self.envelope(frame)
        assert self.buckets.origin is not None
        return EmgUpdates(
            origin=self.buckets.origin,
            seconds=placed.seconds[placed.last],
            channels=frame.channel_names,
            units=frame.units,
            envelope=env[placed.last],
        )


class CopDisplay:
    """Frames of one balance stream (force plate, load cells or COP) in, relative COP updates out."""

    def __init__(
        self,
        stream_type: StreamType,
        *,
        display_rate_hz: float = DEFAULT_DISPLAY_RATE_HZ,
        reference_s: float = DEFAULT_REFERENCE_S,
        board_cm: tuple[float, float] = WII_BALANCE_BOARD_CM,
    ) -> None:
        if stream_type is StreamType.EMG:
            raise ValueError("CopDisplay is for balance streams (force-plate, load-cells, cop)")
        self.stream_type = stream_type
        self.buckets = TimeBuckets(display_rate_hz)
        self.reference_s = reference_s
        self.board_cm = board_cm
        self._ref_start: float | None = None  # time of the first loaded sample
        self._ref_sum = np.zeros(2)
        self._ref_n = 0
        self._ref_done = False

    def cop(self, frame: SensorFrame) -> tuple[FloatArray, FloatArray]:
        """Absolute COP (x, y) in cm of every sample of `frame`; NaN where unloaded."""
        values, _ = frame.to_arrays()
        col = {name: i for i, name in enumerate(frame.channel_names)}
        if self.stream_type is StreamType.FORCE_PLATE:
            return cop_from_force_plate(values[:, col["Fz"]], values[:, col["Mx"]], values[:, col["My"]])
        if self.stream_type is StreamType.LOAD_CELLS:
            min_load = 1.0 if frame.channels[0].unit == "kg" else MIN_LOAD_N
            cells = (values[:, col[n]] for n in ("TL", "TR", "BL", "BR"))
            return cop_from_load_cells(*cells, lx=self.board_cm[0], ly=self.board_cm[1], min_load=min_load)
        scale = _TO_CM[frame.channels[0].unit]
        return values[:, col["x"]] * scale, values[:, col["y"]] * scale

    @property
    def reference(self) -> tuple[float, float] | None:
        """The reference position (cm), running mean until the first `reference_s` of load is in."""
        if self._ref_n == 0:
            return None
        return float(self._ref_sum[0] / self._ref_n), float(self._ref_sum[1] / self._ref_n)

    def _learn_reference(self, seconds: FloatArray, x: FloatArray, y: FloatArray, loaded: BoolArray) -> None:
        if self._ref_done:
            return
        if self._ref_start is None:
            if not loaded.any():
                return
            self._ref_start = float(seconds[np.argmax(loaded)])
        end = self._ref_start + self.reference_s
        take = loaded & (seconds < end)
        self._ref_sum += (float(x[take].sum()), float(y[take].sum()))
        self._ref_n += int(take.sum())
        if seconds[-1] >= end:
            self._ref_done = True

    def feed(self, frame: SensorFrame) -> CopUpdates:
        placed = self.buckets.place(frame)
        assert self.buckets.origin is not None
        x, y = self.cop(frame)
        x, y = x[placed.keep], y[placed.keep]
        loaded = ~np.isnan(x)
        seconds = placed.seconds
        if seconds.size:
            self._learn_reference(seconds, x, y, loaded)
        calibrating = not self._ref_done
        ref = self.reference
        n = placed.groups.size
        if n == 0 or ref is None:
            # Nothing to report yet, or nobody has stood on the board: report "unloaded" buckets as NaN.
            nan = np.full(n, np.nan)
            return CopUpdates(
                self.buckets.origin, seconds[placed.last], nan, nan.copy(), np.full(n, calibrating)
            )
        # Sums over each new bucket's samples: reduceat from each group start to the next (the prefix of
        # an already reported bucket lies before the first group start, so it is left out).
        groups = placed.groups
        counts = np.add.reduceat(loaded.astype(np.float64), groups)
        sum_x = np.add.reduceat(np.where(loaded, x, 0.0), groups)
        sum_y = np.add.reduceat(np.where(loaded, y, 0.0), groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_x = np.where(counts > 0, sum_x / counts, np.nan) - ref[0]
            mean_y = np.where(counts > 0, sum_y / counts, np.nan) - ref[1]
        return CopUpdates(self.buckets.origin, seconds[placed.last], mean_x, mean_y, np.full(n, calibrating))


def display_for(
    stream_type: StreamType,
    *,
    display_rate_hz: float = DEFAULT_DISPLAY_RATE_HZ,
    board_cm: tuple[float, float] = WII_BALANCE_BOARD_CM,
) -> EmgDisplay | CopDisplay:
    """The display processor for a stream of `stream_type`."""
    if stream_type is StreamType.EMG:
        return EmgDisplay(display_rate_hz=display_rate_hz)
    return CopDisplay(stream_type, display_rate_hz=display_rate_hz, board_cm=board_cm)
