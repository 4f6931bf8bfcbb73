"""Explicit resampling of unevenly sampled signals onto a uniform grid, with gaps reported.

Consumer balance boards and EMG armbands deliver samples at irregular times. Metrics assume a uniform grid,
so we interpolate linearly at a chosen rate, but only across short holes: any interval between two real
samples longer than `max_gap_s` is a gap, reported as a `TimeGap`, and the grid points inside it are NaN and
marked invalid in `Resampled.valid`. Nothing is invented across a gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

TIME_TOLERANCE_S = 1e-9
"""Timestamps in float seconds carry rounding noise (0.473 - 0.467 > 0.006): comparisons allow this much."""


@dataclass(frozen=True, slots=True)
class TimeGap:
    """No sample between `start` and `end` (seconds, the two real samples around the hole)."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Resampled:
    times: FloatArray  # [m] uniform grid, seconds
    values: FloatArray  # [m, channels]; NaN inside gaps
    rate_hz: float
    gaps: tuple[TimeGap, ...]
    valid: BoolArray  # [m] False inside gaps

    def segments(self) -> list[slice]:
        """Contiguous runs of valid grid points, as slices into times/values."""
        edges = np.diff(np.concatenate(([0], self.valid.astype(np.int8), [0])))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        return [slice(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def sample_intervals(times: FloatArray) -> FloatArray:
    return np.diff(np.asarray(times, dtype=np.float64))


def estimate_rate(times: FloatArray) -> float:
    """Typical sampling rate (1 / median interval) of a timestamp series."""
    steps = sample_intervals(times)
    if steps.size == 0:
        raise ValueError("need at least two timestamps to estimate a rate")
    return float(1.0 / np.median(steps))


def find_time_gaps(times: FloatArray, max_gap_s: float) -> list[TimeGap]:
    """Intervals between consecutive samples longer than `max_gap_s`."""
    t = np.asarray(times, dtype=np.float64)
    steps = np.diff(t)
    idx = np.flatnonzero(steps > max_gap_s + TIME_TOLERANCE_S)
    return [TimeGap(float(t[i]), float(t[i + 1])) for i in idx]


def resample_uniform(times: FloatArray, values: FloatArray, rate_hz: float, max_gap_s: float) -> Resampled:
    """Linear interpolation of `values` ([n] or [n, ch]) at `rate_hz` from times[0] to times[-1].

    Grid points that fall strictly inside an interval longer than `max_gap_s` become NaN and invalid.
    """
    if rate_hz <= 0 or not np.isfinite(rate_hz):
        raise ValueError("rate_hz must be a positive finite number")
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if t.ndim != 1 or t.size != v.shape[0]:
        raise ValueError("times and values must have the same number of samples")
    if t.size < 2:
        raise ValueError("need at least two samples to resample")
    if (np.diff(t) <= 0).any():
        raise ValueError("times must be strictly increasing")
    n_grid = int(np.floor((t[-1] - t[0]) * rate_hz + 1e-9)) + 1
    grid = t[0] + np.arange(n_grid, dtype=np.float64) / rate_hz
    # np.interp is 1-D; the loop runs over channels, not samples.
    out = np.empty((n_grid, v.shape[1]), dtype=np.float64)
    for c in range(v.shape[1]):
        out[:, c] = np.interp(grid, t, v[:, c])
    gaps = find_time_gaps(t, max_gap_s)
    valid = np.ones(n_grid, dtype=bool)
    if gaps:
        # For each grid point, the real sample at or before it; the point is in a gap if the next real sample
        # is further than max_gap_s from that one and the point is not itself on a real sample.
        left = np.searchsorted(t, grid, side="right") - 1
        left = np.clip(left, 0, t.size - 2)
        step = t[left + 1] - t[left]
        tol = TIME_TOLERANCE_S
        on_sample = np.isclose(grid, t[left], rtol=0, atol=tol) | np.isclose(
            grid, t[left + 1], rtol=0, atol=tol
        )
        valid = ~((step > max_gap_s + tol) & ~on_sample)
        out[~valid] = np.nan
    return Resampled(times=grid, values=out, rate_hz=float(rate_hz), gaps=tuple(gaps), valid=valid)
