"""Every query on the stream tables, and the read models built from their rows.

`StreamInfo` is a binding's snapshot (after-commit hooks, live biofeedback, processors); `gaps_of` the
gaps with what is still missing; `iter_frames` streams a recording back in chunks (bounded memory) and
`load_recording_frames` rebuilds it whole, exactly as the device sent it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlmodel import Session, col

from relearn.device_gateway.signals.frames import Adc, Channel, SensorFrame, StreamType
from relearn.device_gateway.streams.tables import FrameRecord, GapRecord, StreamRecord


def _now() -> datetime:
    return datetime.now(UTC)


# -- read models ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamInfo:
    """A snapshot of a stream binding, as handed to after-commit hooks (live biofeedback) and processors."""

    id: str
    device: str
    stream_type: StreamType
    patient: str
    session: str | None
    protocol: dict[str, Any]
    mvc: dict[str, Any] | None
    targets: dict[str, Any] | None
    status: str
    origin: datetime | None
    layout: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """camelCase, as the binding reads on the wire (``id``, ``device``, ``streamType``, ``mvc`` ...)."""
        return {
            "id": self.id,
            "device": self.device,
            "streamType": self.stream_type.value,
            "patient": self.patient,
            "session": self.session,
            "protocol": self.protocol,
            "mvc": self.mvc,
            "targets": self.targets,
            "status": self.status,
            "origin": self.origin.isoformat() if self.origin is not None else None,
            "layout": self.layout,
        }

    @classmethod
    def of(cls, row: StreamRecord) -> StreamInfo:
        return cls(
            id=row.id,
            device=row.device_id,
            stream_type=StreamType(row.stream_type),
            patient=row.patient_id,
            session=row.session_id,
            protocol=dict(row.protocol or {}),
            mvc=dict(row.mvc) if row.mvc is not None else None,
            targets=dict(row.targets) if row.targets is not None else None,
            status=row.status,
            origin=_aware(row.origin),
            layout=dict(row.layout) if row.layout is not None else None,
        )


@dataclass(frozen=True)
class Gap:
    expected: int
    got: int
    # How many of expected..got-1 are still missing (late frames fill gaps).
    missing: int


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back naive; they were stored in UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def aware(value: datetime | None) -> datetime | None:
    return _aware(value)


def layout_of(frame: SensorFrame) -> dict[str, Any]:
    """What the first frame fixes for the whole stream (camelCase, as on the wire)."""
    return {
        "samplingRateHz": frame.sampling_rate_hz,
        "channels": [c.model_dump(by_alias=True) for c in frame.channels],
        "adc": frame.adc.model_dump(mode="json", by_alias=True) if frame.adc is not None else None,
    }


def frame_record(frame: SensorFrame) -> dict[str, Any]:
    """The ``device_frame`` row of an accepted frame (values as sent, compact binary)."""
    values = frame.raw_values().astype("<f8", copy=False)
    times = np.asarray(frame.timestamps, dtype="<f8").tobytes() if frame.timestamps is not None else None
    return {
        "stream_id": frame.stream_id,
        "sequence": frame.sequence,
        "device_id": frame.device_id,
        "start_time": frame.start_time,
        "n_samples": frame.n_samples,
        "sample_data": values.tobytes(),
        "time_data": times,
        "received_at": _now(),
    }


def gaps_of(session: Session, stream_id: str) -> list[Gap]:
    """The stream's gaps in detection order, each with how many of its frames are still missing."""
    rows = session.execute(
        select(col(GapRecord.expected), col(GapRecord.got))
        .where(col(GapRecord.stream_id) == stream_id)
        .order_by(col(GapRecord.id))
    ).all()
    out = []
    for expected, got in rows:
        arrived = session.execute(
            select(func.count())
            .select_from(FrameRecord)
            .where(
                col(FrameRecord.stream_id) == stream_id,
                col(FrameRecord.sequence) >= expected,
                col(FrameRecord.sequence) < got,
            )
        ).scalar_one()
        out.append(Gap(int(expected), int(got), int(got - expected - arrived)))
    return out


def load_recording_frames(session: Session, stream_id: str) -> list[SensorFrame]:
    """Every stored frame of a stream, in sequence order, rebuilt exactly as the device sent them.

    Samples come back as sent (raw counts stay counts; `to_arrays()` applies the declared transfer), with
    the per-sample timestamps when the device sent them. An unknown stream or one without frames gives [].
    """
    stream = session.get(StreamRecord, stream_id)
    if stream is None or stream.layout is None:
        return []
    layout = stream.layout
    channels = [Channel.model_validate(c) for c in layout["channels"]]
    adc = Adc.model_validate(layout["adc"]) if layout.get("adc") else None
    width = len(channels)
    stream_type = StreamType(stream.stream_type)
    rows = session.execute(
        select(
            col(FrameRecord.sequence),
            col(FrameRecord.device_id),
            col(FrameRecord.start_time),
            col(FrameRecord.n_samples),
            col(FrameRecord.sample_data),
            col(FrameRecord.time_data),
        )
        .where(col(FrameRecord.stream_id) == stream_id)
        .order_by(col(FrameRecord.sequence))
    ).all()
    frames = []
    for sequence, device_id, start_time, n, sample_data, time_data in rows:
        values = np.frombuffer(sample_data, dtype="<f8").reshape(n, width)
        times = np.frombuffer(time_data, dtype="<f8").tolist() if time_data is not None else None
        # Validated once on arrival; constructed without re-validation here.
        frames.append(
            SensorFrame.model_construct(
                device_id=device_id,
                stream_type=stream_type,
                stream_id=stream_id,
                sequence=int(sequence),
                start_time=_aware(start_time) or start_time,
                sampling_rate_hz=float(layout["samplingRateHz"]),
                channels=channels,
                adc=adc,
                samples=values.tolist(),
                timestamps=times,
            )
        )
    return frames


FRAME_CHUNK = 256
"""Frames read per query when a recording is streamed back (`iter_frames`): a few MiB at most."""


def iter_frames(
    session: Session,
    stream_id: str,
    *,
    from_sequence: int = 0,
    before_sequence: int | None = None,
    chunk: int = FRAME_CHUNK,
) -> Iterator[SensorFrame]:
    """The stored frames of a stream with ``from_sequence <= sequence < before_sequence``, in sequence order,
    read ``chunk`` rows per query (keyset pagination), so memory stays bounded however long the recording.

    Unlike `load_recording_frames` the samples stay the float64 block as stored (a read-only numpy view of
    the row's bytes, never Python lists); `to_arrays()` works on them as on any frame.
    """
    stream = session.get(StreamRecord, stream_id)
    if stream is None or stream.layout is None:
        return
    layout = stream.layout
    channels = [Channel.model_validate(c) for c in layout["channels"]]
    adc = Adc.model_validate(layout["adc"]) if layout.get("adc") else None
    width = len(channels)
    rate = float(layout["samplingRateHz"])
    stream_type = StreamType(stream.stream_type)
    after = from_sequence - 1
    while True:
        query = select(
            col(FrameRecord.sequence),
            col(FrameRecord.device_id),
            col(FrameRecord.start_time),
            col(FrameRecord.n_samples),
            col(FrameRecord.sample_data),
            col(FrameRecord.time_data),
        ).where(col(FrameRecord.stream_id) == stream_id, col(FrameRecord.sequence) > after)
        if before_sequence is not None:
            query = query.where(col(FrameRecord.sequence) < before_sequence)
        rows = session.execute(query.order_by(col(FrameRecord.sequence)).limit(chunk)).all()
        for sequence, device_id, start_time, n, sample_data, time_data in rows:
            values = np.frombuffer(sample_data, dtype="<f8").reshape(n, width)
            times = np.frombuffer(time_data, dtype="<f8") if time_data is not None else None
            yield SensorFrame.model_construct(
                device_id=device_id,
                stream_type=stream_type,
                stream_id=stream_id,
                sequence=int(sequence),
                start_time=_aware(start_time) or start_time,
                sampling_rate_hz=rate,
                channels=channels,
                adc=adc,
                samples=values,  # type: ignore[arg-type]  # an ndarray serves where a list is declared
                timestamps=times,  # type: ignore[arg-type]
            )
        if len(rows) < chunk:
            return
        after = int(rows[-1][0])


def frame_at(session: Session, stream_id: str, at: datetime) -> int | None:
    """The sequence of the last stored frame that starts at or before ``at`` (None: none does)."""
    found = session.execute(
        select(func.max(col(FrameRecord.sequence))).where(
            col(FrameRecord.stream_id) == stream_id, col(FrameRecord.start_time) <= at
        )
    ).scalar_one_or_none()
    return None if found is None else int(found)


def stored_samples(session: Session, stream_id: str) -> int | None:
    """How many samples the stream has stored (its counter), None for an unknown stream."""
    stream = session.get(StreamRecord, stream_id)
    return None if stream is None else int(stream.samples)


# -- bindings ----------------------------------------------------------------------------------------------
def get_stream(session: Session, stream_id: str) -> StreamRecord | None:
    return session.get(StreamRecord, stream_id)


def lock_stream(session: Session, stream_id: str) -> StreamRecord | None:
    """The binding, row-locked until the transaction ends (closing it races with ingest)."""
    return session.execute(
        select(StreamRecord).where(col(StreamRecord.id) == stream_id).with_for_update()
    ).scalar_one_or_none()


def add_stream(session: Session, row: StreamRecord) -> StreamRecord:
    session.add(row)
    session.flush()
    return row


def save_stream(session: Session, row: StreamRecord) -> None:
    session.add(row)
    session.flush()


def find_streams(
    session: Session,
    *,
    patient: str | None = None,
    session_id: str | None = None,
    device: str | None = None,
    status: str | None = None,
    count: int = 100,
) -> list[StreamRecord]:
    """Bindings matching every filter given, newest first, at most ``count``."""
    query = select(StreamRecord)
    if patient is not None:
        query = query.where(col(StreamRecord.patient_id) == patient)
    if session_id is not None:
        query = query.where(col(StreamRecord.session_id) == session_id)
    if device is not None:
        query = query.where(col(StreamRecord.device_id) == device)
    if status is not None:
        query = query.where(col(StreamRecord.status) == status)
    query = query.order_by(col(StreamRecord.created_at).desc(), col(StreamRecord.id)).limit(count)
    return list(session.execute(query).scalars())


def patient_of(session: Session, *, stream: str | None = None, session_id: str | None = None) -> str | None:
    """The patient of a binding (by stream id) or of a session's latest binding; None when none is known."""
    query = select(col(StreamRecord.patient_id))
    if stream is not None:
        query = query.where(col(StreamRecord.id) == stream)
    elif session_id is not None:
        query = query.where(col(StreamRecord.session_id) == session_id)
    else:
        return None
    found: str | None = session.execute(
        query.order_by(col(StreamRecord.created_at).desc()).limit(1)
    ).scalar_one_or_none()
    return found


# -- ingest --------------------------------------------------------------------------------------------------
_FRAME_TABLE: Table = FrameRecord.__table__  # type: ignore[attr-defined]
_STREAM_TABLE: Table = StreamRecord.__table__  # type: ignore[attr-defined]
# Built once (statement construction costs more than running them): lock a request's stream rows in id
# order, and write back their bookkeeping.
_LOCK_STREAMS = (
    select(StreamRecord)
    .where(col(StreamRecord.id).in_(bindparam("ids", expanding=True)))
    .order_by(col(StreamRecord.id))
    .with_for_update()
)
_UPDATE_STREAM = update(_STREAM_TABLE).where(_STREAM_TABLE.c.id == bindparam("b_id"))


def lock_streams(session: Session, ids: list[str]) -> list[StreamRecord]:
    """The bindings, row-locked in id order and detached: changes are written back by `write_counters`
    (one UPDATE), not tracked by the session."""
    rows = list(session.execute(_LOCK_STREAMS, {"ids": ids}).scalars())
    for row in rows:
        session.expunge(row)
    return rows


def write_counters(session: Session, rows: list[StreamRecord]) -> None:
    """One Core UPDATE for every binding a request changed (no unit-of-work bookkeeping)."""
    session.execute(
        _UPDATE_STREAM,
        [
            {
                "b_id": r.id,
                "next_sequence": r.next_sequence,
                "frames": r.frames,
                "samples": r.samples,
                "gap_count": r.gap_count,
                "layout": r.layout,
                "origin": r.origin,
                "last_time_offset": r.last_time_offset,
            }
            for r in rows
        ],
    )


def insert_frames(session: Session, rows: list[dict[str, Any]]) -> None:
    """Frames (`frame_record` rows) in one multi-row INSERT. Their 20-60 kB values are TOASTed, with lz4 where
    the server has it (migration 5b1e0c7d9a42); no ORM objects."""
    session.execute(insert(_FRAME_TABLE), rows)


def add_gaps(session: Session, gaps: list[tuple[str, int, int]]) -> None:
    """The gap rows ``(stream_id, expected, got)`` of a request, flushed (the after-commit hooks and a gap
    listing in the same transaction see them)."""
    session.add_all([GapRecord(stream_id=s, expected=e, got=g) for s, e, g in gaps])
    session.flush()


def stored_sequences(session: Session, stream_id: str, sequences: set[int]) -> set[int]:
    """Which of ``sequences`` the stream has stored."""
    found = session.execute(
        select(col(FrameRecord.sequence)).where(
            col(FrameRecord.stream_id) == stream_id, col(FrameRecord.sequence).in_(sorted(sequences))
        )
    ).scalars()
    return {int(s) for s in found}
