"""Every query of the metrics processor on its tables: window progress and balance trials."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from relearn.device_gateway.processing.tables import BalanceTrialRecord, WindowRecord


def last_window(session: Session, stream: str) -> int | None:
    """The highest window index recorded for the stream (None: none yet)."""
    found = session.execute(
        select(func.max(col(WindowRecord.window_index))).where(col(WindowRecord.stream_id) == stream)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def window_statuses(session: Session, stream: str) -> dict[int, str]:
    """{window index: status} of every window recorded for the stream."""
    rows = session.execute(
        select(col(WindowRecord.window_index), col(WindowRecord.status)).where(
            col(WindowRecord.stream_id) == stream
        )
    ).all()
    return {int(i): str(s) for i, s in rows}


def window_status(session: Session, stream: str, index: int) -> str | None:
    row = session.get(WindowRecord, (stream, index))
    return None if row is None else row.status


def record_window(
    session: Session,
    stream: str,
    index: int,
    status: str,
    start: datetime,
    end: datetime,
    reason: str | None,
    metrics: list[dict[str, Any]] | None = None,
) -> None:
    """Insert or update the window's row with its metrics (the processor's transaction)."""
    session.merge(
        WindowRecord(
            stream_id=stream,
            window_index=index,
            status=status,
            window_start=start,
            window_end=end,
            reason=(reason or "")[:500] or None,
            metrics=metrics,
        )
    )


def windows(
    session: Session, stream: str, *, offset: int = 0, count: int | None = None
) -> list[WindowRecord]:
    """The stream's window rows in index order, from window ``offset``, at most ``count`` (this
    transaction's rows included)."""
    session.flush()
    query = (
        select(WindowRecord)
        .where(col(WindowRecord.stream_id) == stream, col(WindowRecord.window_index) >= offset)
        .order_by(col(WindowRecord.window_index))
    )
    if count is not None:
        query = query.limit(count)
    return list(session.exec(query).all())


def count_windows(session: Session, stream: str) -> int:
    found = session.execute(
        select(func.count()).select_from(WindowRecord).where(col(WindowRecord.stream_id) == stream)
    ).scalar_one()
    return int(found)


def balance_trial(session: Session, stream: str) -> BalanceTrialRecord | None:
    return session.get(BalanceTrialRecord, stream)


def add_balance_trial(session: Session, record: BalanceTrialRecord) -> None:
    session.add(record)


def balance_trials(
    session: Session, patient: str, vision: str, surface: str | None, *, other_than: str, limit: int = 50
) -> list[BalanceTrialRecord]:
    """The patient's trials with that vision on that surface (None: unnamed), latest first."""
    query = select(BalanceTrialRecord).where(
        col(BalanceTrialRecord.patient_id) == patient,
        col(BalanceTrialRecord.vision) == vision,
        col(BalanceTrialRecord.stream_id) != other_than,
        col(BalanceTrialRecord.surface).is_(None)
        if surface is None
        else col(BalanceTrialRecord.surface) == surface,
    )
    return list(session.exec(query.order_by(col(BalanceTrialRecord.window_end).desc()).limit(limit)))
