from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from relearn.device_gateway.signals.frames import SensorFrame
from relearn.device_gateway.signals.windows import Gap, StreamAssembler, StreamAssemblers

FramesFactory = Callable[..., list[SensorFrame]]
FrameFactory = Callable[..., SensorFrame]

TWO_CHANNELS = [{"name": "left", "unit": "mV"}, {"name": "right", "unit": "mV"}]


def _ramp(n: int, channels: int = 2) -> np.ndarray:
    # Sample i of channel c is i + c / 10: every sample is identifiable after assembly.
    return np.arange(n, dtype=float)[:, None] + np.arange(channels)[None, :] / 10


def test_windows_are_fixed_contiguous_and_in_order(frames_of: FramesFactory) -> None:
    rate = 1111.0
    data = _ramp(4000)
    assembler = StreamAssembler(window_s=1.0, buffer_s=4.0)

    windows = [
        w
        for f in frames_of(data, rate=rate, channels=TWO_CHANNELS, frame_len=333)
        for w in assembler.push(f).windows
    ]

    assert [w.index for w in windows] == [0, 1, 2]
    first = windows[0]
    assert first.end - first.start == timedelta(seconds=1)
    assert windows[1].start == first.end
    assert all(w.complete for w in windows)
    assert first.channels == ("left", "right") and first.units == ("mV", "mV")
    # Window k holds exactly the samples with k <= i / rate < k + 1, values untouched, in order.
    joined = np.concatenate([w.values for w in windows])
    assert np.array_equal(joined, data[: joined.shape[0]])
    assert [w.values.shape[0] for w in windows] == [1111, 1111, 1111]
    assert np.all(windows[2].times >= 0) and np.all(windows[2].times < 1.0)


def test_flush_returns_the_partial_last_window_flagged_incomplete(frames_of: FramesFactory) -> None:
    assembler = StreamAssembler(window_s=1.0, buffer_s=4.0)
    for frame in frames_of(_ramp(2500), rate=1000.0, channels=TWO_CHANNELS):
        assembler.push(frame)

    last = assembler.flush()

    assert last is not None and last.index == 2 and not last.complete
    assert last.values[:, 0].tolist() == list(range(2000, 2500))
    assert assembler.flush() is None


def test_gap_is_reported_and_windows_across_it_are_flagged(frames_of: FramesFactory) -> None:
    frames = frames_of(_ramp(5000), rate=1000.0, channels=TWO_CHANNELS, frame_len=250)
    assembler = StreamAssembler(window_s=1.0, buffer_s=4.0)
    results = [assembler.push(f) for f in frames if f.sequence not in (5, 6)]

    gaps = [g for r in results for g in r.gaps]
    windows = [w for r in results for w in r.windows]

    assert gaps == [Gap(frames[0].key, expected=5, got=7)]
    assert gaps[0].missing == 2 and assembler.total_gaps == 1
    # Frames 5 and 6 held samples 1250-1749: window 1 lost half its samples and says so; the others are whole.
    assert [(w.index, w.complete, w.values.shape[0]) for w in windows] == [
        (0, True, 1000),
        (1, False, 500),
        (2, True, 1000),
        (3, True, 1000),
    ]
    assert assembler.recording().gaps == tuple(gaps)


def test_duplicates_are_ignored_and_reported(frames_of: FramesFactory) -> None:
    frames = frames_of(_ramp(3000), rate=1000.0, channels=TWO_CHANNELS)
    assembler = StreamAssembler()
    for frame in frames[:3]:
        assembler.push(frame)

    again = assembler.push(frames[1])

    assert not again.accepted
    assert [(r.sequence, r.reason) for r in again.rejected] == [(1, "duplicate")]
    for frame in frames[3:]:
        assembler.push(frame)
    recording = assembler.recording()
    assert np.array_equal(recording.values, _ramp(3000))


def test_a_missing_frame_arriving_after_the_gap_is_rejected_as_late(frames_of: FramesFactory) -> None:
    frames = frames_of(_ramp(2000), rate=1000.0, channels=TWO_CHANNELS)
    assembler = StreamAssembler()
    assembler.push(frames[0])
    assembler.push(frames[2])

    late = assembler.push(frames[1])

    assert [(r.sequence, r.reason) for r in late.rejected] == [(1, "late")]


def test_a_frame_going_back_in_time_is_rejected(frames_of: FramesFactory, make_frame: FrameFactory) -> None:
    frames = frames_of(_ramp(1000), rate=1000.0, channels=TWO_CHANNELS)
    assembler = StreamAssembler()
    assembler.push(frames[0])
    overlapping = frames[1].model_copy(update={"start_time": frames[0].start_time})

    result = assembler.push(overlapping)

    assert [(r.sequence, r.reason) for r in result.rejected] == [(1, "time-overlap")]


def test_frames_of_another_stream_or_layout_are_refused(frames_of: FramesFactory) -> None:
    frames = frames_of(_ramp(1000), rate=1000.0, channels=TWO_CHANNELS)
    assembler = StreamAssembler()
    assembler.push(frames[0])

    with pytest.raises(ValueError, match="pushed to the assembler of"):
        assembler.push(frames[1].model_copy(update={"stream_id": "other"}))
    with pytest.raises(ValueError, match="sampling rate changed"):
        assembler.push(frames[1].model_copy(update={"sampling_rate_hz": 999.0}))


def test_memory_stays_bounded_over_a_long_stream(frames_of: FramesFactory) -> None:
    rate, minutes = 1000.0, 6
    channels = [{"name": f"m{i}", "unit": "uV"} for i in range(4)]
    assembler = StreamAssembler(window_s=1.0, buffer_s=3.0, recording_s=60.0)
    n = int(rate * 60 * minutes)
    data = np.random.default_rng(1).normal(size=(n, 4))
    peak_buffered = peak_bytes = windows = 0

    for frame in frames_of(data, rate=rate, channels=channels, frame_len=1000):
        windows += len(assembler.push(frame).windows)
        peak_buffered = max(peak_buffered, assembler.buffered_samples)
        peak_bytes = max(peak_bytes, assembler.nbytes)

    assert windows == 60 * minutes - 1
    assert assembler.buffer_capacity == 3000
    assert peak_buffered == 3000
    assert peak_bytes <= assembler.max_nbytes == (3000 + 60_000) * 5 * 8
    recording = assembler.recording()
    assert recording.truncated and recording.dropped_samples == n - 60_000
    assert np.array_equal(recording.values, data[:60_000])


def test_frames_larger_than_the_ring_still_give_whole_windows(frames_of: FramesFactory) -> None:
    data = _ramp(30_000)
    assembler = StreamAssembler(window_s=1.0, buffer_s=2.0, recording_s=None)

    windows = [
        w
        for f in frames_of(data, rate=1000.0, channels=TWO_CHANNELS, frame_len=10_000)
        for w in assembler.push(f).windows
    ]

    assert len(windows) == 29
    assert all(w.complete and w.values.shape[0] == 1000 for w in windows)
    assert np.array_equal(np.concatenate([w.values for w in windows]), data[:29_000])


def test_a_long_silence_is_reported_and_empty_windows_are_skipped(make_frame: FrameFactory) -> None:
    assembler = StreamAssembler(window_s=1.0, buffer_s=4.0)
    common: dict[str, Any] = {"sampling_rate_hz": 100.0}
    first = make_frame(np.ones((150, 2)), **common)
    later = make_frame(
        np.ones((150, 2)), sequence=1, start_time=first.start_time + timedelta(hours=2), **common
    )

    assert [w.index for w in assembler.push(first).windows] == [0]
    result = assembler.push(later)

    # No frame is missing (sequence 0 then 1): the device paused. The silence is reported, the window it cut
    # short is flagged, and nothing is emitted for the two empty hours.
    assert result.gaps == ()
    assert [(g.start, g.end) for g in result.time_gaps] == [(1.49, 7200.0)]
    assert [(w.index, w.complete, w.values.shape[0]) for w in result.windows] == [
        (1, False, 50),
        (7200, True, 100),
    ]


def test_assemblers_route_frames_by_stream(frames_of: FramesFactory) -> None:
    pool = StreamAssemblers(window_s=1.0, buffer_s=2.0, max_streams=2)
    left = frames_of(_ramp(1500), rate=1000.0, channels=TWO_CHANNELS)
    right = [f.model_copy(update={"stream_id": "s-2"}) for f in left]

    for a, b in zip(left, right, strict=True):
        pool.push(a)
        pool.push(b)

    assert len(pool) == 2
    closed = pool.close(left[0].key)
    assert closed is not None and closed.recording().values.shape == (1500, 2)
    assert pool.get(left[0].key) is None
    with pytest.raises(RuntimeError, match="too many open streams"):
        pool.push(right[0].model_copy(update={"stream_id": "s-3"}))
        pool.push(right[0].model_copy(update={"stream_id": "s-4"}))


def test_an_explicit_origin_aligns_windows_for_a_process_that_joins_mid_stream(
    frames_of: FramesFactory,
) -> None:
    rate = 1000.0
    frames = frames_of(_ramp(5000), rate=rate, channels=TWO_CHANNELS, frame_len=300)
    origin = frames[0].start_time
    whole = StreamAssembler(window_s=1.0, buffer_s=4.0)
    joined = StreamAssembler(window_s=1.0, buffer_s=4.0, origin=origin)

    from_start = {w.index: w for f in frames for w in whole.push(f).windows}
    # The second process sees frames from sequence 4 on (1.2 s into the stream).
    late = {w.index: w for f in frames[4:] for w in joined.push(f).windows}

    assert joined.origin == origin and joined.first_sequence == 4
    assert joined.first_time == pytest.approx(1.2)
    assert sorted(late) == [1, 2, 3]
    # Window 1 began before the first frame this process saw: flagged, not passed off as whole.
    assert not late[1].complete and late[1].values.shape[0] == 800
    for index in (2, 3):
        assert late[index].complete
        assert late[index].start == from_start[index].start
        assert np.array_equal(late[index].values, from_start[index].values)
    assert joined.recording().origin == origin
    assert joined.recording().times[0] == pytest.approx(1.2)


def test_a_frame_before_the_explicit_origin_is_refused(frames_of: FramesFactory) -> None:
    frames = frames_of(_ramp(600), rate=1000.0, channels=TWO_CHANNELS, frame_len=300)
    assembler = StreamAssembler(origin=frames[1].start_time)

    with pytest.raises(ValueError, match="before the stream origin"):
        assembler.push(frames[0])
