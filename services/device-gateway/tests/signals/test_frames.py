from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from relearn.device_gateway.signals.frames import MAX_SAMPLES_PER_FRAME, SensorFrame

FrameFactory = Callable[..., SensorFrame]


def test_to_arrays_gives_float64_values_and_times_at_an_arbitrary_rate(make_frame: FrameFactory) -> None:
    frame = make_frame()

    values, times = frame.to_arrays()

    assert values.dtype == np.float64 and values.shape == (3, 2)
    assert values[1].tolist() == [0.03, 0.0]
    assert np.allclose(times, [0.0, 1 / 1111, 2 / 1111])
    assert frame.units == ("mV", "mV")
    assert frame.channel_names == ("vastus-medialis-left", "biceps-femoris-left")


def test_per_sample_timestamps_are_kept_for_uneven_sampling(make_frame: FrameFactory) -> None:
    frame = make_frame(timestamps=[0.0, 0.004, 0.011])

    _, times = frame.to_arrays()

    assert times.tolist() == [0.0, 0.004, 0.011]


def test_frames_parse_from_device_json(make_frame: FrameFactory) -> None:
    text = make_frame().model_dump_json()

    frame = SensorFrame.model_validate_json(text)

    assert frame.to_arrays()[0].shape == (3, 2)
    assert frame.start_time.tzinfo is not None


def test_raw_counts_stay_counts_without_a_transfer_function(make_frame: FrameFactory) -> None:
    frame = make_frame(
        [[2055.0], [2049.0]],
        channels=[{"name": "emg", "unit": "counts"}],
        adc={"resolution_bits": 12},
    )

    values, _ = frame.to_arrays()

    assert frame.units == ("{counts}",)
    assert values[:, 0].tolist() == [2055.0, 2049.0]


def test_declared_transfer_function_converts_counts(make_frame: FrameFactory) -> None:
    frame = make_frame(
        [[2048.0, 0.5], [2058.0, 0.25]],
        channels=[{"name": "raw", "unit": "counts"}, {"name": "calibrated", "unit": "mV"}],
        adc={"resolution_bits": 12, "transfer": {"gain": 0.002, "offset": 2048, "unit": "mV"}},
    )

    values, _ = frame.to_arrays()

    assert frame.units == ("mV", "mV")
    assert np.allclose(values, [[0.0, 0.5], [0.02, 0.25]])


def test_force_plate_moment_unit_is_reported_in_ucum(make_frame: FrameFactory) -> None:
    frame = make_frame(
        [[1.0, 2.0, 600.0, 3.0, 4.0, 0.1]],
        stream_type="force-plate",
        channels=[
            {"name": n, "unit": u}
            for n, u in [("Fx", "N"), ("Fy", "N"), ("Fz", "N"), ("Mx", "Nm"), ("My", "Nm"), ("Mz", "Nm")]
        ],
    )

    assert frame.units == ("N", "N", "N", "N.m", "N.m", "N.m")


def _three_rows(width: int) -> list[list[float]]:
    return [[0.0] * width for _ in range(3)]


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "ragged rows",
        {"samples": [[0.0, 0.1], [0.2], [0.3, 0.4]]},
        "samples",
        "row 1 has 1 values, expected 2",
    ),
    (
        "row width differs from channels",
        {"samples": _three_rows(3)},
        "samples",
        "expected 2 (one per channel)",
    ),
    ("NaN sample", {"samples": [[0.0, 0.1], [float("nan"), 0.0]]}, "samples", "row 1, channel vastus"),
    ("infinite sample", {"samples": [[0.0, float("inf")]]}, "samples", "not finite"),
    ("empty frame", {"samples": []}, "samples", "at least 1"),
    ("too many samples", {"samples": _three_rows(2) * 3334}, "samples", f"at most {MAX_SAMPLES_PER_FRAME}"),
    ("zero rate", {"sampling_rate_hz": 0}, "sampling_rate_hz", "greater than 0"),
    ("negative rate", {"sampling_rate_hz": -963.0}, "sampling_rate_hz", "greater than 0"),
    ("infinite rate", {"sampling_rate_hz": float("inf")}, "sampling_rate_hz", "finite"),
    ("negative sequence", {"sequence": -1}, "sequence", "greater than or equal to 0"),
    ("naive start time", {"start_time": datetime(2026, 3, 2, 9, 30)}, "start_time", "timezone"),
    ("equal timestamps", {"timestamps": [0.0, 0.001, 0.001]}, "timestamps", "strictly increasing"),
    ("decreasing timestamps", {"timestamps": [0.0, 0.002, 0.001]}, "timestamps", "strictly increasing"),
    ("timestamp count", {"timestamps": [0.0, 0.001]}, "timestamps", "2 entries for 3 samples"),
    ("negative timestamp", {"timestamps": [-0.001, 0.0, 0.001]}, "timestamps", "not negative"),
    (
        "unit not for EMG",
        {"channels": [{"name": "a", "unit": "N"}, {"name": "b", "unit": "mV"}]},
        "channels",
        "'N'",
    ),
    ("duplicate channel", {"channels": [{"name": "a", "unit": "mV"}] * 2}, "channels", "repeated: a"),
    ("no channels", {"channels": []}, "channels", "at least 1"),
    ("unknown field", {"gain": 3}, "gain", "Extra inputs"),
    ("bad stream type", {"stream_type": "ecg"}, "stream_type", "emg"),
]


@pytest.mark.parametrize(
    ("mutation", "field", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_validation_errors_name_the_field(
    make_frame: FrameFactory, mutation: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        make_frame(**mutation)

    errors = caught.value.errors()
    assert [e["loc"][0] for e in errors] == [field]
    assert fragment in errors[0]["msg"]


@pytest.mark.parametrize(
    ("stream_type", "channels", "fragment"),
    [
        ("force-plate", [("Fx", "N"), ("Fy", "N"), ("Mx", "Nm"), ("My", "Nm")], "missing ['Fz']"),
        ("force-plate", [("Fz", "N"), ("Mx", "N"), ("My", "Nm")], "Mx must be in N.m"),
        ("load-cells", [("TL", "kg"), ("TR", "kg"), ("BL", "kg")], "exactly the channels TL TR BL BR"),
        ("load-cells", [("TL", "kg"), ("TR", "N"), ("BL", "kg"), ("BR", "kg")], "share one unit"),
        ("cop", [("x", "cm"), ("z", "cm")], "exactly the channels x y"),
        ("cop", [("x", "cm"), ("y", "deg")], "'deg' is not allowed"),
    ],
)
def test_stream_layouts_are_checked(
    make_frame: FrameFactory, stream_type: str, channels: list[tuple[str, str]], fragment: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        make_frame(
            _three_rows(len(channels)),
            stream_type=stream_type,
            channels=[{"name": n, "unit": u} for n, u in channels],
        )

    errors = caught.value.errors()
    assert [e["loc"][0] for e in errors] == ["channels"]
    assert fragment in errors[0]["msg"]


def test_counts_outside_the_declared_adc_range_are_rejected(make_frame: FrameFactory) -> None:
    with pytest.raises(ValidationError) as caught:
        make_frame(
            [[100.0], [5000.0]], channels=[{"name": "emg", "unit": "counts"}], adc={"resolution_bits": 12}
        )

    error = caught.value.errors()[0]
    assert error["loc"] == ("samples",)
    assert "row 1, channel emg: 5000.0 is outside the range of a 12-bit ADC" in error["msg"]


def test_zero_gain_transfer_is_rejected(make_frame: FrameFactory) -> None:
    with pytest.raises(ValidationError) as caught:
        make_frame(adc={"resolution_bits": 12, "transfer": {"gain": 0, "unit": "mV"}})

    assert caught.value.errors()[0]["loc"] == ("adc", "transfer", "gain")
