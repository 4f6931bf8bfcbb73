"""The metrics stream processor: raw frame events in, `device.metric-computed.v1` events out.

Per stream (consumer group `device-gateway-metrics`, both raw topics, partitioned by device so a stream's
events come in order to one member):

- frame events go into a `StreamAssembler` aligned on the stream's `origin` from the event, so any process
  that picks a stream up cuts the same windows. EMG streams give per-channel metrics on every complete 1 s
  window (RMS, envelope peak, median frequency, %MVC when the binding has the channel's MVC). Balance
  streams give no window metrics: posturography measures are defined on whole trials (30-60 s; the spectral
  ones need the 0.15 Hz band), 5 s numbers would only be noise in the record, and live sway feedback is the
  gateway's biofeedback socket's job;
- a stream-closed event gives the whole-recording metrics (EMG: RMS, envelope peak with the envelope as a
  waveform, median frequency, %MVC, onset latency per channel against the protocol's synergist or cue, co-
  contraction for the declared pairs, each `measured`, `not-detected` or `not-computable`; balance: the COP
  trial metrics) and, for a balance trial with eyes closed or open, the Romberg quotient against the latest
  opposite-vision trial of the same patient and surface; then `device.stream-metrics-completed.v1` listing
  them (also when the stream had no samples). Then the stream's state is dropped.

Memory is bounded: each assembler holds a ring of three windows plus a recording of at most `recording_s`
and `recording_bytes` (32 MiB: 217 s of 8 channels at 2148 Hz), and at most `max_streams` (32) assemblers are
kept, the least recently fed evicted first: about 1 GiB at worst. A stream whose assembler was evicted,
started mid-way (after a restart or rebalance), outgrew the bound, or has gaps is rebuilt at close from the
gateway's frames table, the recording of record (up to `recording_s`, 300 s, for whole-recording metrics).

Every metric event is staged in the handler's transaction (the same one that records the raw event as
processed), so a replayed raw event gives no second metric event. If that transaction rolls back, the
in-memory state of every stream it fed is dropped and the streams it closed count as open again, so nothing
half-applied is trusted later and the events, handled again (the consumer replays a rolled-back batch one
event at a time), start those streams afresh (a window already under way when the batch began is then not
reported; the close rebuilds the recording from the frames table).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlmodel import Session, col, select

from relearn.device_gateway.processing import compute
from relearn.device_gateway.processing.compute import BoardGeometry, Computed, Trial
from relearn.device_gateway.processing.events import (
    BALANCE_CLOSED,
    BALANCE_FRAME,
    EMG_CLOSED,
    EMG_FRAME,
    FrameReceived,
    StreamClosed,
    StreamEvent,
    completed_event,
    metric_event,
)
from relearn.device_gateway.processing.tables import BalanceTrialRecord
from relearn.device_gateway.signals.frames import SensorFrame, StreamType
from relearn.device_gateway.signals.windows import Recording, StreamAssembler
from relearn.device_gateway.stream_store import load_recording_frames
from relearn.shared.events import CloudEvent, Handler, stage_many

logger = logging.getLogger(__name__)

FrameLoader = Callable[[Session, str], Sequence[SensorFrame]]

_UNDO = "relearn.metrics-processor.undo"

EMG_WINDOW_S = 1.0
BALANCE_WINDOW_S = 5.0  # the assembler needs a window; balance windows give no metrics (module docstring)


@dataclass
class _Stream:
    assembler: StreamAssembler
    frames: int = 0


@dataclass
class _Undo:
    """What one transaction did to the in-memory state, to take back if it rolls back."""

    fed: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)


@dataclass
class ProcessorStats:
    window_metrics: int = 0
    recording_metrics: int = 0
    rebuilt: int = 0
    evicted: int = 0
    by_metric: dict[str, int] = field(default_factory=dict)


class MetricsProcessor:
    """Handlers for the raw events (see module docstring); one instance per consumer."""

    def __init__(
        self,
        *,
        max_streams: int = 32,
        recording_s: float = 300.0,
        recording_bytes: int = 32 * 1024 * 1024,
        load_frames: FrameLoader = load_recording_frames,
        remember_closed: int = 4096,
    ) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.max_streams = max_streams
        self.recording_s = recording_s
        self.recording_bytes = recording_bytes
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

    # -- frame -----------------------------------------------------------------------------------------
    def on_frame(self, session: Session, event: CloudEvent) -> None:
        data = FrameReceived.model_validate(event.data)
        with self._lock:
            if data.stream in self._closed:
                logger.info("frame for a closed stream ignored", extra={"stream": data.stream})
                return
            state = self._state(data)
            self._undo(session).fed.add(data.stream)
            result = state.assembler.push(data.frame)
            if not result.accepted:
                return
            state.frames += 1
            windows = result.windows
        if data.stream_type is not StreamType.EMG:
            return
        computed: list[Computed] = []
        for window in windows:
            try:
                computed.extend(compute.emg_window(window, data.mvc))
            except ValueError as exc:
                logger.warning(
                    "window metrics failed",
                    extra={"stream": data.stream, "window": window.index, "error": str(exc)},
                )
        self._emit(session, data, computed)
        self.stats.window_metrics += len(computed)

    def _state(self, data: FrameReceived) -> _Stream:
        state = self._streams.get(data.stream)
        if state is not None:
            self._streams.move_to_end(data.stream)
            return state
        while len(self._streams) >= self.max_streams:
            evicted, _ = self._streams.popitem(last=False)
            self.stats.evicted += 1
            logger.warning(
                "too many open streams: the least recently fed is dropped and rebuilt at close",
                extra={"stream": evicted, "max_streams": self.max_streams},
            )
        window = EMG_WINDOW_S if data.stream_type is StreamType.EMG else BALANCE_WINDOW_S
        # The recording kept in memory fits `recording_bytes`; a longer one is rebuilt at close.
        row_bytes = 8 * (len(data.frame.channels) + 1) * data.frame.sampling_rate_hz
        recording_s = min(self.recording_s, self.recording_bytes / row_bytes)
        assembler = StreamAssembler(
            window_s=window, buffer_s=3 * window, recording_s=recording_s, origin=data.origin
        )
        state = self._streams[data.stream] = _Stream(assembler)
        return state

    def _undo(self, session: Session) -> _Undo:
        """This transaction's undo record; if the transaction rolls back, its frames (and any window they
        completed) and closes were not applied after all: the streams it fed are forgotten, so the retried
        events start them afresh (their windows stay aligned on the origin) and the close rebuilds the
        recording from the frames table; the streams it closed are open again. One record (and one listener)
        per transaction, however many events a consumer's batch puts in it."""
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
        recording = self._recording(session, data, state)
        if recording is None:
            logger.warning("stream closed without samples: no metrics", extra={"stream": data.stream})
            stage_many(session, [completed_event(data, [])])
            return
        computed: list[Computed] = []
        if data.stream_type is StreamType.EMG:
            computed = compute.emg_recording(recording, data.mvc, data.protocol.emg())
        else:
            board = None
            lx, ly = data.protocol.board_lx_cm, data.protocol.board_ly_cm
            if lx is not None and ly is not None and lx > 0 and ly > 0:
                board = BoardGeometry(lx, ly)
            computed, trial = compute.balance_recording(recording, data.stream_type.value, board)
            if trial is not None and data.protocol.vision is not None:
                quotient = self._romberg(session, data, trial)
                if quotient is not None:
                    computed.append(quotient)
        self._emit(session, data, computed)
        # After the metrics, same transaction and key: whoever reads it has every metric of the close.
        stage_many(session, [completed_event(data, computed)])
        self.stats.recording_metrics += len(computed)

    def _recording(self, session: Session, data: StreamClosed, state: _Stream | None) -> Recording | None:
        """The recording from memory when it is whole, else rebuilt from the frames table."""
        if state is not None and self._complete(state, data):
            return state.assembler.recording()
        frames = self._load_frames(session, data.stream)
        if frames:
            self.stats.rebuilt += 1
            assembler = StreamAssembler(
                window_s=BALANCE_WINDOW_S,
                buffer_s=2 * BALANCE_WINDOW_S,
                recording_s=self.recording_s,
                origin=data.origin,
            )
            for frame in frames:
                assembler.push(frame)
            return assembler.recording()
        if state is not None and state.frames:
            logger.warning(
                "stream recording incomplete and not in the frames table: metrics from what arrived",
                extra={"stream": data.stream},
            )
            return state.assembler.recording()
        return None

    @staticmethod
    def _complete(state: _Stream, data: StreamClosed) -> bool:
        a = state.assembler
        if a.first_sequence not in (0, None) or a.first_time > 1e-6 or a.total_gaps:
            return False
        if data.frames is not None and state.frames != data.frames:
            return False
        try:
            return not a.recording().truncated
        except ValueError:
            return False

    def _romberg(self, session: Session, data: StreamClosed, trial: Trial) -> Computed | None:
        vision = data.protocol.vision
        assert vision is not None
        surface = data.protocol.surface
        record = session.get(BalanceTrialRecord, data.stream)
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
            session.add(record)
        other = self._partner(session, data, "open" if vision == "closed" else "closed")
        if other is None:
            return None
        other_trial = Trial(_aware(other.window_start), _aware(other.window_end), dict(other.metrics))
        closed, opened = (trial, other_trial) if vision == "closed" else (other_trial, trial)
        return compute.romberg(closed, opened)

    @staticmethod
    def _partner(session: Session, data: StreamClosed, vision: str) -> BalanceTrialRecord | None:
        """The opposite-vision trial of the same patient and surface: same session first, else the latest."""
        surface = data.protocol.surface
        query = select(BalanceTrialRecord).where(
            col(BalanceTrialRecord.patient_id) == data.patient,
            col(BalanceTrialRecord.vision) == vision,
            col(BalanceTrialRecord.stream_id) != data.stream,
            col(BalanceTrialRecord.surface).is_(None)
            if surface is None
            else col(BalanceTrialRecord.surface) == surface,
        )
        rows = list(session.exec(query.order_by(col(BalanceTrialRecord.window_end).desc()).limit(50)))
        if not rows:
            return None
        if data.session is not None:
            same = [r for r in rows if r.session_id == data.session]
            if same:
                return same[0]
        return rows[0]

    # -- out -------------------------------------------------------------------------------------------
    def _emit(self, session: Session, stream: StreamEvent, computed: Sequence[Computed]) -> None:
        # One multi-row INSERT for the window's metrics (8 EMG channels give ~30 events per window).
        stage_many(session, [metric_event(stream, c) for c in computed])
        for c in computed:
            self.stats.by_metric[c.metric.value] = self.stats.by_metric.get(c.metric.value, 0) + 1


def _aware(t: datetime) -> datetime:
    # SQLite hands timestamps back naive; they were stored in UTC.
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
