"""Synthetic sensor recordings whose truth is known: EMG bursts at chosen onsets, balance trials at a
chosen sway.

EMG: each channel is white noise (the resting baseline) plus, from a chosen onset, a burst of band-limited
noise (20-250 Hz) at a chosen amplitude, with a 10 ms rise. Onsets are in ms after the cue (which comes
after a quiet baseline), so a test sets the latency between two muscles, leaves a muscle silent or barely
active, and scales one electrode's gain. Deterministic: each channel's noise is seeded by its name.

Balance: a real quiet-standing force-plate trial
(:func:`relearn.devtools.journey.recordings.balance_recording`) with its moments scaled about their means,
which scales the centre-of-pressure excursions (COP = -My/Fz, Mx/Fz) by the same factor and the sway area
by its square.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal  # type: ignore[import-untyped]

from relearn.devtools.journey.recordings import Recording, balance_recording

EMG_RATE_HZ = 1000.0
NOISE_MV = 0.005  # resting baseline, RMS


@dataclass(frozen=True)
class Burst:
    """One EMG channel: ``onset_ms`` after the cue (None: the muscle never activates), the burst's RMS as a
    multiple of the resting noise, and the electrode's gain (multiplies everything the channel records)."""

    channel: str
    onset_ms: float | None = 100.0
    activation: float = 40.0
    gain: float = 1.0


def _rng(name: str, salt: int) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()) + salt)


def emg_bursts(
    bursts: Sequence[Burst],
    *,
    cue_s: float = 1.0,
    seconds: float = 2.5,
    rate_hz: float = EMG_RATE_HZ,
    salt: int = 0,
) -> Recording:
    """An ``emg`` recording (mV) with one channel per burst; the cue at ``cue_s`` after the start."""
    n = round(seconds * rate_hz)
    t = np.arange(n) / rate_hz
    sos = signal.butter(4, (20.0, 250.0), btype="bandpass", fs=rate_hz, output="sos")
    columns = []
    for b in bursts:
        rng = _rng(b.channel, salt)
        x = rng.normal(0.0, NOISE_MV, n)
        if b.onset_ms is not None:
            onset = cue_s + b.onset_ms / 1000.0
            carrier = signal.sosfilt(sos, rng.normal(0.0, 1.0, n))
            carrier /= float(np.std(carrier[t >= onset])) or 1.0
            ramp = np.clip((t - onset) / 0.010, 0.0, 1.0)
            x = x + b.activation * NOISE_MV * ramp * carrier
        columns.append(b.gain * x)
    rows = np.round(np.column_stack(columns), 6).tolist()
    return Recording("emg", rate_hz, tuple((b.channel, "mV") for b in bursts), rows)


def scaled_balance(
    data_dir: Path, condition: int, *, sway_scale: float = 1.0, seconds: float = 30.0
) -> Recording:
    """The force-plate trial of a sensory condition (0 eyes open firm ... 3 eyes closed foam), its first
    ``seconds``, with the centre-of-pressure excursions multiplied by ``sway_scale``."""
    rec, _, _ = balance_recording(data_dir, condition)
    rows = np.asarray(rec.rows[: round(seconds * rec.rate_hz)], dtype=float)
    for col in (3, 4):  # Mx, My
        mean = rows[:, col].mean()
        rows[:, col] = mean + sway_scale * (rows[:, col] - mean)
    return Recording(rec.stream_type, rec.rate_hz, rec.channels, np.round(rows, 5).tolist())
