from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from relearn.device_gateway.signals import balance
from relearn.device_gateway.signals.frames import SensorFrame
from relearn.device_gateway.signals.resample import estimate_rate, find_time_gaps, resample_uniform
from relearn.device_gateway.signals.windows import StreamAssembler

FramesFactory = Callable[..., list[SensorFrame]]


@pytest.fixture(scope="module")
def gestures(sensors: Path) -> np.ndarray:
    """time [ms], 8 EMG channels [V], class label."""
    return np.loadtxt(sensors / "emg" / "uci_gestures_s10_1_raw_data_11-08_21.03.16.txt", skiprows=1)


def test_uneven_armband_timestamps_are_kept_and_gaps_flagged(
    gestures: np.ndarray, frames_of: FramesFactory
) -> None:
    times = (gestures[:, 0] - gestures[0, 0]) / 1000.0
    values = gestures[:, 1:9]
    channels = [{"name": f"forearm-{i}", "unit": "V"} for i in range(1, 9)]
    assembler = StreamAssembler(window_s=1.0, buffer_s=3.0, recording_s=120.0)

    results = [
        assembler.push(f)
        for f in frames_of(values, rate=1000.0, channels=channels, frame_len=1000, times=times)
    ]
    recording = assembler.recording()

    # Every real timestamp survives framing and assembly: nothing was regularised behind our back.
    assert np.allclose(recording.times, times, atol=1e-9)
    assert np.array_equal(recording.values, values)
    # The intervals longer than 5 nominal periods (the file has 6, 7, 9 and 10 ms holes) are reported...
    silences = [g for r in results for g in r.time_gaps]
    assert len(silences) == 8
    assert max(g.duration for g in silences) == pytest.approx(0.010)
    # ...and flag the windows they fall in.
    windows = [w for r in results for w in r.windows]
    flagged = {w.index for w in windows if not w.complete}
    assert flagged == {int(g.end // 1.0) for g in silences} | {int(g.start // 1.0) for g in silences}
    assert len(windows) == 64  # last sample at 64.556 s closes window 63


def test_resampling_the_armband_interpolates_short_holes_and_marks_long_ones(gestures: np.ndarray) -> None:
    times = (gestures[:, 0] - gestures[0, 0]) / 1000.0
    values = gestures[:, 1:9]

    assert estimate_rate(times) == pytest.approx(1000.0)
    result = resample_uniform(times, values, rate_hz=1000.0, max_gap_s=0.005)

    assert result.times[0] == 0.0 and result.times[-1] == pytest.approx(times[-1])
    assert len(result.gaps) == len(find_time_gaps(times, 0.005)) == 8
    # Grid points strictly inside the 8 long holes are NaN and invalid; everything else is finite.
    inside = sum(round(g.duration * 1000) - 1 for g in result.gaps)
    assert (~result.valid).sum() == inside
    assert np.isnan(result.values[~result.valid]).all() and np.isfinite(result.values[result.valid]).all()
    assert len(result.segments()) == 9
    # On real sample times the grid reproduces the recorded values.
    on_grid = np.round(times * 1000).astype(int)
    assert np.array_equal(result.values[on_grid], values)


def test_balance_board_cop_is_resampled_explicitly_with_the_gap_reported() -> None:
    # A consumer board: 14-56 Hz jitter and one 0.7 s dropout, COP sway at 0.4 Hz.
    rng = np.random.default_rng(7)
    steps = rng.uniform(1 / 56, 1 / 14, size=1500)
    steps[700] = 0.7
    t = np.concatenate([[0.0], np.cumsum(steps)])
    x = 1.5 * np.sin(2 * np.pi * 0.4 * t)
    y = 0.8 * np.cos(2 * np.pi * 0.4 * t)

    result = resample_uniform(t, np.column_stack([x, y]), rate_hz=50.0, max_gap_s=0.25)

    assert [(g.start, g.end) for g in result.gaps] == [(t[700], t[701])]
    segments = result.segments()
    assert len(segments) == 2
    longest = max(segments, key=lambda s: s.stop - s.start)
    grid = result.times[longest]
    expected = np.hypot(1.5 * np.sin(2 * np.pi * 0.4 * grid), 0.8 * np.cos(2 * np.pi * 0.4 * grid)).mean()
    assert balance.mean_distance(result.values[longest, 0], result.values[longest, 1]) == pytest.approx(
        expected, rel=0.05
    )
    # Across the gap there is nothing to compute on: the metrics refuse rather than bridge it.
    with pytest.raises(ValueError, match="missing or unloaded"):
        balance.balance_metrics(
            result.values[:, 0], result.values[:, 1], 50.0, datetime(2026, 3, 2, tzinfo=UTC)
        )


def test_resampling_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        resample_uniform(np.array([0.0, 0.2, 0.1]), np.zeros(3), 10.0, 1.0)
    with pytest.raises(ValueError, match="positive"):
        resample_uniform(np.array([0.0, 0.1]), np.zeros(2), 0.0, 1.0)
