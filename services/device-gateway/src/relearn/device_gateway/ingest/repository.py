"""The ingest path's one query of its own: how many outbox events wait for the broker (back-pressure).
Streams, frames and gaps are :mod:`relearn.device_gateway.streams.repository`'s."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from relearn.shared.events import OutboxEvent

_UNPUBLISHED = select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.published_at).is_(None))


def count_unpublished(engine: Engine) -> int:
    """Outbox events not yet published (one COUNT on its own connection)."""
    with engine.connect() as conn:
        return int(conn.execute(_UNPUBLISHED).scalar_one())
