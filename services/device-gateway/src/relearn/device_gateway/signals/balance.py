"""Posturography (quiet-standing balance) metrics from a uniformly sampled COP in cm.

Definitions follow Prieto et al. (1996) and Santos & Duarte (2016); the BDS reference values (`COParea`,
`COPvelo`) are reproduced exactly (see tests). Inputs are COPx (medio-lateral) and COPy (antero-posterior)
series at `fs` Hz, without NaN: resample uneven data and split at gaps first (`resample.py`).

Frequency measures use one Welch PSD of the planar sway, P(f) = Pxx(f) + Pyy(f) (Hann window, segments of half
the record, 50 % overlap, per-segment mean removed), which is the PSD of the complex signal x + iy folded onto
f >= 0.
- `sway-f50` / `sway-f95`: frequency below which 50 % / 95 % of the power in 0.15-5 Hz lies.
- `sway-centroidal-frequency`: sqrt(m2 / m0) over 0.15-5 Hz (Prieto's CFREQ), m_k = integral f^k P(f) df.
- `sway-mean-frequency`: m1 / m0 over the whole spectrum (0 to Nyquist). This is our reading of the BDS
  authors' `COPmfreq`; it matches their published values within 3.6e-4 Hz (0.001-0.11 %), not exactly
  (their spectral settings are not published), see `mean_power_frequency`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal, stats  # type: ignore[import-untyped]

from relearn.device_gateway.signals.metrics import Metric, MetricCode
from relearn.device_gateway.signals.spectrum import spectral_fraction_frequency, spectral_moment

FloatArray = NDArray[np.float64]

FREQUENCY_BAND_HZ = (0.15, 5.0)


def _xy(x: ArrayLike, y: ArrayLike, minimum: int = 3) -> tuple[FloatArray, FloatArray]:
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or xa.shape != ya.shape:
        raise ValueError("COPx and COPy must be 1-D series of the same length")
    if xa.size < minimum:
        raise ValueError(f"need at least {minimum} COP samples, got {xa.size}")
    bad = int((~np.isfinite(xa) | ~np.isfinite(ya)).sum())
    if bad:
        raise ValueError(f"COP has {bad} missing or unloaded (non-finite) samples; split or resample first")
    return xa, ya


def resultant_distance(x: ArrayLike, y: ArrayLike) -> FloatArray:
    """RD = sqrt(AP^2 + ML^2) of the mean-removed COP."""
    xa, ya = _xy(x, y, minimum=1)
    return np.asarray(np.hypot(xa - xa.mean(), ya - ya.mean()), dtype=np.float64)


def path_length(x: ArrayLike, y: ArrayLike) -> float:
    """Total excursion: sum of the distances between consecutive COP positions."""
    xa, ya = _xy(x, y, minimum=2)
    return float(np.hypot(np.diff(xa), np.diff(ya)).sum())


def mean_velocity(x: ArrayLike, y: ArrayLike, fs: float) -> float:
    """Path length / T with T = n / fs (the BDS authors' convention, `COPvelo`)."""
    xa, _ = _xy(x, y, minimum=2)
    return path_length(x, y) / (xa.size / fs)


def mean_distance(x: ArrayLike, y: ArrayLike) -> float:
    return float(resultant_distance(x, y).mean())


def rms_distance(x: ArrayLike, y: ArrayLike) -> float:
    rd = resultant_distance(x, y)
    return float(np.sqrt(np.mean(rd * rd)))


@lru_cache(maxsize=256)
def _f95(dfd: int) -> float:
    # F_0.95(2, dfd): about 0.1 ms through scipy.stats, and windows of a stream share their length.
    return float(stats.f.ppf(0.95, 2, dfd))


def ellipse_area_95(x: ArrayLike, y: ArrayLike) -> float:
    """95 % prediction-ellipse area (BDS `COParea`).

    With l1, l2 the eigenvalues of the sample covariance (n - 1) of (COPx, COPy):
    area = pi * prod_i sqrt(l_i * F_0.95(2, n-2) * (n-1) * 2 * (n+1) / (n * (n-2))).
    """
    xa, ya = _xy(x, y, minimum=3)
    n = xa.size
    eigenvalues = np.linalg.eigvalsh(np.cov(np.vstack([xa, ya]), ddof=1))
    f_quantile = _f95(n - 2)
    scale = f_quantile * (n - 1) * 2 * (n + 1) / (n * (n - 2))
    return float(math.pi * np.prod(np.sqrt(np.clip(eigenvalues, 0.0, None) * scale)))


def planar_psd(
    x: ArrayLike, y: ArrayLike, fs: float, nperseg: int | None = None
) -> tuple[FloatArray, FloatArray]:
    """Welch PSD of the planar sway, Pxx + Pyy (Hann, `nperseg` default ceil(n/2), 50 % overlap)."""
    xa, ya = _xy(x, y, minimum=8)
    seg = nperseg or math.ceil(xa.size / 2)
    f, p = signal.welch(np.vstack([xa, ya]), fs=fs, window="hann", nperseg=seg, detrend="constant", axis=-1)
    return np.asarray(f, dtype=np.float64), np.asarray(p.sum(axis=0), dtype=np.float64)


def _band(f: FloatArray, p: FloatArray, band: tuple[float, float]) -> tuple[FloatArray, FloatArray]:
    keep = (f >= band[0]) & (f <= band[1])
    if keep.sum() < 2:
        raise ValueError(f"record too short for a spectrum over {band[0]}-{band[1]} Hz")
    return f[keep], p[keep]


@dataclass(frozen=True, slots=True)
class CopFrequencies:
    f50: float
    f95: float
    centroidal: float
    mean: float  # whole-spectrum mean power frequency (BDS `COPmfreq` reading)


def mean_power_frequency(
    x: ArrayLike, y: ArrayLike, fs: float, band: tuple[float, float] | None = None
) -> float:
    """m1 / m0 of the planar PSD; over the whole spectrum by default (our reading of BDS `COPmfreq`)."""
    f, p = planar_psd(x, y, fs)
    if band is not None:
        f, p = _band(f, p, band)
    return spectral_moment(f, p, 1) / spectral_moment(f, p, 0)


def frequency_measures(
    x: ArrayLike, y: ArrayLike, fs: float, band: tuple[float, float] = FREQUENCY_BAND_HZ
) -> CopFrequencies:
    f_all, p_all = planar_psd(x, y, fs)
    f, p = _band(f_all, p_all, band)
    m0 = spectral_moment(f, p, 0)
    return CopFrequencies(
        f50=float(spectral_fraction_frequency(f, p, 0.5)),
        f95=float(spectral_fraction_frequency(f, p, 0.95)),
        centroidal=math.sqrt(spectral_moment(f, p, 2) / m0),
        mean=spectral_moment(f_all, p_all, 1) / spectral_moment(f_all, p_all, 0),
    )


def romberg_quotient(eyes_closed: float, eyes_open: float) -> float:
    """Eyes-closed value / eyes-open value of any metric.

    Not assumed > 1: some people sway less with eyes closed.
    """
    if eyes_open == 0 or not math.isfinite(eyes_open) or not math.isfinite(eyes_closed):
        raise ValueError("Romberg quotient needs a finite, non-zero eyes-open value")
    return eyes_closed / eyes_open


def balance_metrics(
    x: ArrayLike, y: ArrayLike, fs: float, start: datetime, channels: tuple[str, ...] = ("x", "y")
) -> list[Metric]:
    """All COP metrics of one trial or window of COP (cm) at `fs` Hz starting at `start`."""
    xa, ya = _xy(x, y, minimum=8)
    end = start + timedelta(seconds=xa.size / fs)
    freq = frequency_measures(xa, ya, fs)

    def metric(code: MetricCode, value: float, unit: str) -> Metric:
        return Metric(code, value, unit, start, end, channels)

    return [
        metric(MetricCode.SWAY_PATH_LENGTH, path_length(xa, ya), "cm"),
        metric(MetricCode.SWAY_MEAN_VELOCITY, mean_velocity(xa, ya, fs), "cm/s"),
        metric(MetricCode.SWAY_MEAN_DISTANCE, mean_distance(xa, ya), "cm"),
        metric(MetricCode.SWAY_RMS_DISTANCE, rms_distance(xa, ya), "cm"),
        metric(MetricCode.SWAY_ELLIPSE_AREA, ellipse_area_95(xa, ya), "cm2"),
        metric(MetricCode.SWAY_MEAN_FREQUENCY, freq.mean, "Hz"),
        metric(MetricCode.SWAY_CENTROIDAL_FREQUENCY, freq.centroidal, "Hz"),
        metric(MetricCode.SWAY_F50, freq.f50, "Hz"),
        metric(MetricCode.SWAY_F95, freq.f95, "Hz"),
    ]


def romberg_metrics(eyes_closed: Iterable[Metric], eyes_open: Iterable[Metric]) -> list[Metric]:
    """One `romberg-quotient` per metric code present in both trials (basis = that code, unit `{ratio}`)."""
    closed = {(m.code, m.channels): m for m in eyes_closed}
    out: list[Metric] = []
    for m_open in eyes_open:
        m_closed = closed.get((m_open.code, m_open.channels))
        if m_closed is None or m_open.value == 0:
            continue
        out.append(
            Metric(
                MetricCode.ROMBERG_QUOTIENT,
                romberg_quotient(m_closed.value, m_open.value),
                "{ratio}",
                min(m_open.start, m_closed.start),
                max(m_open.end, m_closed.end),
                m_open.channels,
                basis=m_open.code,
            )
        )
    return out
