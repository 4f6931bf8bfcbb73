"""Metric records produced by the signal core, with UCUM units.

A `Metric` is what the gateway later turns into an Observation: one number, its UCUM unit, the time window it
summarises and the channel(s) it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class MetricCode(StrEnum):
    """The metrics the device gateway computes: codes of the evaluation service's CodeSystem.

    `https://relearn.health/fhir/CodeSystem/neuromuscular-evaluation` (services/evaluation/.../codesystem)
    defines every one of them, so a metric event's code is the Observation's code, one vocabulary end to end.
    """

    EMG_RMS = "emg-rms"
    EMG_ENVELOPE_PEAK = "emg-envelope-peak"
    EMG_PERCENT_MVC = "emg-percent-mvc"
    EMG_ONSET_LATENCY = "emg-onset-latency"
    EMG_MEDIAN_FREQUENCY = "emg-median-frequency"
    EMG_CO_CONTRACTION_INDEX = "emg-co-contraction-index"
    SWAY_PATH_LENGTH = "sway-path-length"
    SWAY_MEAN_VELOCITY = "sway-mean-velocity"
    SWAY_MEAN_DISTANCE = "sway-mean-distance"
    SWAY_RMS_DISTANCE = "sway-rms-distance"
    SWAY_ELLIPSE_AREA = "sway-ellipse-area"
    SWAY_MEAN_FREQUENCY = "sway-mean-frequency"
    SWAY_CENTROIDAL_FREQUENCY = "sway-centroidal-frequency"
    SWAY_F50 = "sway-f50"
    SWAY_F95 = "sway-f95"
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
