"""Retry delays: exponential back-off with full jitter. Pure."""

from __future__ import annotations

import random


def retry_delay(failures: int, *, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: uniform, at most min(cap, base*2**n)."""
    ceiling = min(cap_s, base_s * (2 ** min(max(failures - 1, 0), 30)))
    r = rng or random
    return max(base_s / 2, r.uniform(0, ceiling))
