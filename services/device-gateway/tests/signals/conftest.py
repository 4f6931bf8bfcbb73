from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relearn.device_gateway.signals.frames import SensorFrame

SENSORS = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "sensors"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

FrameFactory = Callable[..., SensorFrame]


@pytest.fixture(scope="session")
def sensors() -> Path:
    return SENSORS


@pytest.fixture
def make_frame() -> FrameFactory:
    """Build a valid frame; keyword arguments override fields (values may be a numpy array)."""

    def build(values: Any = None, **overrides: Any) -> SensorFrame:
        data: dict[str, Any] = {
            "device_id": "armband-7",
            "stream_type": "emg",
            "stream_id": "emg-0",
            "sequence": 0,
            "start_time": T0,
            "sampling_rate_hz": 1111.0,
            "channels": [
                {"name": "vastus-medialis-left", "unit": "mV"},
                {"name": "biceps-femoris-left", "unit": "mV"},
            ],
            "samples": [[0.01, -0.02], [0.03, 0.0], [-0.01, 0.02]],
        }
        if values is not None:
            data["samples"] = np.asarray(values, dtype=float).tolist()
        data.update(overrides)
        return SensorFrame.model_validate(data)

    return build


FramesFactory = Callable[..., list[SensorFrame]]


@pytest.fixture
def frames_of() -> FramesFactory:
    """Split a recording [n, ch] into consecutive frames of `frame_len` samples (sequence 0, 1, ...).

    With `times` (seconds from T0, uneven) each frame carries per-sample timestamps relative to its own start.
    """

    def split(
        values: np.ndarray,
        *,
        rate: float,
        channels: list[dict[str, str]],
        stream_type: str = "emg",
        frame_len: int = 500,
        times: np.ndarray | None = None,
        **extra: Any,
    ) -> list[SensorFrame]:
        from datetime import timedelta

        out = []
        for seq, lo in enumerate(range(0, values.shape[0], frame_len)):
            block = values[lo : lo + frame_len]
            if times is None:
                start = T0 + timedelta(seconds=lo / rate)
                stamps = None
            else:
                start = T0 + timedelta(seconds=float(times[lo]))
                stamps = (times[lo : lo + frame_len] - times[lo]).tolist()
            out.append(
                SensorFrame.model_validate(
                    {
                        "device_id": "dev-1",
                        "stream_type": stream_type,
                        "stream_id": "s-1",
                        "sequence": seq,
                        "start_time": start,
                        "sampling_rate_hz": rate,
                        "channels": channels,
                        "samples": block.tolist(),
                        "timestamps": stamps,
                        **extra,
                    }
                )
            )
        return out

    return split
