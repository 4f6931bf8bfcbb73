from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relearn.device_gateway.signals.frames import SensorFrame

SENSORS = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "sensors"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

Split = Callable[..., list[SensorFrame]]


@pytest.fixture(scope="session")
def bmc() -> np.ndarray:
    """BMC EMG recording at 1 kHz (mV), one channel; a contraction starts at about 0.4 s."""
    data = np.loadtxt(SENSORS / "emg" / "bmc_emg.csv", delimiter=",")
    return np.asarray(data[:, 1:2], dtype=np.float64)


@pytest.fixture(scope="session")
def bds() -> np.ndarray:
    """BDS00001 force-plate trial at 100 Hz: Time Fx Fy Fz Mx My Mz COPx COPy (N, N.m, cm)."""
    return np.asarray(np.loadtxt(SENSORS / "balance" / "BDS00001.txt", skiprows=1), dtype=np.float64)


@pytest.fixture
def split() -> Split:
    """Cut a recording [n, channels] into consecutive frames whose sizes cycle through `sizes`.

    `times` (seconds from T0, one per row) makes frames with explicit timestamps (uneven sampling).
    """

    def build(
        values: np.ndarray,
        sizes: Sequence[int],
        *,
        fs: float,
        channels: list[dict[str, str]],
        stream_type: str = "emg",
        stream_id: str = "stream-1",
        device_id: str = "dev-1",
        times: np.ndarray | None = None,
        start: datetime = T0,
    ) -> list[SensorFrame]:
        frames: list[SensorFrame] = []
        i = 0
        while i < len(values):
            n = sizes[len(frames) % len(sizes)]
            chunk = values[i : i + n]
            data: dict[str, Any] = {
                "device_id": device_id,
                "stream_type": stream_type,
                "stream_id": stream_id,
                "sequence": len(frames),
                "sampling_rate_hz": fs,
                "channels": channels,
                "samples": chunk.tolist(),
            }
            if times is None:
                data["start_time"] = start + timedelta(seconds=i / fs)
            else:
                first = float(times[i])
                data["start_time"] = start + timedelta(seconds=first)
                data["timestamps"] = (times[i : i + n] - first).tolist()
            frames.append(SensorFrame.model_validate(data))
            i += n
        return frames

    return build
