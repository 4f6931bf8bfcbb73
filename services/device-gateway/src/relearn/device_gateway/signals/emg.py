"""Surface EMG processing (SENIAM / ISEK conventions), vectorised over samples and channels.

Arrays are `[n]` or `[n, channels]`; every function works along axis 0 and keeps the input's unit (V, mV, uV
or raw ADC counts: counts stay counts).

Pipeline for the linear envelope: remove the mean -> zero-lag Butterworth band-pass (default 10-450 Hz,
4th-order design run forward and backward with `sosfiltfilt`, so 8th-order magnitude and no phase lag; the
high cut is clamped to 95 % of Nyquist for low rates) -> full-wave rectification -> zero-lag 2nd-order
Butterworth low-pass (default 6 Hz). Small negative undershoots of the low-pass are clipped to 0 (an envelope
is an amplitude).

Onsets are found on a different, causal envelope (Hodges & Bui 1996): the same band-pass and a 2nd-order 50 Hz
low-pass, both run forward only, so no energy of a burst leaks to before it starts (a zero-lag filter spreads
the rise backwards: the former zero-lag 8 Hz envelope put onsets about 43 ms early). Threshold: mean + 3 SD of
a quiet baseline; an onset is the start of the first run above it lasting at least 25 ms. Its bias on a
synthetic burst of known onset is measured in the unit tests and documented in docs/signals.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal  # type: ignore[import-untyped]

from relearn.device_gateway.signals.metrics import Metric, MetricCode
from relearn.device_gateway.signals.spectrum import spectral_fraction_frequency

FloatArray = NDArray[np.float64]

DEFAULT_BAND_HZ = (10.0, 450.0)
DEFAULT_ENVELOPE_CUTOFF_HZ = 6.0
ONSET_ENVELOPE_CUTOFF_HZ = 50.0
NYQUIST_FRACTION = 0.95


def _as_float(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def remove_mean(x: ArrayLike) -> FloatArray:
    a = _as_float(x)
    return np.asarray(a - a.mean(axis=0), dtype=np.float64)


def effective_band(
    fs: float, low: float = DEFAULT_BAND_HZ[0], high: float = DEFAULT_BAND_HZ[1]
) -> tuple[float, float]:
    """The band actually used at rate `fs`: the high cut is clamped below Nyquist."""
    if fs <= 0:
        raise ValueError("sampling rate must be positive")
    high_eff = min(high, NYQUIST_FRACTION * fs / 2.0)
    if not 0 < low < high_eff:
        raise ValueError(
            f"band-pass {low}-{high} Hz is empty at {fs} Hz (high cut clamped to {high_eff:.1f} Hz)"
        )
    return low, high_eff


@lru_cache(maxsize=128)
def _butter_sos(fs: float, cutoff: float | tuple[float, float], order: int) -> FloatArray:
    # A tuple cutoff is a band. Designs depend on (rate, cutoffs, order) only, and a stream keeps its rate,
    # so each is computed once instead of for every window (a band-pass design costs about 1 ms).
    if isinstance(cutoff, tuple):
        designed = signal.butter(order, list(cutoff), btype="bandpass", fs=fs, output="sos")
    else:
        designed = signal.butter(order, cutoff, btype="lowpass", fs=fs, output="sos")
    sos = np.array(designed, dtype=np.float64)
    sos.flags.writeable = False  # shared by every caller
    return sos


def bandpass_sos(
    fs: float, low: float = DEFAULT_BAND_HZ[0], high: float = DEFAULT_BAND_HZ[1], order: int = 4
) -> FloatArray:
    """Butterworth band-pass design (second-order sections) over `effective_band`; cached, read-only.

    scipy's filter kernels want a writable array: pass them a copy (`np.array(sos)`).
    """
    return _butter_sos(float(fs), effective_band(fs, low, high), order)


def lowpass_sos(fs: float, cutoff: float, order: int = 2) -> FloatArray:
    """Butterworth low-pass design (second-order sections); cached, read-only (see `bandpass_sos`)."""
    if not 0 < cutoff < fs / 2:
        raise ValueError(f"low-pass cutoff {cutoff} Hz must be between 0 and Nyquist ({fs / 2} Hz)")
    return _butter_sos(float(fs), float(cutoff), order)


def _zero_lag(sos: FloatArray, x: FloatArray) -> FloatArray:
    n = x.shape[0]
    if n < 2:
        raise ValueError("need at least two samples to filter")
    # sosfiltfilt's default edge padding; shortened for short windows rather than failing.
    padlen = min(3 * (2 * len(sos) + 1), n - 1)
    # A writable copy of the (cached, read-only) design: scipy's Cython kernel rejects read-only buffers.
    return np.asarray(signal.sosfiltfilt(np.array(sos), x, axis=0, padlen=padlen), dtype=np.float64)


def bandpass(
    x: ArrayLike, fs: float, low: float = DEFAULT_BAND_HZ[0], high: float = DEFAULT_BAND_HZ[1], order: int = 4
) -> FloatArray:
    """Zero-lag Butterworth band-pass (design order `order`, applied forward and backward)."""
    return _zero_lag(bandpass_sos(fs, low, high, order), _as_float(x))


def lowpass(x: ArrayLike, fs: float, cutoff: float, order: int = 2) -> FloatArray:
    """Zero-lag Butterworth low-pass."""
    return _zero_lag(lowpass_sos(fs, cutoff, order), _as_float(x))


def rectify(x: ArrayLike) -> FloatArray:
    return np.abs(_as_float(x))


def conditioned(raw: ArrayLike, fs: float, band: tuple[float, float] = DEFAULT_BAND_HZ) -> FloatArray:
    """Mean removed and band-passed EMG (the signal RMS and spectra are computed on)."""
    return bandpass(remove_mean(raw), fs, *band)


def linear_envelope(
    raw: ArrayLike,
    fs: float,
    cutoff: float = DEFAULT_ENVELOPE_CUTOFF_HZ,
    band: tuple[float, float] = DEFAULT_BAND_HZ,
) -> FloatArray:
    """Linear envelope: condition, rectify, zero-lag low-pass at `cutoff` (3-8 Hz), clipped at 0."""
    env = lowpass(rectify(conditioned(raw, fs, band)), fs, cutoff)
    return np.clip(env, 0.0, None)


def moving_rms(x: ArrayLike, fs: float, window_s: float = 0.15) -> FloatArray:
    """Centred moving RMS over `window_s` (100-200 ms), via cumulative sums; edges use the shorter window."""
    a = _as_float(x)
    n = a.shape[0]
    half = max(1, round(window_s * fs / 2))
    sq = np.concatenate([np.zeros((1, *a.shape[1:])), np.cumsum(a * a, axis=0)])
    idx = np.arange(n)
    lo = np.clip(idx - half, 0, n)
    hi = np.clip(idx + half + 1, 0, n)
    count = (hi - lo).reshape((n,) + (1,) * (a.ndim - 1))
    return np.asarray(np.sqrt(np.maximum(sq[hi] - sq[lo], 0.0) / count), dtype=np.float64)


def rms_envelope(
    raw: ArrayLike, fs: float, window_s: float = 0.15, band: tuple[float, float] = DEFAULT_BAND_HZ
) -> FloatArray:
    """Envelope by moving RMS of the conditioned signal (the alternative to `linear_envelope`)."""
    return moving_rms(conditioned(raw, fs, band), fs, window_s)


def rms(x: ArrayLike) -> FloatArray | float:
    """sqrt(mean(x^2)) along axis 0: a float for 1-D input, one value per channel for 2-D."""
    a = _as_float(x)
    out = np.sqrt(np.mean(a * a, axis=0))
    return float(out) if a.ndim == 1 else np.asarray(out, dtype=np.float64)


def percent_mvc(envelope: ArrayLike, mvc_envelope: float) -> FloatArray:
    """100 x envelope / MVC envelope (both in the same unit)."""
    if not mvc_envelope > 0:
        raise ValueError("MVC envelope value must be positive")
    return 100.0 * _as_float(envelope) / mvc_envelope


def teager_kaiser(x: ArrayLike) -> FloatArray:
    """Teager-Kaiser energy psi[n] = x[n]^2 - x[n-1] x[n+1]; the two end samples copy their neighbours."""
    a = _as_float(x)
    if a.shape[0] < 3:
        raise ValueError("Teager-Kaiser operator needs at least three samples")
    out = np.empty_like(a)
    out[1:-1] = a[1:-1] ** 2 - a[:-2] * a[2:]
    out[0] = out[1]
    out[-1] = out[-2]
    return out


@dataclass(frozen=True, slots=True)
class Activation:
    """One detected activation, in seconds from the start of the analysed signal (offset exclusive)."""

    onset: float
    offset: float
    peak: float  # peak of the detection signal inside the activation

    @property
    def duration(self) -> float:
        return self.offset - self.onset


@dataclass(frozen=True, slots=True)
class OnsetSettings:
    """Threshold onset detection (Hodges & Bui 1996).

    threshold = baseline mean + h * baseline SD, baseline taken from `baseline_s` (a quiet period, in seconds
    from the signal start). An onset is the start of a run of at least `min_duration_s` (25 ms) continuously
    above the threshold; runs closer than `merge_gap_s` then join into one activation (for its offset and
    peak). An activation counts only if its peak also reaches `min_peak_ratio` x the baseline mean: the h*SD
    rule alone fires on slow drifts of the resting noise (the BioSPPy baseline recording wanders to 3x its
    initial level without any contraction). That check is made on the 6 Hz linear envelope (`emg_onsets`),
    whose noise peaks stay low; so a burst below about 5x the resting level is not an onset (a measured
    "not detected", not a missing value).
    """

    baseline_s: tuple[float, float] = (0.0, 0.3)
    h: float = 3.0
    min_duration_s: float = 0.025
    min_peak_ratio: float = 5.0
    merge_gap_s: float = 0.05


def _runs(mask: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def onset_threshold(detection: ArrayLike, fs: float, settings: OnsetSettings | None = None) -> float:
    """Baseline mean + h x baseline SD of a 1-D detection signal (see `OnsetSettings`)."""
    s = settings or OnsetSettings()
    x = _as_float(detection)
    b0, b1 = (round(t * fs) for t in s.baseline_s)
    if b0 < 0 or b1 > x.size or b1 - b0 < 2:
        raise ValueError(f"baseline period {s.baseline_s} s does not fit in a {x.size / fs:.3f} s signal")
    base = x[b0:b1]
    return float(base.mean()) + s.h * float(base.std(ddof=1))


def detect_onsets(
    detection: ArrayLike,
    fs: float,
    settings: OnsetSettings | None = None,
    *,
    amplitude: ArrayLike | None = None,
) -> list[Activation]:
    """Activations in a 1-D detection signal (an envelope), see `OnsetSettings`.

    `amplitude` (same length; default the detection signal) is what the `min_peak_ratio` check and the
    reported peaks use: a smoother envelope than the 50 Hz one onsets are timed on, whose noise peaks would
    pass the check.
    """
    s = settings or OnsetSettings()
    x = _as_float(detection)
    if x.ndim != 1:
        raise ValueError("onset detection works on one channel at a time")
    amp = x if amplitude is None else _as_float(amplitude)
    if amp.shape != x.shape:
        raise ValueError("the amplitude signal must be as long as the detection signal")
    threshold = onset_threshold(x, fs, s)
    b0, b1 = (round(t * fs) for t in s.baseline_s)
    mean = float(amp[b0:b1].mean())
    starts, ends = _runs(x > threshold)
    # Sustained runs only: a short excursion of the noise is no onset, and cannot pull one earlier.
    sustained = (ends - starts) >= max(1, round(s.min_duration_s * fs))
    starts, ends = starts[sustained], ends[sustained]
    if starts.size == 0:
        return []
    # Merge runs separated by short dips below the threshold (the onset stays the first run's start).
    gap = round(s.merge_gap_s * fs)
    if gap > 0 and starts.size > 1:
        keep_break = (starts[1:] - ends[:-1]) > gap
        starts = starts[np.concatenate(([True], keep_break))]
        ends = ends[np.concatenate((keep_break, [True]))]
    # Peak of each run in one call: reduceat over [start0, end0, start1, end1, ...] keeps every other result.
    bounds = np.column_stack([starts, ends]).ravel()
    if bounds[-1] == x.size:
        bounds = bounds[:-1]
    peaks = np.maximum.reduceat(amp, bounds)[::2]
    strong = peaks >= s.min_peak_ratio * mean
    return [
        Activation(onset=float(a / fs), offset=float(b / fs), peak=float(p))
        for a, b, p in zip(starts[strong], ends[strong], peaks[strong], strict=True)
    ]


def _causal(sos: FloatArray, x: FloatArray) -> FloatArray:
    """Forward-only filtering, started in the steady state of the first sample (no start-up transient)."""
    if x.shape[0] < 2:
        raise ValueError("need at least two samples to filter")
    sections = np.array(sos)
    zi = signal.sosfilt_zi(sections)  # [sections, 2]
    zi = zi.reshape(zi.shape + (1,) * (x.ndim - 1)) * x[:1]
    out, _ = signal.sosfilt(sections, x, axis=0, zi=zi)
    return np.asarray(out, dtype=np.float64)


def onset_envelope(
    raw: ArrayLike,
    fs: float,
    cutoff: float = ONSET_ENVELOPE_CUTOFF_HZ,
    band: tuple[float, float] = DEFAULT_BAND_HZ,
) -> FloatArray:
    """The causal envelope onsets are detected on: mean removed, band-pass, rectify, 50 Hz low-pass, each
    filter run forward only (module docstring); clipped at 0."""
    x = remove_mean(raw)
    bp = _causal(bandpass_sos(fs, *band), x)
    cut = min(cutoff, NYQUIST_FRACTION * fs / 2.0)
    env = _causal(lowpass_sos(fs, cut), np.abs(bp))
    return np.clip(env, 0.0, None)


def onset_signal(
    raw: ArrayLike,
    fs: float,
    *,
    tkeo: bool = False,
    cutoff: float | None = None,
    band: tuple[float, float] = DEFAULT_BAND_HZ,
) -> FloatArray:
    """Signal to run onset detection on.

    Without TKEO: the causal 50 Hz envelope (`onset_envelope`). With TKEO (Solnik et al. 2010): conditioned
    EMG -> Teager-Kaiser energy -> rectify -> low-pass (default 20 Hz); this sharpens the onset. TKEO output
    is energy-like (amplitude squared), so `emg_onsets` squares `min_peak_ratio` for it.
    """
    if tkeo:
        energy = rectify(teager_kaiser(conditioned(raw, fs, band)))
        return np.clip(lowpass(energy, fs, cutoff or 20.0), 0.0, None)
    return onset_envelope(raw, fs, cutoff or ONSET_ENVELOPE_CUTOFF_HZ, band)


def emg_onsets(
    raw: ArrayLike,
    fs: float,
    settings: OnsetSettings | None = None,
    *,
    tkeo: bool = False,
    cutoff: float | None = None,
) -> list[Activation]:
    """Activations of one raw EMG channel (seconds from its first sample)."""
    s = settings or OnsetSettings()
    if tkeo:
        s = OnsetSettings(s.baseline_s, s.h, s.min_duration_s, s.min_peak_ratio**2, s.merge_gap_s)
        return detect_onsets(onset_signal(raw, fs, tkeo=True, cutoff=cutoff), fs, s)
    return detect_onsets(onset_signal(raw, fs, cutoff=cutoff), fs, s, amplitude=linear_envelope(raw, fs))


def welch_psd(x: ArrayLike, fs: float, segment_s: float = 0.25) -> tuple[FloatArray, FloatArray]:
    """Welch PSD along axis 0 (Hann, 50 % overlap, segments of `segment_s`, 4 Hz resolution by default)."""
    a = _as_float(x)
    nperseg = min(a.shape[0], max(8, round(segment_s * fs)))
    f, p = signal.welch(a, fs=fs, window="hann", nperseg=nperseg, axis=0, detrend="constant")
    return np.asarray(f, dtype=np.float64), np.asarray(p, dtype=np.float64)


def median_frequency(
    raw: ArrayLike, fs: float, band: tuple[float, float] = DEFAULT_BAND_HZ, segment_s: float = 0.25
) -> FloatArray | float:
    """Median frequency of the Welch PSD of the conditioned signal (50 % of the cumulative power)."""
    f, p = welch_psd(conditioned(raw, fs, band), fs, segment_s)
    return spectral_fraction_frequency(f, p, 0.5)


def cocontraction(envelope_a: ArrayLike, envelope_b: ArrayLike) -> float:
    """Winter's co-contraction index: %COCON = 200 x integral(min(A, B)) / (integral(A) + integral(B)).

    Both envelopes on the same uniform grid; the sample period cancels out of the ratio.
    """
    a = _as_float(envelope_a)
    b = _as_float(envelope_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("co-contraction needs two 1-D envelopes of the same length")
    if (a < 0).any() or (b < 0).any():
        raise ValueError("envelopes must be non-negative")
    denominator = float(np.trapezoid(a) + np.trapezoid(b))
    if denominator <= 0:
        raise ValueError("both envelopes are zero: co-contraction is undefined")
    return 200.0 * float(np.trapezoid(np.minimum(a, b))) / denominator


def active_mask(n: int, fs: float, *activations: Sequence[Activation]) -> NDArray[np.bool_]:
    """Samples (of `n` at `fs`) inside any of the given activations: the active part of a trial."""
    mask = np.zeros(n, dtype=bool)
    for found in activations:
        for a in found:
            mask[max(0, round(a.onset * fs)) : min(n, round(a.offset * fs))] = True
    return mask


def cocontraction_mvc(
    envelope_a: ArrayLike, envelope_b: ArrayLike, mvc_a: float, mvc_b: float, active: ArrayLike
) -> float:
    """Winter's %COCON of two envelopes normalised to their own MVC (%MVC), over the `active` samples only.

    Normalising makes the index independent of each electrode's gain (an envelope and its MVC scale
    together); restricting it to the active part keeps two resting channels, whose noise floors are equal,
    from reading as near-total co-contraction. ValueError when no sample is active.
    """
    mask = np.asarray(active, dtype=bool)
    if not mask.any():
        raise ValueError("no active samples: neither muscle rose above its onset threshold")
    a = np.clip(percent_mvc(_as_float(envelope_a)[mask], mvc_a), 0.0, None)
    b = np.clip(percent_mvc(_as_float(envelope_b)[mask], mvc_b), 0.0, None)
    # Sums, not trapezoids: the active samples need not be contiguous (the sample period cancels out).
    total = float(a.sum() + b.sum())
    if total <= 0:
        raise ValueError("both envelopes are zero over the active part: co-contraction is undefined")
    return 200.0 * float(np.minimum(a, b).sum()) / total


EnvelopeMethod = Literal["lowpass", "rms"]


def emg_window_metrics(
    values: ArrayLike,
    fs: float,
    channels: Sequence[str],
    unit: str,
    start: datetime,
    *,
    mvc: Mapping[str, float] | None = None,
    envelope_method: EnvelopeMethod = "lowpass",
    envelope_cutoff: float = DEFAULT_ENVELOPE_CUTOFF_HZ,
) -> list[Metric]:
    """Per-channel metrics of one uniformly sampled window `values` [n, channels] starting at `start`.

    `unit` is the UCUM unit of the values (e.g. `mV`, `{counts}`). Produces emg-rms and emg-envelope-peak in
    that unit, emg-median-frequency in Hz and emg-percent-mvc (mean envelope as % of the channel's MVC
    envelope, when given). Onset latency and co-contraction are whole-trial measures with a reference and
    declared pairs (processing.compute.emg_recording), never per window.
    """
    x = _as_float(values)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[1] != len(channels):
        raise ValueError("one channel name per column")
    end = start + timedelta(seconds=x.shape[0] / fs)
    cond = conditioned(x, fs)
    if envelope_method == "rms":
        env = moving_rms(cond, fs)
    else:
        env = np.clip(lowpass(rectify(cond), fs, envelope_cutoff), 0.0, None)
    rms_values = np.atleast_1d(rms(cond))
    f, p = welch_psd(cond, fs)
    mdf = np.atleast_1d(spectral_fraction_frequency(f, p, 0.5))
    peaks = env.max(axis=0)
    means = env.mean(axis=0)
    out: list[Metric] = []
    for i, name in enumerate(channels):
        ch = (name,)
        out.append(Metric(MetricCode.EMG_RMS, float(rms_values[i]), unit, start, end, ch))
        out.append(Metric(MetricCode.EMG_ENVELOPE_PEAK, float(peaks[i]), unit, start, end, ch))
        out.append(Metric(MetricCode.EMG_MEDIAN_FREQUENCY, float(mdf[i]), "Hz", start, end, ch))
        if mvc and name in mvc:
            pct = float(percent_mvc(means[i], mvc[name]))
            out.append(Metric(MetricCode.EMG_PERCENT_MVC, pct, "%", start, end, ch))
    return out
