"""The metrics processor's own state: whole-trial balance metrics kept for the Romberg quotient.

One row per closed balance trial whose protocol names the vision (eyes open / closed): its window and the
sway values a quotient is computed from. Nothing else of a stream outlives its close in the processor
(window state is memory only; a recording is rebuilt from the gateway's frames table when needed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, String
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
