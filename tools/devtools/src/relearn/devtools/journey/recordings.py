"""The sensor recordings a journey streams, read from ``/work/shared/data/sensors`` into frame-ready rows.

Balance: subject 1 of the Santos & Duarte 2016 public balance dataset, 60 s quiet-standing trials sampled at
100 Hz from a force plate. Each file's header is ``Time[s] Fx[N] Fy[N] Fz[N] Mx[Nm] My[Nm] Mz[Nm] COPx[cm]
COPy[cm]``; the journey streams the raw forces and moments (a ``force-plate`` stream) so the device
gateway computes the centre of pressure itself (COPx = -My/Fz, COPy = Mx/Fz). EMG: UCI lower-limb EMG, normal
subject 5.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Which trial goes with which sensory condition of the standing-balance proprioception ladder: eyes
# open/closed on a firm surface or on foam.
BALANCE_TRIALS: tuple[tuple[str, str, str], ...] = (
    ("BDS00001.txt", "open", "firm"),
    ("BDS00004.txt", "closed", "firm"),
    ("BDS00007.txt", "open", "foam"),
    ("BDS00010.txt", "closed", "foam"),
)
BALANCE_RATE_HZ = 100.0
# The force-plate channels (columns 1-6 of a trial file), in the units the gateway's force-plate layout wants.
BALANCE_COLUMNS = (1, 2, 3, 4, 5, 6)
FORCE_PLATE_CHANNELS = (("Fx", "N"), ("Fy", "N"), ("Fz", "N"), ("Mx", "N.m"), ("My", "N.m"), ("Mz", "N.m"))
# UCI lower-limb EMG, normal subject 5 (columns RF, BF, VM, ST in mV at 1 kHz): the agonist/antagonist pair of
# a knee extension, vastus medialis and biceps femoris, for 4 s (each 1 s window gives metrics too).
EMG_RECORDING = "uci_lowerlimb_5Npie.txt"
EMG_COLUMNS = (2, 1)
EMG_CHANNELS = ("vastus-medialis-right", "biceps-femoris-right")
EMG_RATE_HZ = 1000.0
EMG_SECONDS = 4
# What the stream binding's protocol says of it (docs/api.md, EMG protocol): the muscle of each channel,
# the movement cue (0.4 s in, after a quiet baseline; latencies are timed from it), the agonist/antagonist
# pair and each channel's MVC envelope (mV) that co-contraction is normalised to.
EMG_PROTOCOL = {
    "muscles": {"vastus-medialis-right": "vastus-medialis", "biceps-femoris-right": "biceps-femoris"},
    "cueTime": 0.4,
    "pairs": [{"agonist": "vastus-medialis-right", "antagonist": "biceps-femoris-right"}],
}
EMG_MVC = {"vastus-medialis-right": 0.05, "biceps-femoris-right": 0.4}


def default_data_dir() -> Path:
    """``../shared/data/sensors`` next to the repository (``RELEARN_SENSOR_DATA`` overrides it)."""
    env = os.environ.get("RELEARN_SENSOR_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "sensors"
        if (parent / "pyproject.toml").exists() and candidate.exists():
            return candidate
    return Path("/work/shared/data/sensors")


@dataclass(frozen=True)
class Recording:
    """Samples of one sensor recording, row-major (``rows[i][c]``), with its channel layout."""

    stream_type: str
    rate_hz: float
    channels: tuple[tuple[str, str], ...]  # (name, unit)
    rows: list[list[float]]

    @property
    def seconds(self) -> float:
        return len(self.rows) / self.rate_hz


def _numeric_rows(path: Path, columns: Sequence[int]) -> list[list[float]]:
    rows: list[list[float]] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) <= max(columns):
                continue
            try:
                rows.append([float(parts[c]) for c in columns])
            except ValueError:
                continue  # a header line
    return rows


def balance_recording(data_dir: Path, proprioception: int) -> tuple[Recording, str, str]:
    """The force-plate trial for a proprioception step: (recording, vision, surface)."""
    name, vision, surface = BALANCE_TRIALS[min(proprioception, len(BALANCE_TRIALS) - 1)]
    rows = _numeric_rows(data_dir / "balance" / name, BALANCE_COLUMNS)
    return Recording("force-plate", BALANCE_RATE_HZ, FORCE_PLATE_CHANNELS, rows), vision, surface


def emg_recording(data_dir: Path, seconds: int = EMG_SECONDS) -> Recording:
    """The first ``seconds`` of the knee-extension EMG pair."""
    rows = _numeric_rows(data_dir / "emg" / EMG_RECORDING, EMG_COLUMNS)
    return Recording(
        "emg", EMG_RATE_HZ, tuple((c, "mV") for c in EMG_CHANNELS), rows[: int(seconds * EMG_RATE_HZ)]
    )
