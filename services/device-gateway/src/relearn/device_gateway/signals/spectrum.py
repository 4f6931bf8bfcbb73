"""Shared spectral helpers (Welch PSD summaries)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def spectral_fraction_frequency(f: FloatArray, p: FloatArray, fraction: float) -> FloatArray | float:
    """Frequency where the cumulative (trapezoid) power first reaches `fraction` of the total.

    `p` is [bins] or [bins, channels]; linear interpolation between bins. A float for 1-D `p`.
    """
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    if f.size < 2:
        raise ValueError("need at least two frequency bins")
    pp = p if p.ndim > 1 else p[:, None]
    df = np.diff(f)[:, None]
    cum = np.concatenate([np.zeros((1, pp.shape[1])), np.cumsum((pp[1:] + pp[:-1]) / 2 * df, axis=0)])
    total = cum[-1]
    if (total <= 0).any():
        raise ValueError("signal has no power in the analysed band")
    target = fraction * total
    idx = np.clip(np.argmax(cum >= target, axis=0), 1, f.size - 1)
    cols = np.arange(pp.shape[1])
    c0, c1 = cum[idx - 1, cols], cum[idx, cols]
    step = np.where(c1 > c0, c1 - c0, 1.0)
    frac = np.where(c1 > c0, (target - c0) / step, 0.0)
    out = f[idx - 1] + frac * (f[idx] - f[idx - 1])
    return float(out[0]) if p.ndim == 1 else np.asarray(out, dtype=np.float64)


def spectral_moment(f: FloatArray, p: FloatArray, k: int) -> float:
    """k-th spectral moment: integral of f^k P(f) df (trapezoid)."""
    return float(np.trapezoid(f**k * p, f))
