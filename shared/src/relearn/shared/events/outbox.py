"""The transactional outbox: events are rows written with the state they describe, relayed later.

``stage(session, event)`` adds the event to the caller's transaction; if that transaction
rolls back, the event never existed. ``OutboxRelay`` publishes committed rows to Kafka and
marks them published only after the broker acknowledged them, so a broker outage delays
events but loses none (a crash between ack and mark re-sends: consumers are idempotent).

Rows are claimed by ``published_at IS NULL`` in ``seq`` order, never by a "last seq seen"
cursor: sequence numbers are taken at insert but rows commit in any order, so a cursor
would skip a row that commits late. On PostgreSQL a transaction-scoped advisory lock lets
one relay per database publish at a time, which keeps each patient's events in order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaProducer
from kafka import errors as kafka_errors
from kafka.errors import KafkaTimeoutError
from sqlalchemy import BigInteger, Column, Index, Integer, Table, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col

from relearn.shared.db import is_postgres, transaction
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.events.kafka import TopicGuard, close_producer, producer_config
from relearn.shared.events.topics import topic_for

logger = logging.getLogger(__name__)

# Any fixed 64-bit number: the advisory lock that makes one relay per database the publisher.
_RELAY_LOCK_KEY = 0x52454C4541524E01
_STAGED = "relearn.outbox.staged"


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_event"
    __table_args__ = (Index("ix_outbox_event_unpublished", "published_at", "seq"),)

    seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    event_id: str = Field(max_length=64, unique=True)
    topic: str = Field(max_length=255)
    key: str = Field(max_length=255)
    type: str = Field(max_length=255)
    payload: bytes
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    published_at: datetime | None = Field(default=None)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=1000)


_OUTBOX_TABLE: Table = OutboxEvent.__table__  # type: ignore[attr-defined]


class OutboxDeadLetter(SQLModel, table=True):
    """An outbox row that can never be published, moved aside with the reason so the rest flow on.

    An operator reads it here (and the count in ``/readyz``, ``/metrics``), fixes the cause and, if the
    event still matters, stages it again.
    """

    __tablename__ = "outbox_dead_letter"
    __table_args__ = (Index("ix_outbox_dead_letter_failed", "failed_at"),)

    # The row's outbox sequence number (unique: a row is moved once).
    seq: int = Field(
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    )
    event_id: str = Field(max_length=64)
    topic: str = Field(max_length=255)
    key: str = Field(max_length=255)
    type: str = Field(max_length=255)
    payload: bytes
    created_at: datetime
    failed_at: datetime
    attempts: int = 0
    reason: str = Field(max_length=1000)


# Errors about one record that sending it again cannot fix: it is dead-lettered, the others go on.
# Anything else (timeouts, leader moves, an unreachable broker) retries the batch, in order.
POISON_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.CorruptRecordError,
    kafka_errors.InvalidRecordError,
    kafka_errors.InvalidTopicError,
    kafka_errors.InvalidTimestampError,
    TypeError,  # unserialisable: the producer refused the key or value before sending
    ValueError,
    AssertionError,  # kafka-python checks its arguments with assert
)


def stage(session: Session, event: CloudEvent, topic: str | None = None) -> None:
    """Add ``event`` to the caller's transaction; it is published after the commit."""
    session.add(
        OutboxEvent(
            event_id=event.id,
            topic=topic or topic_for(event.type),
            key=event.subject,
            type=event.type,
            payload=event.to_bytes(),
        )
    )
    session.info[_STAGED] = True


@dataclass(frozen=True)
class EncodedEvent:
    """An event already encoded as CloudEvents JSON (``payload``) with the envelope fields its outbox row
    keeps: lets a hot path build the bytes once (e.g. splicing in a large, already-serialised part)."""

    id: str
    type: str
    subject: str
    payload: bytes

    @classmethod
    def of(cls, event: CloudEvent) -> EncodedEvent:
        return cls(event.id, event.type, event.subject, event.to_bytes())


def stage_many(
    session: Session, events: Sequence[CloudEvent | EncodedEvent], topic: str | None = None
) -> None:
    """Add ``events`` to the caller's transaction, in order, with one multi-row INSERT (no ORM objects).

    The same as :func:`stage` for each, but cheaper for many or large events: no identity-map objects, no
    RETURNING of the sequence numbers. Anything the session has pending is flushed first (so events
    staged earlier with :func:`stage` keep their place in the order).
    """
    if not events:
        return
    now = datetime.now(UTC)
    rows = []
    for e in events:
        encoded = e if isinstance(e, EncodedEvent) else EncodedEvent.of(e)
        rows.append(
            {
                "event_id": encoded.id,
                "topic": topic or topic_for(encoded.type),
                "key": encoded.subject,
                "type": encoded.type,
                "payload": encoded.payload,
                "created_at": now,
                "attempts": 0,
            }
        )
    session.execute(insert(_OUTBOX_TABLE), rows)
    session.info[_STAGED] = True


# Relays to wake when a transaction that staged events commits, per engine.
_relays: weakref.WeakKeyDictionary[Engine, weakref.WeakSet[OutboxRelay]] = weakref.WeakKeyDictionary()


@event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    if not session.info.pop(_STAGED, False):
        return
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    for relay in list(_relays.get(engine, ())):
        relay.wake()


@event.listens_for(Session, "after_rollback")
def _forget_staged(session: Session) -> None:
    session.info.pop(_STAGED, None)


class OutboxRelay:
    """Publishes committed outbox rows; run it as a thread (``start``/``stop``) or call ``relay_once``.

    The thread publishes as soon as a commit wakes it; while events keep coming (its last round published
    some) it lingers ``linger_s`` after a wake, so each round carries many events (like a producer's
    ``linger_ms``)."""

    def __init__(
        self,
        engine: Engine,
        bootstrap: str,
        client_id: str,
        *,
        batch_size: int = 200,
        poll_interval_s: float = 0.5,
        ack_timeout_s: float = 15.0,
        max_backoff_s: float = 10.0,
        linger_s: float = 0.01,
        retention_s: float = 86400.0,
        purge_every_s: float = 60.0,
        topic_guard: TopicGuard | None = None,
    ) -> None:
        self.engine = engine
        # With a guard the service manages its topics: a topic gone missing (a broker restart) is re-created
        # as declared, checked every few seconds and right after a failed round, before sending again.
        self.topic_guard = topic_guard
        # Published rows are deleted after ``retention_s`` (the broker keeps the events).
        self.retention_s = retention_s
        self.purge_every_s = purge_every_s
        self._purged_at = 0.0
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.ack_timeout_s = ack_timeout_s
        self.max_backoff_s = max_backoff_s
        self.linger_s = linger_s
        self._producer: KafkaProducer | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _relays.setdefault(engine, weakref.WeakSet()).add(self)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"outbox-relay-{self.client_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the worker thread (if any) and close the producer; ``relay_once`` still works after."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        self._close_producer()
        if thread is None or not thread.is_alive():
            self._stop.clear()  # a later relay_once() must not think it is being stopped

    def wake(self) -> None:
        """Publish soon: called after a commit that staged events."""
        self._wake.set()

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                if self.topic_guard is not None:
                    self.topic_guard.check(now=backoff > 0)
                self._purge_now_and_then()
                sent = self.relay_once()
                backoff = 0.0
            except Exception as exc:  # broker or database trouble: keep the rows, retry later
                backoff = min(self.max_backoff_s, max(0.5, backoff * 2))
                logger.warning(
                    "outbox relay failed; retrying",
                    extra={"backoff_s": backoff, "error": f"{type(exc).__name__}: {exc}"},
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
                self._stop.wait(backoff)
                continue
            if sent < self.batch_size:  # caught up: sleep until woken or the next poll
                woken = self._wake.wait(self.poll_interval_s)
                self._wake.clear()
                if woken and sent and self.linger_s > 0:
                    # Busy (the last round published something): let a few more commits land, so one
                    # round (lock, select, send, mark) carries many events instead of one each.
                    self._stop.wait(self.linger_s)

    # -- one batch ------------------------------------------------------------------------------
    def relay_once(self) -> int:
        """Publish up to ``batch_size`` unpublished rows; returns how many were published."""
        with transaction(self.engine) as session:
            lock = select(func.pg_try_advisory_xact_lock(_RELAY_LOCK_KEY))
            if is_postgres(self.engine) and not session.execute(lock).scalar_one():
                return 0  # another relay is publishing this database's events
            rows = session.execute(
                select(
                    col(OutboxEvent.seq),
                    col(OutboxEvent.topic),
                    col(OutboxEvent.key),
                    col(OutboxEvent.payload),
                    col(OutboxEvent.event_id),
                    col(OutboxEvent.type),
                )
                .where(col(OutboxEvent.published_at).is_(None))
                .order_by(col(OutboxEvent.seq))
                .limit(self.batch_size)
            ).all()
            if not rows:
                return 0
            try:
                poison = self._publish(rows)
            except Exception as exc:
                # Nothing is marked: every row of the batch is sent again next time (consumers
                # drop the duplicates). A fresh producer avoids a stale idempotence sequence.
                self._close_producer(timeout_s=0)  # its pending sends are moot: the batch is resent
                self._record_failure([r[0] for r in rows], exc)
                raise
            if poison:
                self._dead_letter(session, poison)
            published = [r[0] for r in rows if r[0] not in poison]
            if published:
                session.execute(
                    update(OutboxEvent)
                    .where(col(OutboxEvent.seq).in_(published))
                    .values(published_at=datetime.now(UTC))
                )
            return len(published)

    def _publish(self, rows: Sequence[Any]) -> dict[int, str]:
        """Send ``rows`` and wait for every ack; the rows that can never be published, with why.

        A transient failure of any row raises (the whole batch is sent again, in order).
        """
        producer = self._get_producer()
        poison: dict[int, str] = {}
        # One batch in flight at a time bounds the producer's memory to batch_size messages.
        futures = []
        for seq, topic, key, payload, event_id, etype in rows:
            try:
                future = producer.send(
                    topic,
                    key=key.encode("utf-8"),
                    value=payload,
                    headers=[("ce_id", event_id.encode()), ("ce_type", etype.encode())],
                )
            except POISON_ERRORS as exc:  # refused before sending (too large for the producer, bad value)
                poison[seq] = _reason(exc, payload)
                continue
            futures.append((seq, payload, future))
        # Wait for every ack, in short slices so that stop() is not held up by a dead broker.
        deadline = time.monotonic() + self.ack_timeout_s
        refused_by_broker = False
        for seq, payload, f in futures:
            while not f.is_done:
                if self._stop.is_set():
                    raise KafkaTimeoutError("relay stopping before the broker acknowledged the batch")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KafkaTimeoutError(f"no acknowledgement within {self.ack_timeout_s}s")
                with contextlib.suppress(KafkaTimeoutError):
                    f.get(timeout=min(0.25, remaining))
            try:
                f.get()  # raises the delivery error, if there was one
            except POISON_ERRORS as exc:
                poison[seq] = _reason(exc, payload)
                refused_by_broker = True
        if refused_by_broker:  # the next batch starts a fresh idempotent sequence
            self._close_producer(timeout_s=0)
        return poison

    def _dead_letter(self, session: Session, poison: dict[int, str]) -> None:
        """Move the rows aside (in the relay's transaction) so that the rows after them are published."""
        now = datetime.now(UTC)
        rows = (
            session.execute(select(_OUTBOX_TABLE).where(_OUTBOX_TABLE.c.seq.in_(list(poison))))
            .mappings()
            .all()
        )
        for row in rows:
            logger.error(
                "outbox event can never be published; moved to outbox_dead_letter",
                extra={
                    "seq": row["seq"],
                    "event_id": row["event_id"],
                    "event_type": row["type"],
                    "topic": row["topic"],
                    "reason": poison[row["seq"]],
                },
            )
            session.add(
                OutboxDeadLetter(
                    seq=row["seq"],
                    event_id=row["event_id"],
                    topic=row["topic"],
                    key=row["key"],
                    type=row["type"],
                    payload=row["payload"],
                    created_at=row["created_at"],
                    failed_at=now,
                    attempts=row["attempts"] + 1,
                    reason=poison[row["seq"]],
                )
            )
        session.flush()
        session.execute(delete(_OUTBOX_TABLE).where(_OUTBOX_TABLE.c.seq.in_(list(poison))))

    def _record_failure(self, seqs: list[int], exc: Exception) -> None:
        # Best effort, in its own transaction, so the failure is visible to operators.
        try:
            with transaction(self.engine) as s:
                s.execute(
                    update(OutboxEvent)
                    .where(col(OutboxEvent.seq).in_(seqs))
                    .values(
                        attempts=OutboxEvent.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"[:1000]
                    )
                )
        except Exception:
            logger.debug("could not record the relay failure", exc_info=True)

    def _get_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(**producer_config(self.bootstrap, self.client_id))
        return self._producer

    def _close_producer(self, timeout_s: float = 2.0) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                close_producer(producer, timeout_s)
            except Exception:
                logger.debug("producer close failed", exc_info=True)

    def purge_published(self, now: datetime | None = None) -> int:
        """Delete the rows published more than ``retention_s`` ago; returns how many."""
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=self.retention_s)
        with transaction(self.engine) as session:
            result = session.connection().execute(
                delete(_OUTBOX_TABLE).where(
                    _OUTBOX_TABLE.c.published_at.is_not(None), _OUTBOX_TABLE.c.published_at < cutoff
                )
            )
            return int(result.rowcount or 0)

    def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._purged_at < self.purge_every_s:
            return
        self._purged_at = time.monotonic()
        purged = self.purge_published()
        if purged:
            logger.info("purged published outbox rows", extra={"rows": purged})

    def pending(self) -> int:
        """How many committed events wait to be published."""
        with Session(self.engine) as session:
            n = session.execute(
                select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.published_at).is_(None))
            ).scalar_one()
            return int(n)


def outbox_counts(engine: Engine) -> dict[str, int]:
    """Rows waiting to be published and rows dead-lettered (for ``/readyz`` and ``/metrics``)."""
    with Session(engine) as session:
        pending = session.execute(
            select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.published_at).is_(None))
        ).scalar_one()
        dead = session.execute(select(func.count()).select_from(OutboxDeadLetter)).scalar_one()
    return {"pending": int(pending), "deadLettered": int(dead)}


def _reason(exc: BaseException, payload: bytes) -> str:
    return f"{type(exc).__name__}: {exc} ({len(payload)} bytes)"[:1000]
