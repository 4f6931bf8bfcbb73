"""Drive the metrics processor with raw events exactly as the gateway stages them (GATEWAY.md), no broker.

Each event runs in its own transaction on a migrated SQLite database (the embedded default), as the
consumer runs it; the metric events the processor stages in that transaction are read back from the outbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from relearn.device_gateway.processing.service import MetricsProcessor
from relearn.device_gateway.processing.tables import WindowRecord
from relearn.device_gateway.signals.frames import SensorFrame
from relearn.device_gateway.streams.repository import frame_record, layout_of
from relearn.device_gateway.streams.tables import FrameRecord, StreamRecord
from relearn.shared.events import CloudEvent, OutboxEvent
from relearn.shared.migrations import upgrade
from relearn.shared.service import make_engine, transaction

SENSORS = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "sensors"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
PLATE = [
    {"name": n, "unit": u}
    for n, u in [("Fx", "N"), ("Fy", "N"), ("Fz", "N"), ("Mx", "N.m"), ("My", "N.m"), ("Mz", "N.m")]
]


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Stream:
    """A stream binding as the raw events describe it, and its frames (wire JSON)."""

    stream_type: str
    frames: list[dict[str, Any]]
    patient: str = field(default_factory=lambda: _uid("pat"))
    device: str = field(default_factory=lambda: _uid("dev"))
    stream: str = field(default_factory=lambda: _uid("str"))
    session: str | None = None
    protocol: dict[str, Any] = field(default_factory=dict)
    mvc: dict[str, float] | None = None

    def __post_init__(self) -> None:
        for f in self.frames:
            f["deviceId"], f["streamId"] = self.device, self.stream

    @property
    def origin(self) -> str:
        return str(self.frames[0]["startTime"])

    def _common(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "device": self.device,
            "patient": self.patient,
            "session": self.session,
            "streamType": self.stream_type,
            "origin": self.origin,
            "protocol": self.protocol,
            "mvc": self.mvc,
        }

    def kind(self) -> str:
        return "emg" if self.stream_type == "emg" else "balance"

    def frame_events(self) -> list[CloudEvent]:
        return [
            CloudEvent.new(
                "/relearn/device-gateway",
                f"device.{self.kind()}-frame-received.v1",
                self.device,
                {**self._common(), "targets": None, "frame": f},
            )
            for f in self.frames
        ]

    def closed_event(self) -> CloudEvent:
        data = {
            **self._common(),
            "lastSequence": self.frames[-1]["sequence"],
            "frames": len(self.frames),
            "samples": sum(len(f["samples"]) for f in self.frames),
            "gaps": 0,
        }
        return CloudEvent.new(
            "/relearn/device-gateway", f"device.{self.kind()}-stream-closed.v1", self.device, data
        )

    def events(self) -> list[CloudEvent]:
        return [*self.frame_events(), self.closed_event()]


def wire_frames(
    values: np.ndarray,
    *,
    rate: float,
    channels: list[dict[str, str]],
    stream_type: str,
    frame_len: int,
    start: datetime = T0,
    adc: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    frames = []
    for seq, lo in enumerate(range(0, values.shape[0], frame_len)):
        frame: dict[str, Any] = {
            "deviceId": "?",
            "streamType": stream_type,
            "streamId": "?",
            "sequence": seq,
            "startTime": (start + timedelta(seconds=lo / rate)).isoformat(),
            "samplingRateHz": rate,
            "channels": channels,
            "samples": values[lo : lo + frame_len].tolist(),
        }
        if adc is not None:
            frame["adc"] = adc
        frames.append(frame)
    return frames


def store_frames(engine: Engine, events: list[CloudEvent]) -> None:
    """Store the frames of raw frame events as ingest does before it stages their events (the binding row,
    its counters and layout, one ``device_frame`` row per frame): the recording of record the processor
    reads back. Events of other types are ignored."""
    with transaction(engine) as session:
        for e in events:
            if "frame" not in e.data:
                continue
            d = e.data
            frame = SensorFrame.model_validate(d["frame"])
            row = session.get(StreamRecord, d["stream"])
            if row is None:
                row = StreamRecord(
                    id=d["stream"],
                    device_id=d["device"],
                    stream_type=d["streamType"],
                    patient_id=d["patient"],
                    session_id=d.get("session"),
                    protocol=d.get("protocol") or {},
                    mvc=d.get("mvc"),
                    layout=layout_of(frame),
                    origin=frame.start_time,
                )
                session.add(row)
                session.flush()
            row.frames += 1
            row.samples += frame.n_samples
            row.next_sequence = max(row.next_sequence, frame.sequence + 1)
            session.add(FrameRecord(**frame_record(frame)))
            session.flush()


WINDOW_ROW = "test.window-recorded.v1"
"""What the tests call a window's metrics: read from ``metrics_window`` (window metrics are not sent)."""


def _window_rows(engine: Engine) -> dict[tuple[str, int], tuple[Any, ...]]:
    with Session(engine) as s:
        return {
            (r.stream_id, r.window_index): (r.status, r.reason, r.window_start, r.window_end, r.metrics)
            for r in s.exec(select(WindowRecord)).all()
        }


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def window_events(
    before: dict[tuple[str, int], tuple[Any, ...]], after: dict[tuple[str, int], tuple[Any, ...]]
) -> list[CloudEvent]:
    """One pseudo-event per window metric recorded (or re-recorded) between two snapshots, shaped as the
    former per-window metric events: {stream, metric, channel, window, value, unit, status, reason?,
    partial?}."""
    out = []
    for (stream, index), row in sorted(after.items()):
        if before.get((stream, index)) == row:
            continue
        status, reason, start, end, metrics = row
        for m in metrics or []:
            data = {
                "stream": stream,
                "index": index,
                "metric": m["metric"],
                "channel": m["channel"],
                "muscle": m.get("muscle"),
                "window": {"start": _aware(start).isoformat(), "end": _aware(end).isoformat()},
                "value": m["value"],
                "unit": m["unit"],
                "status": m["status"],
            }
            if status != "measured":
                data["reason"] = reason
            if status == "partial":
                data["partial"] = True
            out.append(CloudEvent.new("/test", WINDOW_ROW, stream, data))
    return out


class Feed:
    """Runs raw events through a processor, one transaction each; returns the window metrics it recorded
    (as `WINDOW_ROW` pseudo-events, first) and the events it staged."""

    def __init__(self, engine: Engine, processor: MetricsProcessor) -> None:
        self.engine = engine
        self.processor = processor

    def run(self, events: list[CloudEvent]) -> list[CloudEvent]:
        with Session(self.engine) as s:
            before = (
                s.exec(select(OutboxEvent.seq).order_by(col(OutboxEvent.seq).desc()).limit(1)).first() or 0
            )
        rows = _window_rows(self.engine)
        handlers = self.processor.handlers()
        for event in events:
            with transaction(self.engine) as session:
                handlers[event.type](session, event)
        windows = window_events(rows, _window_rows(self.engine))
        with Session(self.engine) as s:
            staged = s.exec(
                select(OutboxEvent).where(col(OutboxEvent.seq) > before).order_by(col(OutboxEvent.seq))
            ).all()
            return windows + [CloudEvent.from_bytes(r.payload) for r in staged]


@dataclass(frozen=True)
class Data:
    """Reference recordings (shared/data/sensors) and the helpers the tests build streams with."""

    sensors: Path = SENSORS
    plate: tuple[dict[str, str], ...] = tuple(PLATE)
    t0: datetime = T0
    wire_frames: Callable[..., list[dict[str, Any]]] = wire_frames
    stream: Callable[..., Stream] = Stream

    def balance(self, trial: str) -> np.ndarray:
        """Fx Fy Fz Mx My Mz of a BDS trial (100 Hz)."""
        return np.asarray(np.loadtxt(SENSORS / "balance" / f"{trial}.txt", skiprows=1)[:, 1:7])

    def bmc(self) -> np.ndarray:
        """BMC EMG (V, 1 kHz), one channel [n, 1]."""
        return np.asarray(np.loadtxt(SENSORS / "emg" / "bmc_emg.csv", delimiter=",")[:, 1:2])

    def biosppy(self, name: str = "biosppy_emg.txt") -> np.ndarray:
        """BioSPPy EMG in raw 12-bit counts (1 kHz), one channel [n, 1]."""
        return np.asarray(np.loadtxt(SENSORS / "emg" / name, comments="#"))[:, None]

    def lower_limb(self) -> np.ndarray:
        """UCI lower-limb EMG, 4 thigh muscles RF BF VM ST (mV, 1 kHz), [n, 4]."""
        return np.asarray(np.loadtxt(SENSORS / "emg" / "uci_lowerlimb_5Npie.txt", skiprows=7)[:, :4])

    def plate_stream(self, trial: str, **kw: Any) -> Stream:
        frames = wire_frames(
            self.balance(trial), rate=100.0, channels=list(PLATE), stream_type="force-plate", frame_len=50
        )
        return Stream("force-plate", frames, **kw)


@pytest.fixture(scope="session")
def store() -> Callable[[Engine, list[CloudEvent]], None]:
    """`store_frames`: what ingest stores before it stages a frame's event."""
    return store_frames


@pytest.fixture(scope="session")
def data() -> Data:
    return Data()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade("relearn.device_gateway", url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def feed(engine: Engine) -> Feed:
    return Feed(engine, MetricsProcessor())


@pytest.fixture
def make_feed(engine: Engine) -> Callable[..., Feed]:
    """A feed over the same database with its own processor (e.g. another process, or one restarted)."""

    def build(**kw: Any) -> Feed:
        return Feed(engine, MetricsProcessor(**kw))

    return build


def flatten(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A `device.trial-summarized.v1` as one dict per result, shaped as the former whole-recording metric
    events (the trial's span as `window`, the summary's `observation`)."""
    common = {k: data[k] for k in ("patient", "device", "stream", "session", "metric", "observation")}
    return [common | {"window": data["trial"]} | r for r in data["results"]]


def by_metric(events: list[CloudEvent]) -> dict[tuple[str, str | None], list[dict[str, Any]]]:
    """Window metrics (recorded) and trial results (summaries, flattened) by (metric, channel), windows
    first; a close's completed event is not a metric."""
    out: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for e in events:
        if e.type == WINDOW_ROW:
            out.setdefault((e.data["metric"], e.data.get("channel")), []).append(e.data)
    for e in events:
        if e.type == "device.trial-summarized.v1":
            for item in flatten(e.data):
                out.setdefault((item["metric"], item.get("channel")), []).append(item)
    return out


@pytest.fixture(scope="session")
def group() -> Callable[[list[CloudEvent]], dict[tuple[str, str | None], list[dict[str, Any]]]]:
    return by_metric
