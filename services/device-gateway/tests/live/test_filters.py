from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from relearn.device_gateway.live.domain import (
    CopDisplay,
    CopUpdates,
    EmgDisplay,
    EmgUpdates,
    TimeBuckets,
)
from relearn.device_gateway.signals.frames import SensorFrame, StreamType

Split = Callable[..., list[SensorFrame]]
FORCE_PLATE_CHANNELS = [
    {"name": "Fx", "unit": "N"},
    {"name": "Fy", "unit": "N"},
    {"name": "Fz", "unit": "N"},
    {"name": "Mx", "unit": "N.m"},
    {"name": "My", "unit": "N.m"},
    {"name": "Mz", "unit": "N.m"},
]
EMG_CHANNEL = [{"name": "tibialis-anterior", "unit": "mV"}]


def envelope_of(frames: list[SensorFrame], display: EmgDisplay | None = None) -> np.ndarray:
    display = display or EmgDisplay()
    return np.concatenate([display.envelope(f)[1] for f in frames])


def updates_of(frames: list[SensorFrame], display: EmgDisplay | CopDisplay) -> list[EmgUpdates | CopUpdates]:
    return [display.feed(f) for f in frames]


# -- EMG envelope ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[1], [7, 200, 33, 1, 512], [97], [1000, 3]])
def test_envelope_does_not_depend_on_frame_boundaries(
    bmc: np.ndarray, split: Split, sizes: list[int]
) -> None:
    whole = envelope_of(split(bmc, [len(bmc)], fs=1000.0, channels=EMG_CHANNEL))
    pieces = envelope_of(split(bmc, sizes, fs=1000.0, channels=EMG_CHANNEL))
    assert pieces.shape == whole.shape == bmc.shape
    np.testing.assert_allclose(pieces, whole, rtol=1e-9, atol=1e-12)


def test_display_updates_do_not_depend_on_bucket_aligned_framing(bmc: np.ndarray, split: Split) -> None:
    one = EmgDisplay().feed(split(bmc, [len(bmc)], fs=1000.0, channels=EMG_CHANNEL)[0])
    framed = updates_of(split(bmc, [40, 200, 80], fs=1000.0, channels=EMG_CHANNEL), EmgDisplay())
    np.testing.assert_allclose(np.concatenate([u.seconds for u in framed]), one.seconds)
    np.testing.assert_allclose(np.concatenate([u.envelope for u in framed]), one.envelope, rtol=1e-9)


def test_envelope_rises_when_the_contraction_starts(bmc: np.ndarray, split: Split) -> None:
    updates = updates_of(split(bmc, [200], fs=1000.0, channels=EMG_CHANNEL), EmgDisplay())
    t = np.concatenate([u.seconds for u in updates])
    env = np.concatenate([u.envelope[:, 0] for u in updates])
    rest = env[(t > 0.1) & (t < 0.3)].mean()
    rising = t[env > 3 * rest][0]
    assert 0.38 <= rising <= 0.5  # the raw signal departs from rest at about 0.4 s
    assert env[t > 0.5].max() > 5 * rest


def test_an_adc_offset_does_not_ring_through_the_filters(split: Split) -> None:
    quiet = 2048.0 + np.random.default_rng(1).normal(0, 2.0, size=(2000, 1))
    counts = [{"name": "vm", "unit": "counts"}]
    env = envelope_of(split(quiet, [100], fs=1000.0, channels=counts))
    assert env.max() < 5.0  # noise-sized, not the 2048-count step


@pytest.mark.parametrize("fs, frame_s", [(2148.0, 0.2), (1000.0, 0.05), (963.0, 0.5)])
def test_display_rate_is_at_least_20_per_second_of_data(split: Split, fs: float, frame_s: float) -> None:
    n = round(3 * fs)
    signal = np.random.default_rng(2).normal(size=(n, 8))
    channels = [{"name": f"ch{i}", "unit": "uV"} for i in range(8)]
    updates = updates_of(split(signal, [round(frame_s * fs)], fs=fs, channels=channels), EmgDisplay())
    t = np.concatenate([u.seconds for u in updates])
    assert len(t) / (n / fs) >= 20
    assert np.all(np.diff(t) > 0)
    assert np.concatenate([u.envelope for u in updates]).shape == (len(t), 8)


def test_display_rate_is_a_setting_but_not_below_20() -> None:
    assert TimeBuckets(30.0).rate_hz == 30.0
    with pytest.raises(ValueError, match="at least 20"):
        EmgDisplay(display_rate_hz=10.0)


def test_repeated_or_overlapping_frames_add_nothing(bmc: np.ndarray, split: Split) -> None:
    frames = split(bmc[:1000], [200], fs=1000.0, channels=EMG_CHANNEL)
    display = EmgDisplay()
    first = [display.feed(f) for f in frames[:3]]
    again = display.feed(frames[1])
    assert len(again) == 0
    later = display.feed(frames[3])
    reference = EmgDisplay()
    expected = [reference.feed(f) for f in frames[:4]][-1]
    assert len(first) == 3
    np.testing.assert_allclose(later.envelope, expected.envelope)


# -- centre of pressure -----------------------------------------------------------------------------------


def force_plate_frames(bds: np.ndarray, split: Split, sizes: list[int]) -> list[SensorFrame]:
    return split(bds[:, 1:7], sizes, fs=100.0, channels=FORCE_PLATE_CHANNELS, stream_type="force-plate")


def test_force_plate_cop_follows_the_files_own_cop_relative_motion(bds: np.ndarray, split: Split) -> None:
    display = CopDisplay(StreamType.FORCE_PLATE)
    updates = updates_of(force_plate_frames(bds, split, [20]), display)
    t = np.concatenate([u.seconds for u in updates])
    x = np.concatenate([u.x for u in updates])
    y = np.concatenate([u.y for u in updates])
    # The file's COP columns (cm), relative to their mean over the first second, averaged per 40 ms bucket.
    seconds = np.arange(len(bds)) / 100.0
    cop_x, cop_y = bds[:, 7] - bds[:100, 7].mean(), bds[:, 8] - bds[:100, 8].mean()
    bucket = np.floor(seconds * 25 + 1e-9).astype(int)
    expected_x = np.bincount(bucket, cop_x) / np.bincount(bucket)
    expected_y = np.bincount(bucket, cop_y) / np.bincount(bucket)
    assert len(t) == bucket[-1] + 1 == 1500  # 60 s at 25 updates/s
    later = t >= 1.0  # the reference is final after the first second
    np.testing.assert_allclose(x[later], expected_x[later], atol=1e-4)
    np.testing.assert_allclose(y[later], expected_y[later], atol=1e-4)
    assert display.reference == pytest.approx((bds[:100, 7].mean(), bds[:100, 8].mean()), abs=1e-5)
    calibrating = np.concatenate([u.calibrating for u in updates])
    assert calibrating[~later].all() and not calibrating[later].any()


def test_irregular_frames_still_track_the_file(bds: np.ndarray, split: Split) -> None:
    regular = updates_of(force_plate_frames(bds, split, [20]), CopDisplay(StreamType.FORCE_PLATE))
    ragged = updates_of(force_plate_frames(bds, split, [3, 11, 1, 27, 6]), CopDisplay(StreamType.FORCE_PLATE))
    t_reg = np.concatenate([u.seconds for u in regular])
    t_rag = np.concatenate([u.seconds for u in ragged])
    x_reg = np.concatenate([u.x for u in regular])
    x_rag = np.concatenate([u.x for u in ragged])
    # One update per 40 ms bucket either way; a bucket split across frames reports its first part, which
    # moves by at most about a millimetre in 40 ms of quiet standing.
    assert len(t_rag) == len(t_reg)
    assert np.all(np.floor(t_rag * 25 + 1e-9) == np.floor(t_reg * 25 + 1e-9))
    difference = np.abs(x_rag[t_rag >= 1] - x_reg[t_reg >= 1])
    assert difference.max() < 0.1
    assert np.median(difference) < 0.005


def test_uneven_timestamps_are_bucketed_by_time(split: Split) -> None:
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.uniform(1 / 56, 1 / 14, size=600))  # a consumer board at 14-56 Hz
    times = np.concatenate([times[:300], times[300:] + 0.7])  # and a 0.7 s hole
    xy = np.column_stack([np.sin(times), np.cos(times)])
    frames = split(
        xy,
        [10],
        fs=30.0,
        times=times,
        channels=[{"name": "x", "unit": "mm"}, {"name": "y", "unit": "mm"}],
        stream_type="cop",
    )
    updates = updates_of(frames, CopDisplay(StreamType.COP))
    t = np.concatenate([u.seconds for u in updates])
    buckets = np.floor(t * 25 + 1e-9)
    assert np.all(np.diff(buckets) > 0)  # never two updates for one bucket
    seconds = times - times[0]
    occupied = np.unique(np.floor(seconds * 25 + 1e-6))
    assert len(t) == len(occupied)  # one update for every bucket that got samples, none for the hole
    x = np.concatenate([u.x for u in updates])
    # mm -> cm, relative to the first second's mean.
    first_second = seconds < 1.0
    np.testing.assert_allclose(
        x[-1], 0.1 * (xy[-1, 0] - xy[first_second, 0].mean()), atol=0.1 * 2 * np.pi / 25 * 2
    )


def test_load_cells_cop_and_unloaded_board(split: Split) -> None:
    cells = [{"name": n, "unit": "kg"} for n in ("TL", "TR", "BL", "BR")]
    standing = np.tile([20.0, 20.0, 20.0, 20.0], (100, 1))
    leaning = np.tile([10.0, 30.0, 10.0, 30.0], (100, 1))  # weight shifted right
    empty = np.zeros((25, 4))
    frames = split(
        np.vstack([standing, leaning, empty]), [25], fs=100.0, channels=cells, stream_type="load-cells"
    )
    updates = updates_of(frames, CopDisplay(StreamType.LOAD_CELLS))
    x = np.concatenate([u.x for u in updates])
    y = np.concatenate([u.y for u in updates])
    assert np.allclose(x[:25], 0) and np.allclose(y[:50], 0)
    # (Lx/2) * ((TR+BR) - (TL+BL)) / sum = 21.65 * 40 / 80 with the Wii board's 43.3 cm spacing.
    assert np.allclose(x[25:50], 21.65 / 2)
    assert np.isnan(x[50:]).all()
