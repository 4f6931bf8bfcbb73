"""The consumer runner: Kafka in a worker thread, a poll's events in one DB transaction, idempotent.

Each poll's records are handled in batches of up to ``max_batch`` (in each partition's order), one
transaction per batch: read the envelopes; skip types without a handler (other groups may care); look the
batch's event ids up in ``processed_event`` in one query and skip those already there (and an id seen
earlier in the same batch); run the handlers of the rest; record their ids in one INSERT; commit; then, once
per poll, commit the Kafka offsets. A crash between the two replays the batch, which the idempotency table
absorbs.

If anything in a batch fails, the batch rolls back and its records are handled again one transaction per
event (as always with ``batch_safe=False``): a message that cannot be handled goes to ``<topic>.dlq`` with the
error in its headers and the others commit; a database outage is not the message's fault, so that message
and the rest of the poll are retried after a pause. An unreadable message never joins a batch: it goes to
the DLQ between the batches before and after it.

Handlers run inside the consumer's transaction and never commit. Their contract, because of batches:

- the transaction holds the other events of the batch: a handler sees the writes of the events before it
  (SQL and ORM autoflush alike) and its locks are held until the batch commits;
- a handler can run more than once for one event without the first run counting: after a batch rolls back
  (because of another event, or the commit) every event of it is handled again, alone. Whatever a handler
  keeps outside the database (in-memory state, caches) must be undone when the session rolls back (listen
  for ``after_soft_rollback`` on the session, as the device gateway's metrics processor does) or be
  harmless to repeat; effects on the outside world belong after the commit (``after_commit``, which fires
  once per batch);
- a handler that needs a transaction of its own per event: give its consumer ``batch_safe=False``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, IllegalStateError
from sqlalchemy import Table, insert, select
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
Decoded = CloudEvent | InvalidEvent

# Ids per ``IN (...)`` lookup: well under any database's limit on bound parameters.
_LOOKUP_CHUNK = 500


class ProcessedEvent(SQLModel, table=True):
    __tablename__ = "processed_event"

    consumer: str = Field(primary_key=True, max_length=128)
    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=255)
    processed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


_PROCESSED: Table = ProcessedEvent.__table__  # type: ignore[attr-defined]


class _Stalled(Exception):
    """The client polls and gets nothing although its partitions have records: make it again, slower."""


class _Transient(Exception):
    """The database is unavailable: retry the same message later."""


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


class EventConsumer:
    """Consumes ``topics`` as consumer group ``group_id`` and dispatches by event type.

    ``dlq_producer``: a producer to write dead letters with (left open on ``stop``); by
    default the consumer makes its own when the first dead letter comes. ``max_batch``: at most this
    many records per transaction (a poll has at most ``max_poll_records``, 200). ``batch_safe=False``:
    one transaction per event, for handlers that cannot share one (see the module docstring).

    ``stall_timeout_s``: a consumer that got no record for this long while one of its partitions has
    records past its position is starved: its fetches give up (``fetch_max_wait_ms``; it was 50 ms, now a
    second) before the broker has read the records. Tansu's ``s3`` storage engine after a restart reads
    from S3 more slowly than that on a busy machine, and the reliability suite's R1 saw the metrics
    processor get nothing, for good, after a broker SIGKILL (a client with a 500 ms wait read the same
    partition at once). The consumer is then made again fetching with ``slow_fetch_wait_ms`` waits (and
    keeps them). A call into the client (poll, commit, close) that has not returned after
    ``stall_timeout_s`` is broken off and the client made again (kafka-python 3.0.x's network loop waits
    without a timeout, upstream issue #3121).

    ``lost_log_check_s`` (off by default; the subscriptions notifier sets it): while idle, this often the
    consumer checks that no partition's log ends before its
    position (records it read are gone: a broker that lost its log and committed offsets); a partition seen so
    twice in a row, its position unmoved, is read again from its earliest record, the processed-event table
    skipping what was handled.
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
        max_batch: int = 500,
        batch_safe: bool = True,
        stall_timeout_s: float = 45.0,
        slow_fetch_wait_ms: int = 1000,
        lost_log_check_s: float | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.engine = engine
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = list(topics)
        self.handlers = dict(handlers)
        self.retry_backoff_s = retry_backoff_s
        self.max_batch = max_batch
        self.batch_safe = batch_safe
        self._stop = threading.Event()
        self._assigned = threading.Event()
        self._thread: threading.Thread | None = None
        self._own_dlq_producer = dlq_producer is None
        self._dlq_producer = dlq_producer
        self.stall_timeout_s = stall_timeout_s
        self.slow_fetch_wait_ms = slow_fetch_wait_ms
        self.lost_log_check_s = lost_log_check_s
        self._past_end: dict[TopicPartition, int] = {}  # partitions seen past their log's end, and where
        self._fetch_wait_ms: int | None = None  # set once starved: a broker whose reads are slow
        self._polling: tuple[KafkaConsumer, float] | None = None  # the consumer in poll() since when
        self._watchdog: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"consumer-{self.group_id}", daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch, name=f"watchdog-{self.group_id}", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        """Break off a ``poll`` stuck past ``stall_timeout_s``: stopping the client's network loop fails
        the wait it is stuck in, ``poll`` raises and :meth:`_run` makes a new consumer."""
        while not self._stop.wait(min(5.0, self.stall_timeout_s / 3)):
            polling = self._polling
            if polling is None or time.monotonic() - polling[1] < self.stall_timeout_s:
                continue
            logger.warning(
                "consumer poll stuck; making the consumer again",
                extra={"group": self.group_id, "stuck_s": round(time.monotonic() - polling[1], 1)},
            )
            self._polling = None
            net = getattr(polling[0], "_net", None)
            with contextlib.suppress(Exception):
                if net is not None:
                    net.stop(timeout_ms=1000)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._watchdog is not None:
            self._watchdog.join(timeout_s)
            self._watchdog = None

    def wait_until_assigned(self, timeout_s: float = 30.0) -> bool:
        """True once the group gave this consumer its partitions (tests wait on this)."""
        return self._assigned.wait(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer: KafkaConsumer | None = None
            try:
                slow = {} if self._fetch_wait_ms is None else {"fetch_max_wait_ms": self._fetch_wait_ms}
                consumer = make_consumer(self.bootstrap, self.group_id, self.topics, **slow)
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
                    with contextlib.suppress(Exception), self._guarded(consumer):
                        consumer.close(autocommit=False, timeout_ms=2000)
        if self._own_dlq_producer:
            self._close_dlq_producer()

    def _consume(self, consumer: KafkaConsumer) -> None:
        last_record = last_end_check = time.monotonic()
        while not self._stop.is_set():
            with self._guarded(consumer):
                # A second per poll while nothing comes (idle means idle, issue 16): each poll wakes the
                # client's network thread; records still arrive at once (the fetch is answered when they do).
                polled = consumer.poll(timeout_ms=1000)
            if consumer.assignment():
                self._assigned.set()
            now = time.monotonic()
            if polled:
                last_record = now
            elif now - last_record > self.stall_timeout_s:
                last_record = now
                self._check_not_starved(consumer)
            if (
                self.lost_log_check_s is not None
                and not polled
                and now - last_end_check > self.lost_log_check_s
            ):
                last_end_check = now
                self._check_not_past_end(consumer)
            # Each partition's records in order; a batch may span partitions (their order is independent).
            records = [record for partition in polled.values() for record in partition]
            handled = 0
            while handled < len(records) and not self._stop.is_set():
                chunk = records[handled : handled + self.max_batch]
                n = self.handle_batch(chunk)
                handled += n
                if n < len(chunk):
                    # Transient: come back to the rest of the poll after a pause, keep what is done.
                    self._rewind(consumer, records[handled:])
                    self._stop.wait(self.retry_backoff_s)
                    break
            done = {
                TopicPartition(r.topic, r.partition): OffsetAndMetadata(r.offset + 1, None, -1)
                for r in records[:handled]
            }
            if done:
                # One offset commit per poll, after the DB commits of every event handled: a crash
                # before it replays those events, which the idempotency table absorbs.
                try:
                    with self._guarded(consumer):  # 3.0.12's commit ignores its timeout too (upstream #3121)
                        consumer.commit(done, timeout_ms=5000)
                except CommitFailedError:
                    # A rebalance moved partitions away; their new owner replays and dedups.
                    logger.info("offset commit lost to a rebalance", extra={"group": self.group_id})

    def _check_not_starved(self, consumer: KafkaConsumer) -> None:
        """Raise :class:`_Stalled` when an assigned partition has records past this consumer's position
        although its polls have brought nothing for ``stall_timeout_s``; the next client waits longer
        for each fetch (``slow_fetch_wait_ms``)."""
        assigned = list(consumer.assignment())
        if not assigned or self._fetch_wait_ms is not None:
            return
        with self._guarded(consumer):
            ends = consumer.end_offsets(assigned)
            behind = {tp: ends[tp] - consumer.position(tp) for tp in assigned if tp in ends}
        waiting = sum(n for n in behind.values() if n > 0)
        if waiting:
            self._fetch_wait_ms = self.slow_fetch_wait_ms
            raise _Stalled(
                f"no record for {self.stall_timeout_s:.0f} s while {waiting} wait: fetching with "
                f"{self.slow_fetch_wait_ms} ms waits from now on"
            )

    def _check_not_past_end(self, consumer: KafkaConsumer) -> None:
        """A partition whose log now ends before this consumer's position lost records the consumer had
        read (a broker that forgot its log and the group's offsets: Tansu's memory engine restarted, a
        topic deleted and made again). Its fetches would wait for offsets that no longer exist, for ever:
        read it again from its earliest record instead; events handled before are skipped by their id
        (the processed-event table). Acted on when two checks in a row see it with the position unmoved (a
        broker's listed end can trail what a fetch just returned while records are being written)."""
        assigned = list(consumer.assignment())
        if not assigned:
            self._past_end = {}
            return
        with self._guarded(consumer):
            ends = consumer.end_offsets(assigned)
            now = {tp: consumer.position(tp) for tp in assigned if tp in ends}
        past = {tp: at for tp, at in now.items() if at is not None and at > ends[tp]}
        lost = [tp for tp, at in past.items() if self._past_end.get(tp) == at]
        self._past_end = {tp: at for tp, at in past.items() if tp not in lost}
        if lost:
            logger.warning(
                "partition log ends before the consumer's position; reading it again from the earliest",
                extra={
                    "group": self.group_id,
                    "partitions": {f"{tp.topic}[{tp.partition}]": [past[tp], ends[tp]] for tp in lost},
                },
            )
            with self._guarded(consumer):
                consumer.seek_to_beginning(*lost)

    @contextlib.contextmanager
    def _guarded(self, consumer: KafkaConsumer) -> Iterator[None]:
        """Watched by :meth:`_watch` while inside: a call into the client that must not hang."""
        self._polling = (consumer, time.monotonic())
        try:
            yield
        finally:
            self._polling = None

    @staticmethod
    def _rewind(consumer: KafkaConsumer, rest: Sequence[ConsumerRecord]) -> None:
        """Make the next poll start each partition at its first record in ``rest`` (records not handled)."""
        first: dict[TopicPartition, int] = {}
        for record in rest:
            first.setdefault(TopicPartition(record.topic, record.partition), record.offset)
        for tp, offset in first.items():
            with contextlib.suppress(IllegalStateError):  # revoked meanwhile: not ours now
                consumer.seek(tp, offset)

    # -- a batch ----------------------------------------------------------------------------------
    def handle_batch(self, records: Sequence[ConsumerRecord]) -> int:
        """Process ``records`` (in order); returns how many of the first ones are done, the rest to retry."""
        items = [(record, _decode(record)) for record in records]
        if not self.batch_safe:
            return self._one_by_one(items)
        handled = 0
        run: list[tuple[ConsumerRecord, CloudEvent]] = []
        for record, decoded in items:
            if isinstance(decoded, CloudEvent):
                run.append((record, decoded))
                continue
            # Unreadable: the batch before it, then the message alone (to the DLQ), then go on.
            n = self._batch(run)
            handled += n
            if n < len(run) or not self._handle_one(record, decoded):
                return handled
            handled += 1
            run = []
        return handled + self._batch(run)

    def _batch(self, items: Sequence[tuple[ConsumerRecord, CloudEvent]]) -> int:
        work = [(event, h) for _, event in items if (h := self.handlers.get(event.type)) is not None]
        if len(work) <= 1:  # nothing to share a transaction with
            return self._one_by_one(items)
        try:
            self._apply_batch(work)
        except Exception as exc:
            # Rolled back: find the culprit (or wait out the outage) one event at a time.
            logger.warning(
                "event batch failed; handling its events one transaction each",
                extra={
                    "group": self.group_id,
                    "events": len(work),
                    "error": f"{type(exc).__name__}: {exc}"[:500],
                },
            )
            return self._one_by_one(items)
        return len(items)

    def _apply_batch(self, work: Sequence[tuple[CloudEvent, Handler]]) -> None:
        with transaction(self.engine) as session:
            seen = self._processed(session, [event.id for event, _ in work])
            rows: list[dict[str, object]] = []
            now = datetime.now(UTC)
            for event, handler in work:
                if event.id in seen:
                    continue  # a replay, or the same event twice in this batch
                seen.add(event.id)
                with bound_context(event_id=event.id, event_type=event.type):
                    handler(session, event)
                rows.append(
                    {
                        "consumer": self.group_id,
                        "event_id": event.id,
                        "event_type": event.type,
                        "processed_at": now,
                    }
                )
            if rows:
                session.execute(insert(_PROCESSED), rows)

    def _processed(self, session: Session, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` this group has processed already."""
        unique = list(dict.fromkeys(ids))
        found: set[str] = set()
        for i in range(0, len(unique), _LOOKUP_CHUNK):
            query = select(_PROCESSED.c.event_id).where(
                _PROCESSED.c.consumer == self.group_id,
                _PROCESSED.c.event_id.in_(unique[i : i + _LOOKUP_CHUNK]),
            )
            found.update(session.execute(query).scalars())
        return found

    def _one_by_one(self, items: Sequence[tuple[ConsumerRecord, Decoded]]) -> int:
        for i, (record, decoded) in enumerate(items):
            if self._stop.is_set() or not self._handle_one(record, decoded):
                return i
        return len(items)

    # -- one message ----------------------------------------------------------------------------
    def handle(self, record: ConsumerRecord) -> bool:
        """Process one record in its own transaction; False when it must be retried (database unavailable)."""
        return self._handle_one(record, _decode(record))

    def _handle_one(self, record: ConsumerRecord, decoded: Decoded) -> bool:
        if isinstance(decoded, InvalidEvent):
            logger.error(
                "unreadable message; sending to the DLQ",
                extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
            )
            return self._dead_letter(record, decoded)
        event = decoded
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


def _decode(record: ConsumerRecord) -> Decoded:
    try:
        return CloudEvent.from_bytes(record.value)
    except InvalidEvent as exc:
        return exc
