"""Back-pressure: when too many outbox events wait for the broker, ingest answers 429 + ``Retry-After`` and
stores nothing (the device keeps its frames and sends them again)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from relearn.shared.events import OutboxEvent
from relearn.shared.fhir import FhirError


class TooBusy(FhirError):
    """429: the outbox backlog is above the limit; nothing was stored."""

    status_code = 429
    issue_code = "throttled"

    def __init__(self, diagnostics: str, retry_after_s: int) -> None:
        super().__init__(diagnostics, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


_UNPUBLISHED = select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.published_at).is_(None))


class BacklogGauge:
    """How many outbox events wait for the broker: one cheap COUNT, reused for ``cache_s`` seconds."""

    def __init__(self, cache_s: float) -> None:
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._value = 0
        self._at = float("-inf")

    def current(self, engine: Engine) -> int:
        now = time.monotonic()
        with self._lock:
            if now - self._at <= self.cache_s:
                return self._value
        with engine.connect() as conn:
            value = int(conn.execute(_UNPUBLISHED).scalar_one())
        with self._lock:
            self._value, self._at = value, time.monotonic()
        return value

    def add(self, n: int) -> None:
        """Count events just committed until the next COUNT sees them."""
        with self._lock:
            self._value += n

    def check(self, engine: Engine, limit: int, retry_after_s: int) -> None:
        """:class:`TooBusy` when more than ``limit`` events wait for the broker."""
        backlog = self.current(engine)
        if backlog > limit:
            raise TooBusy(
                f"{backlog} events wait for the broker (limit {limit}); "
                f"nothing was stored: send again in {retry_after_s} s",
                retry_after_s,
            )
