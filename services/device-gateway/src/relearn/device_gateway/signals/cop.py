"""Centre of pressure (COP) from a force plate or a four-load-cell board, in cm.

Force plate (moments about the plate's surface origin): COPx = -My / Fz, COPy = Mx / Fz; with forces in N and
moments in N.m the ratio is in m, times 100 -> cm.

Four load cells TL, TR, BL, BR at half-spacings Lx/2 (left-right) and Ly/2 (front-back) from the board centre:
COPx = (Lx/2) ((TR + BR) - (TL + BL)) / sum(F), COPy = (Ly/2) ((TL + TR) - (BL + BR)) / sum(F). The cell unit
(N or kg) cancels out; the spacings give the unit (cm here).

Samples with too little vertical load (nobody on the plate, or stepping off) have no meaningful COP: they come
back as NaN, and the balance metrics refuse NaN, so unloaded stretches are reported, not silently averaged.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

MIN_LOAD_N = 10.0
"""Below this vertical force (about 1 kg) the COP is undefined (NaN)."""

WII_BALANCE_BOARD_CM = (43.3, 23.8)
"""Sensor spacing (Lx, Ly) of the Nintendo Wii Balance Board, the usual consumer four-cell board."""


def cop_from_force_plate(
    fz: ArrayLike, mx: ArrayLike, my: ArrayLike, *, min_load: float = MIN_LOAD_N
) -> tuple[FloatArray, FloatArray]:
    """(COPx, COPy) in cm from Fz [N], Mx and My [N.m]; NaN where |Fz| < `min_load`."""
    fz_a = np.asarray(fz, dtype=np.float64)
    mx_a = np.asarray(mx, dtype=np.float64)
    my_a = np.asarray(my, dtype=np.float64)
    loaded = np.abs(fz_a) >= min_load
    safe = np.where(loaded, fz_a, 1.0)
    x = np.where(loaded, -my_a / safe * 100.0, np.nan)
    y = np.where(loaded, mx_a / safe * 100.0, np.nan)
    return x, y


def cop_from_load_cells(
    tl: ArrayLike,
    tr: ArrayLike,
    bl: ArrayLike,
    br: ArrayLike,
    *,
    lx: float = WII_BALANCE_BOARD_CM[0],
    ly: float = WII_BALANCE_BOARD_CM[1],
    min_load: float = MIN_LOAD_N,
) -> tuple[FloatArray, FloatArray]:
    """(COPx, COPy) in the unit of `lx`/`ly` (cm by default); NaN where the summed load < `min_load`.

    `min_load` is in the cells' unit: pass about 1.0 for boards reporting kg.
    """
    tl_a, tr_a, bl_a, br_a = (np.asarray(v, dtype=np.float64) for v in (tl, tr, bl, br))
    total = tl_a + tr_a + bl_a + br_a
    loaded = total >= min_load
    safe = np.where(loaded, total, 1.0)
    x = np.where(loaded, (lx / 2.0) * ((tr_a + br_a) - (tl_a + bl_a)) / safe, np.nan)
    y = np.where(loaded, (ly / 2.0) * ((tl_a + tr_a) - (bl_a + br_a)) / safe, np.nan)
    return x, y


def remove_mean(x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    return xa - xa.mean(), ya - ya.mean()
