"""The metrics stream processor: raw frame events in, `device.metric-computed.v1` events out, at least once.

Per stream (consumer group `device-gateway-metrics`, both raw topics, partitioned by device so a stream's
events come in order to one member):

- frame events go into a `StreamAssembler` aligned on the stream's `origin` from the event, so any process
  that picks a stream up cuts the same windows. EMG streams give per-channel metrics on every 1 s window
  (RMS, envelope peak, median frequency, %MVC when the binding has the channel's MVC). Balance streams give
  no window metrics: posturography measures are defined on whole trials (30-60 s; the spectral ones need the
  0.15 Hz band), 5 s numbers would only be noise in the record, and live sway feedback is the biofeedback
  socket's job;
- a stream-closed event gives the whole-recording metrics (EMG: RMS, envelope peak with the envelope as a
  waveform, median frequency, %MVC, onset latency per channel against the protocol's synergist or cue,
  co-contraction for the declared pairs, each `measured`, `not-detected` or `not-computable`; balance: the COP
  trial metrics) and, for a balance trial with eyes closed or open, the Romberg quotient against the latest
  opposite-vision trial of the same patient and surface; then `device.stream-metrics-completed.v1` listing
  them (also when the stream had no samples). Then the stream's state is dropped.

At least once, never silently missing (docs/reliability.md, "Window metrics after a crash"): the frames
table is the recording of record (ingest stores a frame before its event exists). Every EMG window whose
metrics are staged is recorded in `metrics_window` in the same transaction (the consumer commits its offsets
only after that transaction), and metric events derive their Observation ids from (patient, device, metric,
window, channel), so sending one twice updates one Observation. A processor without state for a stream (a
restart after a crash, a partition move, an eviction, a rolled-back batch) rebuilds the first window not
recorded from the stored frames before it takes the event's frame; a sequence jump (raw events a broker
lost) is filled from the stored frames too. At close the recording is streamed back from the frames table in
chunks: every window not yet recorded as measured is computed from it (or recorded as a `gap`: its metrics
are sent `not-computable` with the reason, an Observation with a dataAbsentReason), the last window the
recording ends inside is sent flagged `partial` with its real span, and the whole-recording metrics cover
the whole recording up to `close_bytes` of samples (beyond that they say which span they cover: `partial`
with the reason).

Memory: each assembler holds a ring of three windows (plus, only where frames are not stored - tests and
embedded feeds - an in-memory recording of at most `recording_bytes`); at most `max_streams` assemblers are
kept, the least recently fed evicted first. The close holds one recording at a time, at most `close_bytes`
of samples, and computes channel by channel.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event as sa_event
from sqlmodel import Session

from relearn.device_gateway.processing import domain, repository
from relearn.device_gateway.processing.domain import BoardGeometry, Computed, StoredWindow, Trial, partial
from relearn.device_gateway.processing.events import (
    BALANCE_CLOSED,
    BALANCE_FRAME,
    EMG_CLOSED,
    EMG_FRAME,
    FrameReceived,
    StreamClosed,
    StreamEvent,
    completed_event,
    trial_event,
)
from relearn.device_gateway.processing.tables import BalanceTrialRecord
from relearn.device_gateway.signals.frames import SensorFrame, StreamType
from relearn.device_gateway.signals.windows import Recording, RecordingBuilder, StreamAssembler, Window
from relearn.device_gateway.streams.repository import frame_at, iter_frames, stored_samples
from relearn.shared.events import CloudEvent, Handler, stage_many

logger = logging.getLogger(__name__)

FrameLoader = Callable[[Session, str], Sequence[SensorFrame]]

_UNDO = "relearn.metrics-processor.undo"

EMG_WINDOW_S = 1.0
BALANCE_WINDOW_S = 5.0  # the assembler needs a window; balance windows give no metrics (module docstring)

MEASURED = "measured"
PARTIAL = "partial"
GAP = "gap"
NO_SAMPLES = "no samples in this window: the stream was silent or its frames are missing"


@dataclass
class _Stream:
    assembler: StreamAssembler
    frames: int = 0
    # Windows before this one were recorded before this state was built (or rebuilt): not sent again.
    first_window: int = 0


@dataclass
class _Undo:
    """What one transaction did to the in-memory state, to take back if it rolls back."""

    fed: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)


@dataclass
class ProcessorStats:
    window_metrics: int = 0
    recording_metrics: int = 0
    trial_summaries: int = 0
    rebuilt: int = 0
    evicted: int = 0
    # Windows computed from stored frames (state rebuilt, a jump filled, or at close), gaps and partial ones.
    windows_from_store: int = 0
    window_gaps: int = 0
    partial_windows: int = 0
    by_metric: dict[str, int] = field(default_factory=dict)


class MetricsProcessor:
    """Handlers for the raw events (see module docstring); one instance per consumer."""

    def __init__(
        self,
        *,
        max_streams: int = 32,
        recording_s: float = 300.0,
        recording_bytes: int = 32 * 1024 * 1024,
        close_bytes: int = 128 * 1024 * 1024,
        load_frames: FrameLoader | None = None,
        remember_closed: int = 4096,
    ) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.max_streams = max_streams
        self.recording_s = recording_s
        self.recording_bytes = recording_bytes
        self.close_bytes = close_bytes
        self._load_frames = load_frames
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._remember_closed = remember_closed
        self._lock = threading.RLock()
        self.stats = ProcessorStats()

    # -- wiring ----------------------------------------------------------------------------------------
    def handlers(self) -> Mapping[str, Handler]:
        return {
            EMG_FRAME: self.on_frame,
            BALANCE_FRAME: self.on_frame,
            EMG_CLOSED: self.on_closed,
            BALANCE_CLOSED: self.on_closed,
        }

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # -- stored frames ---------------------------------------------------------------------------------
    def _frames(
        self, session: Session, stream: str, from_sequence: int = 0, before: int | None = None
    ) -> Iterator[SensorFrame]:
        """The stored frames of a stream in sequence order, `from_sequence <= sequence < before`."""
        if self._load_frames is None:
            yield from iter_frames(session, stream, from_sequence=from_sequence, before_sequence=before)
            return
        for frame in self._load_frames(session, stream):
            if frame.sequence >= from_sequence and (before is None or frame.sequence < before):
                yield frame

    def _frame_at(self, session: Session, stream: str, at: datetime) -> int | None:
        if self._load_frames is None:
            return frame_at(session, stream, at)
        found = [f.sequence for f in self._load_frames(session, stream) if f.start_time <= at]
        return max(found) if found else None

    # -- frame -----------------------------------------------------------------------------------------
    def on_frame(self, session: Session, event: CloudEvent) -> None:
        data = FrameReceived.model_validate(event.data)
        emg = data.stream_type is StreamType.EMG
        windows: list[Window] = []
        with self._lock:
            if data.stream in self._closed:
                logger.info("frame for a closed stream ignored", extra={"stream": data.stream})
                return
            state = self._streams.get(data.stream)
            self._undo(session).fed.add(data.stream)
            if state is None:
                state = self._state(data)
                if emg:
                    windows.extend(self._rebuild(session, data, state))
            else:
                self._streams.move_to_end(data.stream)
                expected = state.assembler.expected_sequence
                if emg and expected is not None and data.frame.sequence > expected:
                    windows.extend(self._fill(session, data, state, expected))
            result = state.assembler.push(data.frame)
            if result.accepted:
                state.frames += 1
                windows.extend(result.windows)
        windows = [w for w in windows if w.index >= state.first_window]
        if emg and windows:
            # Recorded with their values (metrics_window), not sent: they reach the FHIR surface as the
            # series of the trial summaries at close.
            self._window_metrics(session, data, windows)

    def _state(self, data: FrameReceived) -> _Stream:
        while len(self._streams) >= self.max_streams:
            evicted, _ = self._streams.popitem(last=False)
            self.stats.evicted += 1
            logger.warning(
                "too many open streams: the least recently fed is dropped and rebuilt from the frames table",
                extra={"stream": evicted, "max_streams": self.max_streams},
            )
        window = EMG_WINDOW_S if data.stream_type is StreamType.EMG else BALANCE_WINDOW_S
        # Only where frames are not stored is a recording kept in memory (at most `recording_bytes`).
        row_bytes = 8 * (len(data.frame.channels) + 1) * data.frame.sampling_rate_hz
        recording_s = min(self.recording_s, self.recording_bytes / row_bytes)
        assembler = StreamAssembler(
            window_s=window,
            buffer_s=3 * window,
            recording_s=recording_s if recording_s > 0 else None,
            origin=data.origin,
        )
        state = self._streams[data.stream] = _Stream(assembler)
        return state

    def _rebuild(self, session: Session, data: FrameReceived, state: _Stream) -> list[Window]:
        """A stream this processor has no state for (first frame, restart, partition move, eviction,
        rollback): feed it the stored frames from the first window not yet recorded up to this frame."""
        if data.origin is None or data.frame.sequence == 0:
            return []
        done = repository.last_window(session, data.stream)
        first = 0 if done is None else done + 1
        state.first_window = first
        at = data.origin + timedelta(seconds=first * EMG_WINDOW_S)
        start = self._frame_at(session, data.stream, at) or 0
        windows: list[Window] = []
        pushed = 0
        for frame in self._frames(session, data.stream, start, data.frame.sequence):
            result = state.assembler.push(frame)
            if result.accepted:
                state.frames += 1
                pushed += 1
                windows.extend(w for w in result.windows if w.index >= first)
        if pushed:
            self.stats.rebuilt += 1
            self.stats.windows_from_store += len(windows)
            logger.info(
                "stream state rebuilt from the frames table",
                extra={"stream": data.stream, "from_window": first, "frames": pushed},
            )
        return windows

    def _fill(self, session: Session, data: FrameReceived, state: _Stream, expected: int) -> list[Window]:
        """Frames expected .. this one - 1 never came as events (a broker that lost them, or a device gap):
        push those that are stored, so their windows are whole."""
        windows: list[Window] = []
        pushed = 0
        for frame in self._frames(session, data.stream, expected, data.frame.sequence):
            result = state.assembler.push(frame)
            if result.accepted:
                state.frames += 1
                pushed += 1
                windows.extend(result.windows)
        if pushed:
            self.stats.windows_from_store += len(windows)
            logger.info(
                "frames whose events never came were read from the frames table",
                extra={"stream": data.stream, "frames": pushed},
            )
        return windows

    # -- windows ---------------------------------------------------------------------------------------
    def _window_metrics(
        self, session: Session, data: StreamEvent, windows: Sequence[Window], *, last: Window | None = None
    ) -> list[Computed]:
        """The metrics of each window (or, where it cannot be computed, its gap), each window recorded."""
        out: list[Computed] = []
        for window in [*windows, *([last] if last is not None else [])]:
            if window is last:
                got = domain.emg_last_window(window, EMG_WINDOW_S, data.mvc)
            elif window.complete:
                try:
                    got = domain.emg_window(window, data.mvc)
                except ValueError as exc:
                    got = domain.emg_window_gap(window, data.mvc, f"window metrics failed: {exc}")
                if not got:
                    why = "the window's samples are too uneven or too few for window metrics"
                    got = domain.emg_window_gap(window, data.mvc, why)
            else:
                got = domain.emg_window_gap(window, data.mvc, window.reason or "the window is incomplete")
            if not got:
                continue
            if got[0].status != domain.MEASURED and self._recorded(session, data.stream, window.index):
                continue  # never a gap over a window already measured (a replay, another pass)
            self._record(session, data, window.index, got)
            out.extend(got)
        return out

    @staticmethod
    def _recorded(session: Session, stream: str, index: int) -> bool:
        return repository.window_status(session, stream, index) in (MEASURED, PARTIAL)

    def _record(self, session: Session, data: StreamEvent, index: int, computed: Sequence[Computed]) -> None:
        stream = data.stream
        first = computed[0]
        if first.status != domain.MEASURED:
            status = GAP
            self.stats.window_gaps += 1
            logger.warning(
                "window not computable: its metrics are sent as not computable",
                extra={"stream": stream, "window": index, "reason": first.reason},
            )
        elif first.partial:
            status = PARTIAL
            self.stats.partial_windows += 1
        else:
            status = MEASURED
        repository.record_window(
            session,
            stream,
            index,
            status,
            first.start,
            first.end,
            first.reason,
            domain.window_values(computed, data.protocol.muscles),
        )
        self.stats.window_metrics += len(computed)

    def _undo(self, session: Session) -> _Undo:
        """This transaction's undo record; if the transaction rolls back, its frames (and any window they
        completed) and closes were not applied after all: the streams it fed are forgotten, so the retried
        events rebuild them from the frames table (their windows stay aligned on the origin); the streams it
        closed are open again. One record (and one listener) per transaction, however many events a
        consumer's batch puts in it."""
        key = (_UNDO, id(self))
        current: _Undo | None = session.info.get(key)
        if current is not None:
            return current
        undo = session.info[key] = _Undo()

        def rolled_back(_session: Session, _previous: Any) -> None:
            if session.info.get(key) is not undo:
                return  # that transaction committed; the session has moved on
            del session.info[key]
            with self._lock:
                for stream in undo.fed:
                    self._streams.pop(stream, None)
                for stream in undo.closed:
                    self._closed.pop(stream, None)

        def committed(_session: Session) -> None:
            if session.info.get(key) is undo:
                del session.info[key]

        session.connection()  # begin the transaction now (the consumer's has begun), so its rollback is seen
        sa_event.listen(session, "after_soft_rollback", rolled_back, once=True)
        sa_event.listen(session, "after_commit", committed, once=True)
        return undo

    # -- close -----------------------------------------------------------------------------------------
    def on_closed(self, session: Session, event: CloudEvent) -> None:
        data = StreamClosed.model_validate(event.data)
        with self._lock:
            state = self._streams.pop(data.stream, None)
            if data.stream not in self._closed:
                self._undo(session).closed.add(data.stream)
            self._closed[data.stream] = None
            while len(self._closed) > self._remember_closed:
                self._closed.popitem(last=False)
        recording, _ = self._from_store(session, data)
        if recording is None and state is not None and state.frames:
            recording, _ = self._from_memory(session, data, state)
        if recording is None:
            logger.warning("stream closed without samples: no metrics", extra={"stream": data.stream})
            stage_many(session, [completed_event(data, [])])
            return
        computed: list[Computed] = []
        if data.stream_type is StreamType.EMG:
            computed = domain.emg_recording(recording, data.mvc, data.protocol.emg())
        else:
            board = None
            lx, ly = data.protocol.board_lx_cm, data.protocol.board_ly_cm
            if lx is not None and ly is not None and lx > 0 and ly > 0:
                board = BoardGeometry(lx, ly)
            computed, trial = domain.balance_recording(recording, data.stream_type.value, board)
            if trial is not None and data.protocol.vision is not None and not recording.truncated:
                quotient = self._romberg(session, data, trial)
                if quotient is not None:
                    computed.append(quotient)
        if recording.truncated:
            computed = [_covering(c, recording, self.close_bytes) for c in computed]
        self._summarise(session, data, recording, computed)
        # After the metrics, same transaction and key: whoever reads it has every metric of the close.
        stage_many(session, [completed_event(data, computed)])
        self.stats.recording_metrics += len(computed)

    def _from_store(self, session: Session, data: StreamClosed) -> tuple[Recording | None, list[Computed]]:
        """The recording streamed back from the frames table (chunked reads into one preallocated block,
        at most `close_bytes`), and, for EMG, the metrics of every window not yet recorded as measured or
        partial: windows cut from the same pass, the last (partial) one, and gaps for windows without
        samples. (None, []) when the stream has no stored frames."""
        emg = data.stream_type is StreamType.EMG
        done: dict[int, str] = {}
        if emg:
            done = repository.window_statuses(session, data.stream)
        builder: RecordingBuilder | None = None
        assembler: StreamAssembler | None = None
        todo: list[Window] = []
        seen: set[int] = set()
        windows: list[Computed] = []
        capacity = stored_samples(session, data.stream) if self._load_frames is None else None
        for frame in self._frames(session, data.stream):
            if builder is None:
                origin = data.origin or frame.start_time
                row = 8 * (len(frame.channels) + 1)
                builder = RecordingBuilder(origin, max_rows=self.close_bytes // row, capacity=capacity)
                if emg:
                    assembler = StreamAssembler(
                        window_s=EMG_WINDOW_S, buffer_s=3 * EMG_WINDOW_S, recording_s=None, origin=origin
                    )
            builder.add(frame)
            if assembler is not None:
                for window in assembler.push(frame).windows:
                    seen.add(window.index)
                    if done.get(window.index) not in (MEASURED, PARTIAL):
                        todo.append(window)
                if len(todo) >= 16:
                    windows.extend(self._window_metrics(session, data, todo))
                    todo = []
        if builder is None:
            return None, []
        self.stats.rebuilt += 1
        recording = builder.recording()
        if assembler is not None and recording is not None:
            last = assembler.flush()
            if last is not None:
                seen.add(last.index)
            if last is not None and done.get(last.index) in (MEASURED, PARTIAL):
                last = None
            windows.extend(self._window_metrics(session, data, todo, last=last))
            windows.extend(self._silent_windows(session, data, recording, seen, done))
            self.stats.windows_from_store += len({c.start for c in windows})
        return recording, windows

    def _silent_windows(
        self,
        session: Session,
        data: StreamClosed,
        recording: Recording,
        seen: set[int],
        done: Mapping[int, str],
    ) -> list[Computed]:
        """Windows inside the recording with no sample at all (a long silence, frames never stored): gaps."""
        if not seen:
            return []
        out: list[Computed] = []
        for index in range(min(seen), max(seen)):
            if index in seen or index in done:
                continue
            start = recording.origin + timedelta(seconds=index * EMG_WINDOW_S)
            end = start + timedelta(seconds=EMG_WINDOW_S)
            got = domain.window_gap(start, end, recording.channels, recording.units, data.mvc, NO_SAMPLES)
            self._record(session, data, index, got)
            out.extend(got)
        return out

    def _from_memory(
        self, session: Session, data: StreamClosed, state: _Stream
    ) -> tuple[Recording | None, list[Computed]]:
        """Where frames are not stored (tests, embedded feeds): the recording the assembler kept, and the last
        window cut from it."""
        windows: list[Computed] = []
        if data.stream_type is StreamType.EMG:
            last = state.assembler.flush()
            if last is not None:
                windows = self._window_metrics(session, data, [], last=last)
        try:
            recording = state.assembler.recording()
        except ValueError:
            return None, windows
        if recording.truncated:
            logger.warning(
                "stream recording not stored and longer than the memory bound: metrics from its beginning",
                extra={"stream": data.stream},
            )
        return recording, windows

    def _romberg(self, session: Session, data: StreamClosed, trial: Trial) -> Computed | None:
        vision = data.protocol.vision
        assert vision is not None
        surface = data.protocol.surface
        record = repository.balance_trial(session, data.stream)
        if record is None:
            record = BalanceTrialRecord(
                stream_id=data.stream,
                patient_id=data.patient,
                device_id=data.device,
                session_id=data.session,
                vision=vision,
                surface=surface,
                window_start=trial.start,
                window_end=trial.end,
                metrics=dict(trial.values),
            )
            repository.add_balance_trial(session, record)
        other = self._partner(session, data, "open" if vision == "closed" else "closed")
        if other is None:
            return None
        other_trial = Trial(_aware(other.window_start), _aware(other.window_end), dict(other.metrics))
        closed, opened = (trial, other_trial) if vision == "closed" else (other_trial, trial)
        return domain.romberg(closed, opened)

    @staticmethod
    def _partner(session: Session, data: StreamClosed, vision: str) -> BalanceTrialRecord | None:
        """The opposite-vision trial of the same patient and surface: same session first, else the latest."""
        rows = repository.balance_trials(
            session, data.patient, vision, data.protocol.surface, other_than=data.stream
        )
        if not rows:
            return None
        if data.session is not None:
            same = [r for r in rows if r.session_id == data.session]
            if same:
                return same[0]
        return rows[0]

    # -- out -------------------------------------------------------------------------------------------
    def _summarise(
        self, session: Session, data: StreamClosed, recording: Recording, computed: Sequence[Computed]
    ) -> None:
        """One `device.trial-summarized.v1` per metric of the trial, each channel's window series read
        back from the stream's window rows (this transaction's included)."""
        stored: list[StoredWindow] = []
        if data.stream_type is StreamType.EMG:
            stored = [
                StoredWindow.of(
                    row.window_index,
                    _aware(row.window_start),
                    _aware(row.window_end),
                    row.status,
                    row.reason,
                    row.metrics,
                )
                for row in repository.windows(session, data.stream)
            ]
        start = data.origin or recording.origin
        end = max([c.end for c in computed], default=start)
        summaries = domain.trial_summaries(computed, stored, start=start, end=end)
        # One multi-row INSERT for the trial's summaries.
        stage_many(session, [trial_event(data, t) for t in summaries])
        self.stats.trial_summaries += len(summaries)
        for c in computed:
            self.stats.by_metric[c.metric.value] = self.stats.by_metric.get(c.metric.value, 0) + 1


def _aware(t: datetime) -> datetime:
    # SQLite hands timestamps back naive; they were stored in UTC.
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _covering(c: Computed, recording: Recording, close_bytes: int) -> Computed:
    """A whole-recording metric over the part of a recording the close could hold: flagged `partial`, its
    span is what it covers, and the reason says why."""
    held = float(recording.times[-1] - recording.times[0]) if recording.times.size else 0.0
    more = recording.dropped_samples / recording.sampling_rate_hz
    why = (
        f"covers the first {held:.1f} s of a {held + more:.1f} s recording: the close holds at most "
        f"{close_bytes / 2**20:.0f} MiB of samples (DEVICE_GATEWAY_METRICS_RECORDING_MIB)"
    )
    return partial(c, why if c.reason is None else f"{c.reason}; {why}")
