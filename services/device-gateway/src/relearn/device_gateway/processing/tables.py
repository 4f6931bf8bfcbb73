"""The metrics processor's own state.

`BalanceTrialRecord`: one row per closed balance trial whose protocol names the vision (eyes open / closed):
its window and the sway values a Romberg quotient is computed from. `WindowRecord`: which windows of an EMG
stream had their metrics staged (measured, partial or gap), the processor's durable progress. Recordings are
never kept here: they are read back from the gateway's frames table when needed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Integer, String
from sqlmodel import Field, SQLModel

_ID = 64


def _now() -> datetime:
    return datetime.now(UTC)


class BalanceTrialRecord(SQLModel, table=True):
    """The sway metrics of one closed balance trial (see module docstring)."""

    __tablename__ = "metrics_balance_trial"
    __table_args__ = (Index("ix_metrics_balance_trial_patient", "patient_id", "surface", "vision"),)

    stream_id: str = Field(sa_column=Column(String(_ID), primary_key=True))
    patient_id: str = Field(sa_column=Column(String(_ID), nullable=False))
    device_id: str = Field(sa_column=Column(String(_ID), nullable=False))
    session_id: str | None = Field(default=None, sa_column=Column(String(_ID), nullable=True))
    vision: str = Field(sa_column=Column(String(8), nullable=False))
    # NULL when the protocol does not say: such trials pair only with each other.
    surface: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    window_start: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    window_end: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # {metric code: value} of the whole trial.
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    closed_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class WindowRecord(SQLModel, table=True):
    """One window of an EMG stream whose metrics were staged (in the transaction that staged them).

    The processor's durable progress: after a crash, a restart or a partition move it rebuilds the first
    window not recorded here from the frames table, and at close every window of the recording not recorded as
    ``measured`` or ``partial`` is computed from the stored frames (or recorded as a ``gap``, its metrics kept
    as not computable with the reason: the trial summary's series says the window exists and has no value).
    ``metrics`` keeps the window's values (the window-level data, ``GET /streams/{id}/windows``)."""

    __tablename__ = "metrics_window"

    stream_id: str = Field(sa_column=Column(String(_ID), primary_key=True))
    window_index: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    # measured | partial (the recording ends inside it: its real span) | gap (not computable, `reason`)
    status: str = Field(sa_column=Column(String(16), nullable=False))
    window_start: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    window_end: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    # The window's metrics: [{metric, channel, value, unit, status}] (NULL in rows recorded before they were
    # kept). The window-level data of record: served by GET /streams/{id}/windows, and the series of the
    # trial summaries are built from it at close.
    metrics: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    recorded_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
