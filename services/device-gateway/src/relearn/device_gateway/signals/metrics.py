"""Metric records produced by the signal core, with UCUM units.

A `Metric` is what the gateway later turns into an Observation: one number, its UCUM unit, the time window it
summarises and the channel(s) it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class MetricCode(StrEnum):
    """Local codes for the metrics the device gateway computes."""

    EMG_RMS = "emg-rms"
    EMG_ENVELOPE_PEAK = "emg-envelope-peak"
    EMG_PCT_MVC = "emg-pct-mvc"
    EMG_ONSET_LATENCY = "emg-onset-latency"
    EMG_MEDIAN_FREQUENCY = "emg-median-frequency"
    EMG_COCONTRACTION = "emg-cocontraction"
    COP_PATH_LENGTH = "cop-path-length"
    COP_MEAN_VELOCITY = "cop-mean-velocity"
    COP_MEAN_DISTANCE = "cop-mean-distance"
    COP_RMS_DISTANCE = "cop-rms-distance"
    COP_ELLIPSE_AREA_95 = "cop-ellipse-area-95"
    COP_MEAN_FREQUENCY = "cop-mean-frequency"
    COP_CENTROIDAL_FREQUENCY = "cop-centroidal-frequency"
    COP_F50 = "cop-f50"
    COP_F95 = "cop-f95"
    ROMBERG_QUOTIENT = "romberg-quotient"


# Unit spellings devices send -> UCUM. Raw ADC counts are an annotation in UCUM: `{counts}`.
_UCUM: dict[str, str] = {
    "V": "V",
    "mV": "mV",
    "uV": "uV",
    "µV": "uV",
    "counts": "{counts}",
    "{counts}": "{counts}",
    "N": "N",
    "Nm": "N.m",
    "N.m": "N.m",
    "kg": "kg",
    "cm": "cm",
    "mm": "mm",
    "m": "m",
}


def ucum_unit(unit: str) -> str:
    """UCUM code for a unit as a device declares it (`Nm` -> `N.m`, `counts` -> `{counts}`)."""
    try:
        return _UCUM[unit]
    except KeyError:
        raise ValueError(f"no UCUM mapping for unit {unit!r}") from None


@dataclass(frozen=True, slots=True)
class Metric:
    """One computed value over one time window.

    `start`/`end` bound the window the value summarises (end exclusive); `channels` names the input
    channel(s): one for per-channel EMG metrics, two for co-contraction, `("x", "y")` for COP metrics.
    `basis` is set on quotients (`romberg-quotient`) to the metric the quotient is of.
    """

    code: MetricCode
    value: float
    unit: str
    start: datetime
    end: datetime
    channels: tuple[str, ...]
    basis: MetricCode | None = None
