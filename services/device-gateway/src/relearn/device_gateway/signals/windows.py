"""Per-stream assembly of frames into fixed windows, with gap/duplicate detection and bounded memory.

`StreamAssembler` takes the frames of ONE stream (device, stream type, stream id) in sequence order:
- sequence numbers: a jump is a `Gap` (expected, got), and the frame is still accepted; a number already
  passed is rejected, as `duplicate` (same sequence seen before) or `late` (a number reported missing that
  arrives after we moved on: its windows are already out);
- samples go into a ring buffer of `buffer_s` seconds at the nominal rate (the most recent history, for live
  views and for window extraction); its size never changes after construction;
- fixed windows [k W, (k+1) W) in seconds from the stream's origin are emitted as soon as a later sample
  arrives; a window touched by a sequence gap or by buffer overflow is marked `complete=False` (flagged, not
  hidden). Windows with no sample at all (inside a long gap) are skipped. The origin is the first frame's
  start, or an explicit `origin` (the stream's first frame as recorded elsewhere): then any process that
  picks a stream up mid-way cuts the same windows, and the window its first frame starts inside is flagged
  incomplete because part of it came before;
- the whole recording is kept for whole-recording metrics (a 60 s balance trial, an EMG session) up to
  `recording_s` seconds at the nominal rate (default 300 s: at 2148 Hz x 8 channels x 8 bytes that is 41 MB);
  samples beyond it are counted, not stored, and the recording says `truncated`. The beginning is kept because
  whole-recording protocols are defined from their start.

Memory per stream is therefore bounded by (buffer_s + recording_s) x rate x (channels + 1) x 8 bytes plus
small bounded bookkeeping (the last `MAX_TRACKED_GAPS` gaps).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from relearn.device_gateway.signals.frames import SensorFrame, StreamKey
from relearn.device_gateway.signals.resample import TIME_TOLERANCE_S, TimeGap

FloatArray = NDArray[np.float64]

MAX_TRACKED_GAPS = 64


@dataclass(frozen=True, slots=True)
class Gap:
    """Frames `expected` .. `got - 1` never arrived before frame `got`."""

    stream: StreamKey
    expected: int
    got: int

    @property
    def missing(self) -> int:
        return self.got - self.expected


@dataclass(frozen=True, slots=True)
class Rejected:
    stream: StreamKey
    sequence: int
    reason: Literal["duplicate", "late", "time-overlap"]


@dataclass(frozen=True, slots=True)
class Window:
    """Samples of one stream with start <= t < end. `times` are seconds from `start`."""

    stream: StreamKey
    index: int
    start: datetime
    end: datetime
    times: FloatArray
    values: FloatArray  # [n, channels]
    channels: tuple[str, ...]
    units: tuple[str, ...]
    sampling_rate_hz: float
    complete: bool
    # Why an incomplete window is incomplete (None when complete).
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PushResult:
    accepted: bool
    windows: tuple[Window, ...] = ()
    gaps: tuple[Gap, ...] = ()
    time_gaps: tuple[TimeGap, ...] = ()  # silences longer than max_interval_s, seconds from the stream origin
    rejected: tuple[Rejected, ...] = ()


@dataclass(frozen=True, slots=True)
class Recording:
    """Everything accepted so far (up to the recording bound). `times` are seconds from `origin`."""

    origin: datetime
    times: FloatArray
    values: FloatArray
    channels: tuple[str, ...]
    units: tuple[str, ...]
    sampling_rate_hz: float
    gaps: tuple[Gap, ...]
    truncated: bool
    dropped_samples: int


class RingBuffer:
    """Fixed-capacity buffer of (time, values) rows; the oldest rows are overwritten."""

    def __init__(self, capacity: int, n_channels: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._times = np.empty(capacity, dtype=np.float64)
        self._values = np.empty((capacity, n_channels), dtype=np.float64)
        self._start = 0  # index of the oldest row
        self.size = 0
        self.overwritten = 0
        self.newest_overwritten_time = -math.inf

    @property
    def nbytes(self) -> int:
        return self._times.nbytes + self._values.nbytes

    def append(self, times: FloatArray, values: FloatArray) -> None:
        k = times.shape[0]
        if k > self.capacity:  # only the newest rows can survive
            self._account_overwrite(k - self.capacity, times[k - self.capacity - 1])
            times, values = times[-self.capacity :], values[-self.capacity :]
            k = self.capacity
        overflow = self.size + k - self.capacity
        if overflow > 0:
            self.newest_overwritten_time = max(
                self.newest_overwritten_time, float(self._times[(self._start + overflow - 1) % self.capacity])
            )
            self.overwritten += overflow
            self._start = (self._start + overflow) % self.capacity
            self.size -= overflow
        positions = (self._start + self.size + np.arange(k)) % self.capacity
        self._times[positions] = times
        self._values[positions] = values
        self.size += k

    def _account_overwrite(self, n: int, newest: float) -> None:
        self.overwritten += n
        self.newest_overwritten_time = max(self.newest_overwritten_time, float(newest))

    def ordered_times(self) -> FloatArray:
        return self._times[(self._start + np.arange(self.size)) % self.capacity]

    def take(self, lo: int, hi: int) -> tuple[FloatArray, FloatArray]:
        """Copies of rows lo..hi-1 in chronological order."""
        positions = (self._start + np.arange(lo, hi)) % self.capacity
        return self._times[positions], self._values[positions]


class _GrowingBuffer:
    """Append-only rows up to `max_rows`, growing geometrically; rows past the bound are counted, not kept."""

    def __init__(self, max_rows: int, n_channels: int, initial_rows: int) -> None:
        self.max_rows = max_rows
        self._times = np.empty(min(max_rows, initial_rows), dtype=np.float64)
        self._values = np.empty((self._times.size, n_channels), dtype=np.float64)
        self.size = 0
        self.dropped = 0

    @property
    def nbytes(self) -> int:
        return self._times.nbytes + self._values.nbytes

    def append(self, times: FloatArray, values: FloatArray) -> None:
        room = self.max_rows - self.size
        k = min(room, times.shape[0])
        self.dropped += times.shape[0] - k
        if k == 0:
            return
        if self.size + k > self._times.size:
            new_size = min(self.max_rows, max(self.size + k, 2 * self._times.size))
            self._times = np.resize(self._times, new_size)
            self._values = np.resize(self._values, (new_size, self._values.shape[1]))
        self._times[self.size : self.size + k] = times[:k]
        self._values[self.size : self.size + k] = values[:k]
        self.size += k

    def arrays(self) -> tuple[FloatArray, FloatArray]:
        return self._times[: self.size].copy(), self._values[: self.size].copy()


class RecordingBuilder:
    """A whole recording read back frame by frame (the close's recording), in preallocated arrays.

    `capacity` (rows) is how many samples are expected (the stream's counter), `max_rows` the bound: samples
    beyond it are counted, not kept, and the recording says `truncated`. Nothing is copied at the end, so the
    peak is the recording itself: rows x (channels + 1) x 8 bytes."""

    def __init__(self, origin: datetime, max_rows: int, capacity: int | None = None) -> None:
        if origin.tzinfo is None:
            raise ValueError("origin must be timezone-aware")
        self.origin = origin
        self.max_rows = max(1, max_rows)
        self._capacity = min(self.max_rows, capacity) if capacity else None
        self._times: FloatArray | None = None
        self._values: FloatArray | None = None
        self._layout: tuple[tuple[str, ...], tuple[str, ...], float] | None = None
        self._key: StreamKey | None = None
        self._expected: int | None = None
        self._last_time = -math.inf
        self._gaps: deque[Gap] = deque(maxlen=MAX_TRACKED_GAPS)
        self.size = 0
        self.dropped = 0
        self.frames = 0

    @property
    def row_bytes(self) -> int:
        return 8 * (len(self._layout[0]) + 1) if self._layout else 0

    def add(self, frame: SensorFrame) -> None:
        layout = (frame.channel_names, frame.units, frame.sampling_rate_hz)
        if self._layout is None:
            self._layout, self._key = layout, frame.key
            rows = self._capacity or min(self.max_rows, math.ceil(10 * frame.sampling_rate_hz))
            self._times = np.empty(rows, dtype=np.float64)
            self._values = np.empty((rows, len(frame.channels)), dtype=np.float64)
            self._expected = frame.sequence
        elif layout != self._layout:
            raise ValueError("channel layout, units or sampling rate changed within a stream")
        assert self._times is not None and self._values is not None and self._expected is not None
        if frame.sequence < self._expected:
            return
        values, rel = frame.to_arrays()
        times = rel + (frame.start_time - self.origin).total_seconds()
        if times.shape[0] == 0 or times[0] <= self._last_time:
            return
        if frame.sequence > self._expected:
            assert self._key is not None
            self._gaps.append(Gap(self._key, self._expected, frame.sequence))
        self._expected = frame.sequence + 1
        self.frames += 1
        self._last_time = float(times[-1])
        k = min(self.max_rows - self.size, times.shape[0])
        self.dropped += times.shape[0] - k
        if k <= 0:
            return
        if self.size + k > self._times.shape[0]:
            grown = min(self.max_rows, max(self.size + k, 2 * self._times.shape[0]))
            self._times = np.resize(self._times, grown)
            self._values = np.resize(self._values, (grown, self._values.shape[1]))
        self._times[self.size : self.size + k] = times[:k]
        self._values[self.size : self.size + k] = values[:k]
        self.size += k

    def recording(self) -> Recording | None:
        """The recording (views of the arrays, no copy); None when no frame was added."""
        if self._layout is None or self._times is None or self._values is None:
            return None
        names, units, rate = self._layout
        return Recording(
            origin=self.origin,
            times=self._times[: self.size],
            values=self._values[: self.size],
            channels=names,
            units=units,
            sampling_rate_hz=rate,
            gaps=tuple(self._gaps),
            truncated=self.dropped > 0,
            dropped_samples=self.dropped,
        )


class StreamAssembler:
    """Assembles the frames of one stream; see the module docstring."""

    def __init__(
        self,
        window_s: float = 1.0,
        buffer_s: float = 10.0,
        recording_s: float | None = 300.0,
        max_interval_s: float | None = None,
        origin: datetime | None = None,
    ) -> None:
        if not window_s > 0:
            raise ValueError("window_s must be positive")
        if buffer_s < 2 * window_s:
            raise ValueError("buffer_s must hold at least two windows")
        if recording_s is not None and recording_s <= 0:
            raise ValueError("recording_s must be positive (or None for no recording)")
        if origin is not None and origin.tzinfo is None:
            raise ValueError("origin must be timezone-aware")
        self.window_s = window_s
        self.buffer_s = buffer_s
        self.recording_s = recording_s
        self.max_interval_s = max_interval_s
        self._explicit_origin = origin
        self._first_time = 0.0  # seconds from the origin of the first sample received
        self._first_sequence: int | None = None
        self._key: StreamKey | None = None
        self._layout: tuple[tuple[str, ...], tuple[str, ...], float] | None = None
        self._origin: datetime | None = None
        self._expected: int | None = None
        self._last_time = -math.inf
        self._next_window = 0
        self._ring: RingBuffer | None = None
        self._recording: _GrowingBuffer | None = None
        self._gaps: deque[Gap] = deque(maxlen=MAX_TRACKED_GAPS)
        self._gap_spans: deque[tuple[float, float]] = deque(maxlen=MAX_TRACKED_GAPS)
        self._missing: deque[tuple[int, int]] = deque(maxlen=MAX_TRACKED_GAPS)
        self._total_gaps = 0

    # -- introspection ---------------------------------------------------------------------------------------
    @property
    def key(self) -> StreamKey | None:
        return self._key

    @property
    def origin(self) -> datetime | None:
        """Time zero of the windows: the explicit origin, else the first frame's start (None before it)."""
        return self._origin or self._explicit_origin

    @property
    def first_sequence(self) -> int | None:
        """Sequence number of the first frame received (None before it)."""
        return self._first_sequence

    @property
    def first_time(self) -> float:
        """Seconds from the origin to the first sample received (0 unless picked up after the origin)."""
        return self._first_time

    @property
    def expected_sequence(self) -> int | None:
        """The next sequence number expected (None before the first frame)."""
        return self._expected

    @property
    def total_gaps(self) -> int:
        """All sequence gaps seen (`recording().gaps` keeps only the last `MAX_TRACKED_GAPS`)."""
        return self._total_gaps

    @property
    def buffer_capacity(self) -> int:
        return self._ring.capacity if self._ring else 0

    @property
    def buffered_samples(self) -> int:
        return self._ring.size if self._ring else 0

    @property
    def nbytes(self) -> int:
        """Bytes held in sample storage (ring buffer + recording)."""
        return (self._ring.nbytes if self._ring else 0) + (self._recording.nbytes if self._recording else 0)

    @property
    def max_nbytes(self) -> int:
        """Upper bound of `nbytes` for this stream, known once the first frame fixed rate and channels."""
        if self._ring is None or self._layout is None:
            return 0
        row = 8 * (len(self._layout[0]) + 1)
        rec = self._recording.max_rows if self._recording else 0
        return self._ring.nbytes + rec * row

    # -- input -----------------------------------------------------------------------------------------------
    def push(self, frame: SensorFrame) -> PushResult:
        if self._key is None:
            self._start_stream(frame)
        self._check_same_stream(frame)
        assert self._origin is not None and self._ring is not None
        gaps: list[Gap] = []
        seq = frame.sequence
        assert self._expected is not None
        if seq < self._expected:
            late = any(lo <= seq < hi for lo, hi in self._missing)
            return PushResult(False, rejected=(Rejected(frame.key, seq, "late" if late else "duplicate"),))
        values, rel = frame.to_arrays()
        offset = (frame.start_time - self._origin).total_seconds()
        times = rel + offset
        if times[0] <= self._last_time:
            return PushResult(False, rejected=(Rejected(frame.key, seq, "time-overlap"),))
        if seq > self._expected:
            gap = Gap(frame.key, self._expected, seq)
            gaps.append(gap)
            self._gaps.append(gap)
            self._total_gaps += 1
            self._missing.append((self._expected, seq))
            self._gap_spans.append((self._last_time, float(times[0])))
        self._expected = seq + 1
        time_gaps = self._find_silences(times)
        if self._recording is not None:
            self._recording.append(times, values)
        windows: list[Window] = []
        # Append in chunks of half the ring so no pending window is overwritten by one big frame.
        chunk = max(1, self._ring.capacity // 2)
        for lo in range(0, times.shape[0], chunk):
            self._ring.append(times[lo : lo + chunk], values[lo : lo + chunk])
            self._last_time = float(times[min(lo + chunk, times.shape[0]) - 1])
            windows.extend(self._emit_ready())
        return PushResult(True, windows=tuple(windows), gaps=tuple(gaps), time_gaps=tuple(time_gaps))

    def flush(self) -> Window | None:
        """The last, partial window (end of the recording); `complete=False`. None if nothing is pending."""
        if self._ring is None:
            return None
        window = self._cut(self._next_window, final=True)
        if window is not None:
            self._next_window = window.index + 1
        return window

    def recording(self) -> Recording:
        if self._recording is None or self._origin is None or self._layout is None:
            raise ValueError("no recording: nothing received yet, or recording disabled")
        times, values = self._recording.arrays()
        names, units, rate = self._layout
        return Recording(
            origin=self._origin,
            times=times,
            values=values,
            channels=names,
            units=units,
            sampling_rate_hz=rate,
            gaps=tuple(self._gaps),
            truncated=self._recording.dropped > 0,
            dropped_samples=self._recording.dropped,
        )

    # -- internals -------------------------------------------------------------------------------------------
    def _start_stream(self, frame: SensorFrame) -> None:
        origin = self._explicit_origin or frame.start_time
        first = (frame.start_time - origin).total_seconds()
        if first < -TIME_TOLERANCE_S:
            raise ValueError(f"frame starts {-first:.6f} s before the stream origin {origin.isoformat()}")
        self._key = frame.key
        self._layout = (frame.channel_names, frame.units, frame.sampling_rate_hz)
        self._origin = origin
        self._first_time = max(first, 0.0)
        self._first_sequence = frame.sequence
        self._next_window = int(self._first_time // self.window_s)
        self._expected = frame.sequence
        rate = frame.sampling_rate_hz
        n_channels = len(frame.channels)
        self._ring = RingBuffer(math.ceil(self.buffer_s * rate), n_channels)
        if self.recording_s is not None:
            max_rows = math.ceil(self.recording_s * rate)
            self._recording = _GrowingBuffer(max_rows, n_channels, initial_rows=math.ceil(10 * rate))

    def _find_silences(self, times: FloatArray) -> list[TimeGap]:
        assert self._layout is not None
        limit = self.max_interval_s if self.max_interval_s is not None else 5.0 / self._layout[2]
        previous = np.concatenate(([self._last_time], times[:-1]))
        silent = np.flatnonzero((times - previous > limit + TIME_TOLERANCE_S) & np.isfinite(previous))
        found = [TimeGap(float(previous[i]), float(times[i])) for i in silent]
        self._gap_spans.extend((g.start, g.end) for g in found)
        return found

    def _check_same_stream(self, frame: SensorFrame) -> None:
        if frame.key != self._key:
            raise ValueError(f"frame of stream {tuple(frame.key)} pushed to the assembler of {self._key}")
        if (frame.channel_names, frame.units, frame.sampling_rate_hz) != self._layout:
            raise ValueError(
                "channel layout, units or sampling rate changed within a stream; start a new stream"
            )

    def _emit_ready(self) -> list[Window]:
        out: list[Window] = []
        while self._last_time >= (self._next_window + 1) * self.window_s:
            window = self._cut(self._next_window, final=False)
            if window is not None:
                out.append(window)
                self._next_window += 1
        return out

    def _cut(self, index: int, *, final: bool) -> Window | None:
        """Cut window `index`; if it is empty, move `_next_window` to the first window with data."""
        assert self._key is not None and self._ring is not None
        assert self._origin is not None and self._layout is not None
        start_s, end_s = index * self.window_s, (index + 1) * self.window_s
        times = self._ring.ordered_times()
        lo = int(np.searchsorted(times, start_s, side="left"))
        hi = int(np.searchsorted(times, end_s, side="left"))
        if final:
            hi = times.size
        if hi <= lo:
            if lo < times.size and not final:
                self._next_window = int(times[lo] // self.window_s)
            elif not final:
                self._next_window = index + 1
            return None
        t, v = self._ring.take(lo, hi)
        touched_by_gap = any(a < end_s and b > start_s for a, b in self._gap_spans)
        evicted = self._ring.newest_overwritten_time >= start_s
        started_inside = start_s < self._first_time - TIME_TOLERANCE_S
        names, units, rate = self._layout
        reason = None
        if touched_by_gap:
            reason = "frames of this window are missing (a sequence gap or a silence in the stream)"
        elif evicted:
            reason = "samples of this window were overwritten before it was cut"
        elif started_inside:
            reason = "the stream was picked up inside this window and its earlier frames were not available"
        elif final:
            reason = "the recording ends inside this window"
        return Window(
            stream=self._key,
            index=index,
            start=self._origin + timedelta(seconds=start_s),
            end=self._origin + timedelta(seconds=end_s),
            times=t - start_s,
            values=v,
            channels=names,
            units=units,
            sampling_rate_hz=rate,
            complete=not (touched_by_gap or evicted or started_inside or final),
            reason=reason,
        )


class StreamAssemblers:
    """One `StreamAssembler` per stream key, created on first frame; at most `max_streams` open at once."""

    def __init__(
        self,
        window_s: float = 1.0,
        buffer_s: float = 10.0,
        recording_s: float | None = 300.0,
        max_streams: int = 256,
    ) -> None:
        self._settings = (window_s, buffer_s, recording_s)
        self._max_streams = max_streams
        self._streams: dict[StreamKey, StreamAssembler] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def push(self, frame: SensorFrame) -> PushResult:
        assembler = self._streams.get(frame.key)
        if assembler is None:
            if len(self._streams) >= self._max_streams:
                raise RuntimeError(
                    f"too many open streams ({self._max_streams}); close finished ones with close()"
                )
            assembler = self._streams[frame.key] = StreamAssembler(*self._settings)
        return assembler.push(frame)

    def get(self, key: StreamKey) -> StreamAssembler | None:
        return self._streams.get(key)

    def close(self, key: StreamKey) -> StreamAssembler | None:
        """Forget a finished stream and hand back its assembler (for flush() and recording())."""
        return self._streams.pop(key, None)
