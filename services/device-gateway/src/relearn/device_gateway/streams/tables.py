"""The stream tables: bindings, their frames and their gaps (see `repository` for how they are read).

- ``device_stream``: one binding of a device's stream to a patient (and session), with the protocol the
  processor needs (vision, surface, MVC, targets), counters (frames, samples, next expected sequence), the
  channel layout fixed by the first frame and the stream's ``origin`` (the first accepted frame's start).
- ``device_frame``: one row per accepted frame, keyed (stream, sequence): the de-duplication key and the
  recording itself. Samples are stored compactly as the float64 bytes of the ``[n, channels]`` block as sent
  (raw counts stay counts), per-sample timestamps likewise or NULL for evenly sampled frames.
- ``device_stream_gap``: each jump in sequence as it was detected (expected, got).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlmodel import Field, SQLModel

_ID = 64  # FHIR ids and stream ids


def _now() -> datetime:
    return datetime.now(UTC)


class StreamStatus:
    OPEN = "open"
    CLOSED = "closed"


class StreamRecord(SQLModel, table=True):
    """One stream binding (see module docstring)."""

    __tablename__ = "device_stream"
    __table_args__ = (
        Index("ix_device_stream_patient", "patient_id", "created_at"),
        Index("ix_device_stream_session", "session_id"),
        Index("ix_device_stream_device", "device_id", "status"),
    )

    id: str = Field(sa_column=Column(String(_ID), primary_key=True))
    device_id: str = Field(sa_column=Column(String(_ID), nullable=False))
    stream_type: str = Field(sa_column=Column(String(16), nullable=False))
    patient_id: str = Field(sa_column=Column(String(_ID), nullable=False))
    session_id: str | None = Field(default=None, sa_column=Column(String(_ID), nullable=True))
    protocol: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    mvc: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    targets: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    status: str = Field(default=StreamStatus.OPEN, sa_column=Column(String(8), nullable=False))
    # One past the highest sequence accepted so far (the next one expected).
    next_sequence: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    frames: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    samples: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    gap_count: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    # {"samplingRateHz", "channels": [{"name","unit"}], "adc": {...}|null}: fixed by the first frame.
    layout: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The first accepted frame's startTime: where every processor aligns its windows.
    origin: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    # Seconds from origin to just after the last sample of the highest-sequence frame.
    last_time_offset: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    created_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    closed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class FrameRecord(SQLModel, table=True):
    """One accepted frame: the (stream, sequence) de-duplication key and its samples."""

    __tablename__ = "device_frame"

    stream_id: str = Field(
        sa_column=Column(String(_ID), ForeignKey("device_stream.id"), primary_key=True, autoincrement=False)
    )
    sequence: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    device_id: str = Field(sa_column=Column(String(_ID), nullable=False))
    start_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    n_samples: int = Field(sa_column=Column(Integer, nullable=False))
    # float64 little-endian bytes of the [n_samples, channels] block as sent (row-major).
    sample_data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # float64 little-endian seconds from start_time per sample, or NULL when evenly sampled.
    time_data: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    received_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class GapRecord(SQLModel, table=True):
    """A jump in sequence: frames ``expected`` .. ``got - 1`` had not arrived when ``got`` did."""

    __tablename__ = "device_stream_gap"
    __table_args__ = (Index("ix_device_stream_gap_stream", "stream_id", "expected"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    stream_id: str = Field(sa_column=Column(String(_ID), ForeignKey("device_stream.id"), nullable=False))
    expected: int = Field(sa_column=Column(BigInteger, nullable=False))
    got: int = Field(sa_column=Column(BigInteger, nullable=False))
    detected_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
