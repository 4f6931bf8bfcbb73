"""The consumer runner: Kafka in a worker thread, one DB transaction per event, idempotent.

For each message: read the envelope; find the handler for its type (unknown types are
skipped); in one transaction, skip it if ``(group, event id)`` is in ``processed_event``,
otherwise run the handler and record the id; commit; then commit the Kafka offset. A
message that cannot be handled goes to ``<topic>.dlq`` with the error in its headers; a
database outage is not the message's fault, so that message is retried instead.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, IllegalStateError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlmodel import Field, Session, SQLModel

from relearn.shared.db import transaction
from relearn.shared.events.envelope import CloudEvent, InvalidEvent
from relearn.shared.events.kafka import close_producer, make_consumer, producer_config
from relearn.shared.events.topics import dlq
from relearn.shared.logging import bound_context

logger = logging.getLogger(__name__)

Handler = Callable[[Session, CloudEvent], None]


class ProcessedEvent(SQLModel, table=True):
    __tablename__ = "processed_event"

    consumer: str = Field(primary_key=True, max_length=128)
    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=255)
    processed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class _Transient(Exception):
    """The database is unavailable: retry the same message later."""


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


class EventConsumer:
    """Consumes ``topics`` as consumer group ``group_id`` and dispatches by event type.

    ``dlq_producer``: a producer to write dead letters with (left open on ``stop``); by
    default the consumer makes its own when the first dead letter comes.
    """

    def __init__(
        self,
        engine: Engine,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        *,
        dlq_producer: KafkaProducer | None = None,
        retry_backoff_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = list(topics)
        self.handlers = dict(handlers)
        self.retry_backoff_s = retry_backoff_s
        self._stop = threading.Event()
        self._assigned = threading.Event()
        self._thread: threading.Thread | None = None
        self._own_dlq_producer = dlq_producer is None
        self._dlq_producer = dlq_producer

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"consumer-{self.group_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def wait_until_assigned(self, timeout_s: float = 30.0) -> bool:
        """True once the group gave this consumer its partitions (tests wait on this)."""
        return self._assigned.wait(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer: KafkaConsumer | None = None
            try:
                consumer = make_consumer(self.bootstrap, self.group_id, self.topics)
                self._consume(consumer)
            except Exception as exc:  # broker gone or the group fell apart: start over
                logger.warning(
                    "consumer failed; reconnecting",
                    extra={"group": self.group_id, "error": f"{type(exc).__name__}: {exc}"},
                )
                self._stop.wait(self.retry_backoff_s)
            finally:
                self._assigned.clear()
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        consumer.close(autocommit=False, timeout_ms=2000)
        if self._own_dlq_producer:
            self._close_dlq_producer()

    def _consume(self, consumer: KafkaConsumer) -> None:
        while not self._stop.is_set():
            batches = consumer.poll(timeout_ms=200)
            if consumer.assignment():
                self._assigned.set()
            done: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp, records in batches.items():
                for record in records:
                    if self._stop.is_set():
                        break
                    if not self.handle(record):
                        # Transient: come back to this message after a pause, keep what is done.
                        with contextlib.suppress(IllegalStateError):  # revoked meanwhile: not ours now
                            consumer.seek(tp, record.offset)
                        self._stop.wait(self.retry_backoff_s)
                        break
                    done[tp] = OffsetAndMetadata(record.offset + 1, None, -1)
            if done:
                # One offset commit per poll, after every handled event's DB commit: a crash
                # before it replays those events, which the idempotency table absorbs.
                try:
                    consumer.commit(done, timeout_ms=5000)
                except CommitFailedError:
                    # A rebalance moved partitions away; their new owner replays and dedups.
                    logger.info("offset commit lost to a rebalance", extra={"group": self.group_id})

    # -- one message ----------------------------------------------------------------------------
    def handle(self, record: ConsumerRecord) -> bool:
        """Process one record; False when it must be retried (the database is unavailable)."""
        try:
            event = CloudEvent.from_bytes(record.value)
        except InvalidEvent as exc:
            logger.error(
                "unreadable message; sending to the DLQ",
                extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
            )
            return self._dead_letter(record, exc)
        handler = self.handlers.get(event.type)
        if handler is None:
            return True  # not ours to handle; other groups may care
        ids = {"event_id": event.id, "event_type": event.type, "group": self.group_id}
        with bound_context(event_id=event.id, event_type=event.type):
            try:
                self._apply(handler, event)
                return True
            except _Transient:
                logger.warning("database unavailable; will retry the event", extra=ids, exc_info=True)
                return False
            except Exception as exc:
                logger.error("event handler failed; sending to the DLQ", extra=ids, exc_info=True)
                return self._dead_letter(record, exc)

    def _apply(self, handler: Handler, event: CloudEvent) -> None:
        try:
            with transaction(self.engine) as session:
                if session.get(ProcessedEvent, (self.group_id, event.id)) is not None:
                    return  # a replay: already done
                handler(session, event)
                session.add(ProcessedEvent(consumer=self.group_id, event_id=event.id, event_type=event.type))
        except IntegrityError:
            # Another member of the group recorded the same event concurrently (a rebalance).
            with Session(self.engine) as session:
                if session.get(ProcessedEvent, (self.group_id, event.id)) is not None:
                    return
            raise
        except Exception as exc:
            if _is_transient(exc):
                raise _Transient() from exc
            raise

    def _dead_letter(self, record: ConsumerRecord, exc: BaseException) -> bool:
        """Copy the original bytes to ``<topic>.dlq`` with the error in headers; False to retry."""
        headers = [
            ("error_type", type(exc).__name__.encode()),
            ("error_message", str(exc)[:2000].encode()),
            ("original_topic", record.topic.encode()),
            ("original_partition", str(record.partition).encode()),
            ("original_offset", str(record.offset).encode()),
            ("consumer_group", self.group_id.encode()),
        ]
        try:
            if self._dlq_producer is None:
                self._dlq_producer = KafkaProducer(**producer_config(self.bootstrap, f"{self.group_id}-dlq"))
            self._dlq_producer.send(
                dlq(record.topic), key=record.key, value=record.value, headers=headers
            ).get(timeout=15)
        except Exception:
            logger.warning("could not write to the DLQ; will retry the message", exc_info=True)
            if self._own_dlq_producer:
                self._close_dlq_producer()
            return False
        return True

    def _close_dlq_producer(self) -> None:
        producer, self._dlq_producer = self._dlq_producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                close_producer(producer)
