"""The outbox: staged with the state, published after commit, never lost, never by cursor."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka import errors as kafka_errors
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from relearn.devtools.broker import TansuBroker
from relearn.shared.db import make_engine, transaction
from relearn.shared.events.consumer import EventConsumer
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.events.kafka import TopicGuard, admin_client
from relearn.shared.events.outbox import OutboxDeadLetter, OutboxEvent, OutboxRelay, outbox_counts, stage
from relearn.shared.events.topics import Topic, dlq
from relearn.shared.migrations import upgrade


def _event(n: int, subject: str = "p1") -> CloudEvent:
    return CloudEvent.new("/test", "observation.recorded.v1", subject, {"n": n})


def _read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[CloudEvent]:
    """Every event on ``topic`` from the start; no consumer group, so no join to wait for."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    got: list[CloudEvent] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not (partitions := consumer.partitions_for_topic(topic)):
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            time.sleep(0.1)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(CloudEvent.from_bytes(r.value) for r in records)
    finally:
        consumer.close()
    return got


def _unpublished(engine: Engine) -> list[OutboxEvent]:
    with Session(engine) as s:
        return list(s.exec(select(OutboxEvent).where(OutboxEvent.published_at.is_(None))).all())  # type: ignore[union-attr]


def test_event_staged_in_a_rolled_back_transaction_is_never_published(
    pg_engine: Engine, broker: TansuBroker
) -> None:
    with pytest.raises(RuntimeError), transaction(pg_engine) as session:
        stage(session, _event(1))
        raise RuntimeError("the state change failed")
    assert _unpublished(pg_engine) == []
    relay = OutboxRelay(pg_engine, broker.bootstrap, "test-relay")
    assert relay.relay_once() == 0
    relay.stop()


def test_committed_events_are_published_in_order_and_marked(
    pg_engine: Engine, broker: TansuBroker, unique: Callable[[str], str]
) -> None:
    topic = unique("outbox-order")
    for n in range(5):
        with transaction(pg_engine) as session:
            stage(session, _event(n), topic=topic)
    relay = OutboxRelay(pg_engine, broker.bootstrap, "test-relay")
    assert relay.relay_once() == 5
    assert _unpublished(pg_engine) == []
    got = _read_all(broker.bootstrap, topic, 5)
    assert [e.data["n"] for e in got] == [0, 1, 2, 3, 4]  # one key, one partition: order kept
    relay.stop()


def test_a_row_that_commits_after_a_later_one_is_still_published(
    pg_engine: Engine, broker: TansuBroker, unique: Callable[[str], str]
) -> None:
    """seq 1 is taken first but commits last; a 'last seq seen' cursor would skip it forever."""
    topic = unique("outbox-late")
    relay = OutboxRelay(pg_engine, broker.bootstrap, "test-relay")
    early_taken = threading.Event()
    release = threading.Event()

    def slow_writer() -> None:
        with transaction(pg_engine) as session:
            stage(session, _event(1, "late"), topic=topic)
            session.flush()  # takes its seq now
            early_taken.set()
            release.wait(10)

    t = threading.Thread(target=slow_writer)
    t.start()
    assert early_taken.wait(10)
    with transaction(pg_engine) as session:
        stage(session, _event(2, "early"), topic=topic)
    assert relay.relay_once() == 1  # only the committed one is visible
    release.set()
    t.join()
    assert relay.relay_once() == 1  # the late one is found, not skipped
    got = _read_all(broker.bootstrap, topic, 2)
    assert sorted(e.data["n"] for e in got) == [1, 2]
    relay.stop()


def test_only_one_relay_per_postgres_database_publishes_at_a_time(
    pg_engine: Engine, broker: TansuBroker, unique: Callable[[str], str]
) -> None:
    topic = unique("outbox-one-relay")
    with transaction(pg_engine) as session:
        stage(session, _event(1), topic=topic)
    in_send, release = threading.Event(), threading.Event()

    class SlowRelay(OutboxRelay):
        def _publish(self, rows: Sequence[Any]) -> dict[int, str]:
            in_send.set()
            release.wait(10)
            return super()._publish(rows)

    first = SlowRelay(pg_engine, broker.bootstrap, "relay-a")
    second = OutboxRelay(pg_engine, broker.bootstrap, "relay-b")
    counts: list[int] = []
    t = threading.Thread(target=lambda: counts.append(first.relay_once()))
    t.start()
    try:
        assert in_send.wait(10)
        assert second.relay_once() == 0  # the first relay is mid-batch: the second keeps out
    finally:
        release.set()
        t.join()
    assert counts == [1]
    assert second.relay_once() == 0  # nothing left: the event went out once
    assert len(_read_all(broker.bootstrap, topic, 1)) == 1
    first.stop()
    second.stop()


def test_event_written_during_a_broker_outage_arrives_once_after_the_broker_returns(
    pg_engine: Engine, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    own = TansuBroker(log_dir=tmp_path)
    own.start()
    topic = unique("outbox-outage")
    with pg_engine.begin() as conn:
        conn.execute(text("CREATE TABLE seen (event_id text, n int)"))

    def record(session: Session, event: CloudEvent) -> None:
        session.connection().execute(
            text("INSERT INTO seen (event_id, n) VALUES (:id, :n)"), {"id": event.id, "n": event.data["n"]}
        )

    relay = OutboxRelay(
        pg_engine, own.bootstrap, "test-relay", poll_interval_s=0.1, ack_timeout_s=2, max_backoff_s=1
    )
    consumer = EventConsumer(
        pg_engine,
        own.bootstrap,
        unique("group"),
        [topic],
        {"observation.recorded.v1": record},
        retry_backoff_s=0.2,
    )
    try:
        relay.start()
        consumer.start()
        with transaction(pg_engine) as session:
            stage(session, _event(0), topic=topic)
        _wait(lambda: _seen(pg_engine) == [0], "delivery before the outage")

        own.stop()
        with transaction(pg_engine) as session:  # the write does not depend on the broker
            stage(session, _event(1), topic=topic)
        _wait(lambda: _attempts(pg_engine) >= 1, "the relay to try and fail")
        [pending] = _unpublished(pg_engine)
        assert pending.last_error

        own.start()  # same port, empty memory: topic, log and group offsets are gone
        _wait(lambda: _seen(pg_engine) == [0, 1], "delivery after the broker returned")
        assert _unpublished(pg_engine) == []

        # The relay dies between the broker's ack and marking the row: it sends the event again.
        with pg_engine.begin() as conn:
            conn.execute(
                text("UPDATE outbox_event SET published_at = NULL WHERE event_id = :id"),
                {"id": pending.event_id},
            )
        with transaction(pg_engine) as session:
            stage(session, _event(2), topic=topic)  # same key, so it queues behind the duplicate
        _wait(lambda: _seen(pg_engine) == [0, 1, 2], "the next event")
        assert [e.data["n"] for e in _read_all(own.bootstrap, topic, 3)] == [1, 1, 2]
    finally:
        consumer.stop()
        relay.stop()
        own.stop()
    assert _seen(pg_engine) == [0, 1, 2]  # the duplicate changed nothing
    # The producer that was live when the broker died is closed too, not left retrying.
    assert not [t.name for t in threading.enumerate() if t.name.startswith("test-relay")]


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = 45) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _seen(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT n FROM seen ORDER BY n"))]


def _attempts(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(attempts), 0) FROM outbox_event")).scalar_one())


def test_outbox_works_on_the_embedded_sqlite_default(
    tmp_path: Path, broker: TansuBroker, unique: Callable[[str], str]
) -> None:
    url = f"sqlite:///{tmp_path / 'evaluation.db'}"
    upgrade("relearn.evaluation", url)
    engine = make_engine(url)
    topic = unique("outbox-sqlite")
    relay = OutboxRelay(engine, broker.bootstrap, "sqlite-relay", poll_interval_s=0.1)
    relay.start()
    with transaction(engine) as session:
        stage(session, _event(42), topic=topic)
    got = _read_all(broker.bootstrap, topic, 1)
    assert got[0].data == {"n": 42}
    relay.stop()
    assert _unpublished(engine) == []


def _dead_letters(engine: Engine) -> list[OutboxDeadLetter]:
    with Session(engine) as s:
        return list(s.exec(select(OutboxDeadLetter)).all())


def test_a_row_that_can_never_be_published_is_moved_aside_and_the_rest_flow_on(
    pg_engine: Engine, broker: TansuBroker, unique: Callable[[str], str]
) -> None:
    """An event larger than the producer's 1 MB request limit: dead-lettered with the reason, once."""
    topic = unique("outbox-poison")
    huge = CloudEvent.new("/test", "observation.recorded.v1", "p1", {"n": 1, "blob": "x" * 2_000_000})
    for event in (_event(0), huge, _event(2)):
        with transaction(pg_engine) as session:
            stage(session, event, topic=topic)
    relay = OutboxRelay(pg_engine, broker.bootstrap, "test-relay")
    try:
        assert relay.relay_once() == 2
        assert relay.relay_once() == 0  # nothing left to retry: the poison row no longer blocks
    finally:
        relay.stop()
    got = _read_all(broker.bootstrap, topic, 2)
    assert [e.data["n"] for e in got] == [0, 2]
    (dead,) = _dead_letters(pg_engine)
    assert dead.event_id == huge.id and dead.topic == topic
    assert dead.reason.startswith("MessageSizeTooLargeError")
    assert outbox_counts(pg_engine) == {"pending": 0, "deadLettered": 1}


def test_published_rows_are_purged_after_the_retention(
    pg_engine: Engine, broker: TansuBroker, unique: Callable[[str], str]
) -> None:
    topic = unique("outbox-purge")
    for n in range(3):
        with transaction(pg_engine) as session:
            stage(session, _event(n), topic=topic)
    relay = OutboxRelay(pg_engine, broker.bootstrap, "test-relay", retention_s=3600)
    try:
        assert relay.relay_once() == 3
    finally:
        relay.stop()
    with transaction(pg_engine) as session:  # committed after the relay ran: not published yet
        stage(session, _event(3), topic=topic)
    now = datetime.now(UTC)
    assert relay.purge_published(now) == 0  # published seconds ago, kept for an hour
    assert relay.purge_published(now + timedelta(hours=2)) == 3
    remaining = [CloudEvent.from_bytes(r.payload).data["n"] for r in _unpublished(pg_engine)]
    assert remaining == [3]


def _partitions(bootstrap: str, *topics: str) -> dict[str, int]:
    admin = admin_client(bootstrap)
    try:
        return {d["name"]: len(d["partitions"]) for d in admin.describe_topics(list(topics))}
    finally:
        admin.close()


def test_dead_letter_topics_a_broker_restart_lost_come_back_as_declared(
    pg_engine: Engine, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    """The memory engine forgets every topic on restart, and nobody asks for a dead-letter topic until an
    event fails: the relay's guard re-creates it as declared (1 partition; Tansu's default is 4). The
    relay's events reach the event topic again."""
    own = TansuBroker(log_dir=tmp_path)
    own.start()
    topic = unique("guarded")
    guard = TopicGuard(own.bootstrap, [Topic(topic, 3, ()), Topic(dlq(topic), 1, ())], every_s=1.0)
    relay = OutboxRelay(
        pg_engine,
        own.bootstrap,
        "test-relay",
        poll_interval_s=0.1,
        ack_timeout_s=2,
        max_backoff_s=1,
        topic_guard=guard,
    )
    try:
        relay.start()
        with transaction(pg_engine) as session:
            stage(session, _event(0), topic=topic)
        _wait(lambda: _unpublished(pg_engine) == [], "publication before the restart")
        assert _partitions(own.bootstrap, topic, dlq(topic)) == {topic: 3, dlq(topic): 1}
        assert guard.recreated == 2

        own.restart()  # same port, empty memory: no topics at all
        with transaction(pg_engine) as session:
            stage(session, _event(1), topic=topic)
        _wait(lambda: _unpublished(pg_engine) == [], "publication after the restart")
        assert [e.data["n"] for e in _read_all(own.bootstrap, topic, 1)] == [1]
        # Nobody asks for the dead-letter topic: only the guard can have made it (describing does not).
        _wait(lambda: _partitions(own.bootstrap, dlq(topic))[dlq(topic)] > 0, "the dead-letter topic")
        assert _partitions(own.bootstrap, dlq(topic)) == {dlq(topic): 1}
        assert guard.recreated >= 3
    finally:
        relay.stop()
        own.stop()


class _Sent:
    """A send already answered by the (fake) broker: acknowledged, or failed with ``error``."""

    def __init__(self, error: Exception | None) -> None:
        self.is_done = True
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


class _AnsweringProducer:
    """A boundary fake of the broker's answers: the event numbered ``n`` fails with ``errors[n]``."""

    def __init__(self, errors: dict[int, Exception]) -> None:
        self.errors = errors
        self.sent: list[int] = []

    def send(self, topic: str, *, key: bytes, value: bytes, headers: Any) -> _Sent:
        n = CloudEvent.from_bytes(value).data["n"]
        self.sent.append(n)
        return _Sent(self.errors.get(n))

    def close(self, timeout: float | None = None) -> None:
        pass


def _stage_three(engine: Engine, topic: str) -> None:
    for n in range(3):
        with transaction(engine) as session:
            stage(session, _event(n), topic=topic)


def test_a_record_the_broker_refuses_as_invalid_is_dead_lettered_and_the_others_marked(
    pg_engine: Engine, unique: Callable[[str], str]
) -> None:
    _stage_three(pg_engine, unique("refused"))
    relay = OutboxRelay(pg_engine, "127.0.0.1:1", "test-relay")
    relay._producer = _AnsweringProducer({1: kafka_errors.InvalidRecordError("refused by the broker")})  # type: ignore[assignment]
    assert relay.relay_once() == 2
    assert _unpublished(pg_engine) == []
    (dead,) = _dead_letters(pg_engine)
    assert CloudEvent.from_bytes(dead.payload).data["n"] == 1
    assert dead.reason.startswith("InvalidRecordError")


def test_a_transient_broker_error_retries_the_whole_batch_in_order(
    pg_engine: Engine, unique: Callable[[str], str]
) -> None:
    _stage_three(pg_engine, unique("transient"))
    relay = OutboxRelay(pg_engine, "127.0.0.1:1", "test-relay")
    flaky = _AnsweringProducer({1: kafka_errors.NotLeaderForPartitionError("leader moved")})
    relay._producer = flaky  # type: ignore[assignment]
    with pytest.raises(kafka_errors.NotLeaderForPartitionError):
        relay.relay_once()
    assert len(_unpublished(pg_engine)) == 3 and _dead_letters(pg_engine) == []
    healthy = _AnsweringProducer({})
    relay._producer = healthy  # type: ignore[assignment]
    assert relay.relay_once() == 3
    assert (flaky.sent, healthy.sent) == ([0, 1, 2], [0, 1, 2])  # sent again from the first, in order
