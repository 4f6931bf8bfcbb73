"""The consumer handles a poll's events in one transaction, with every promise of one event per transaction:
idempotent by event id (across batches and within one), a poison event to the DLQ alone while the others
commit, a database outage retried rather than dead-lettered, offsets committed after the database."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from relearn.devtools.broker import TansuBroker
from relearn.devtools.testing import read_from_start
from relearn.shared.events.consumer import EventConsumer
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.events.kafka import ensure_topics, producer_config
from relearn.shared.events.topics import Topic, dlq

HAPPENED = "test.happened.v1"


class Recorder:
    """A handler that writes a row per event and tags it with its transaction; its in-memory list of
    applied events follows the handler contract (undone when the transaction rolls back)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.applied: list[int] = []
        self.calls: Counter[int] = Counter()
        self.fail_first: dict[int, int] = {}  # n -> how many attempts lose the database connection
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS seen (event_id text, n int, txn text)"))

    def __call__(self, session: Session, event: CloudEvent) -> None:
        n = int(event.data["n"])
        self.calls[n] += 1
        if event.data.get("poison"):
            raise ValueError("cannot make sense of this event")
        if self.calls[n] <= self.fail_first.get(n, 0):
            # A real outage of this transaction's database connection.
            session.connection().execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        txn = session.info.get("test.txn")
        if txn is None:
            txn = session.info["test.txn"] = uuid.uuid4().hex
            undo: list[int] = []
            session.info["test.undo"] = undo

            def rolled_back(_s: Session, _previous: Any) -> None:
                for _ in undo:
                    self.applied.pop()

            sa_event.listen(session, "after_soft_rollback", rolled_back, once=True)
        session.info["test.undo"].append(n)
        self.applied.append(n)
        session.connection().execute(
            text("INSERT INTO seen (event_id, n, txn) VALUES (:id, :n, :txn)"),
            {"id": event.id, "n": n, "txn": txn},
        )

    def seen(self) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(text("SELECT n, txn FROM seen ORDER BY n"))]

    def numbers(self) -> list[int]:
        return [n for n, _ in self.seen()]


@pytest.fixture
def topic(broker: TansuBroker, unique: Callable[[str], str]) -> str:
    name = unique("batches")
    ensure_topics(broker.bootstrap, [Topic(name, 1, ()), Topic(dlq(name), 1, ())])
    return name


@pytest.fixture
def producer(broker: TansuBroker) -> Iterator[KafkaProducer]:
    p = KafkaProducer(**producer_config(broker.bootstrap, "test-batches"))
    yield p
    p.close()


def _event(n: int, **extra: Any) -> CloudEvent:
    return CloudEvent.new("/test", HAPPENED, "p1", {"n": n, **extra})


def _send(producer: KafkaProducer, topic: str, events: list[CloudEvent]) -> None:
    for e in events:
        producer.send(topic, key=e.key, value=e.to_bytes())
    producer.flush()


def _run_until(consumer: EventConsumer, predicate: Callable[[], bool], timeout_s: float = 30) -> None:
    consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)
    finally:
        consumer.stop()


@pytest.fixture
def committed(broker: TansuBroker) -> Iterator[Callable[[str, str], int | None]]:
    """The group's committed offset of the topic's partition 0, asked of the broker."""
    readers: dict[str, KafkaConsumer] = {}

    def ask(group: str, topic: str) -> int | None:
        if group not in readers:
            readers[group] = KafkaConsumer(
                bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
            )
        offset: int | None = readers[group].committed(TopicPartition(topic, 0))
        return offset

    yield ask
    for reader in readers.values():
        reader.close(autocommit=False)


def test_a_backlog_commits_in_one_transaction_with_its_processed_ids(
    pg_engine: Engine,
    broker: TansuBroker,
    topic: str,
    producer: KafkaProducer,
    unique: Callable[[str], str],
    committed: Callable[[str, str], int | None],
) -> None:
    recorder = Recorder(pg_engine)
    _send(producer, topic, [_event(n) for n in range(40)])
    group = unique("group")
    consumer = EventConsumer(pg_engine, broker.bootstrap, group, [topic], {HAPPENED: recorder})

    _run_until(consumer, lambda: len(recorder.seen()) == 40)

    seen = recorder.seen()
    assert [n for n, _ in seen] == list(range(40))
    assert len({txn for _, txn in seen}) == 1, "the 40 events of one poll share one transaction"
    with pg_engine.connect() as conn:
        processed = conn.execute(
            text("SELECT count(*) FROM processed_event WHERE consumer = :g"), {"g": group}
        ).scalar_one()
    assert processed == 40
    assert committed(group, topic) == 40


def test_a_consumer_that_is_not_batch_safe_gives_each_event_its_own_transaction(
    pg_engine: Engine,
    broker: TansuBroker,
    topic: str,
    producer: KafkaProducer,
    unique: Callable[[str], str],
    committed: Callable[[str, str], int | None],
) -> None:
    recorder = Recorder(pg_engine)
    _send(producer, topic, [_event(n) for n in range(5)])
    consumer = EventConsumer(
        pg_engine, broker.bootstrap, unique("group"), [topic], {HAPPENED: recorder}, batch_safe=False
    )

    _run_until(consumer, lambda: len(recorder.seen()) == 5)

    assert len({txn for _, txn in recorder.seen()}) == 5


def test_an_event_twice_in_one_poll_or_again_in_a_later_one_is_handled_once(
    pg_engine: Engine,
    broker: TansuBroker,
    topic: str,
    producer: KafkaProducer,
    unique: Callable[[str], str],
    committed: Callable[[str, str], int | None],
) -> None:
    recorder = Recorder(pg_engine)
    group = unique("group")
    first, second, third = _event(1), _event(2), _event(3)
    _send(producer, topic, [first, second, first])  # a duplicate inside one batch
    _run_until(
        EventConsumer(pg_engine, broker.bootstrap, group, [topic], {HAPPENED: recorder}),
        lambda: recorder.numbers() == [1, 2] and committed(group, topic) == 3,
    )
    assert recorder.calls == {1: 1, 2: 1}

    # A replay of both (the relay re-sent them), then something new: only the new one is handled.
    _send(producer, topic, [second, first, third])
    _run_until(
        EventConsumer(pg_engine, broker.bootstrap, group, [topic], {HAPPENED: recorder}),
        lambda: recorder.numbers() == [1, 2, 3] and committed(group, topic) == 6,
    )
    assert recorder.numbers() == [1, 2, 3]
    assert recorder.calls == {1: 1, 2: 1, 3: 1}


def test_a_poison_event_in_a_batch_goes_to_the_dlq_alone_and_the_others_commit(
    pg_engine: Engine,
    broker: TansuBroker,
    topic: str,
    producer: KafkaProducer,
    unique: Callable[[str], str],
    committed: Callable[[str, str], int | None],
) -> None:
    recorder = Recorder(pg_engine)
    group = unique("group")
    poison = _event(4, poison=True)
    events = [_event(1), _event(2), _event(3), poison, _event(5), _event(6)]
    _send(producer, topic, events)
    producer.send(topic, key=b"p1", value=b"{not an envelope").get(10)  # never joins a batch
    _send(producer, topic, [_event(7), _event(8)])

    _run_until(
        EventConsumer(pg_engine, broker.bootstrap, group, [topic], {HAPPENED: recorder}, retry_backoff_s=0.2),
        lambda: committed(group, topic) == 9,
    )

    assert recorder.numbers() == [1, 2, 3, 5, 6, 7, 8]
    # The handler's in-memory effects of the rolled-back batch were undone before its events were replayed.
    assert sorted(recorder.applied) == [1, 2, 3, 5, 6, 7, 8]
    dead = read_from_start(broker.bootstrap, dlq(topic), 2)
    assert [dict(d.headers)["error_type"] for d in dead] == [b"ValueError", b"InvalidEvent"]
    assert CloudEvent.from_bytes(dead[0].value) == poison
    assert dict(dead[0].headers)["original_offset"] == b"3"
    assert dead[1].value == b"{not an envelope"


def test_a_database_outage_in_a_batch_is_retried_not_dead_lettered(
    pg_engine: Engine,
    broker: TansuBroker,
    topic: str,
    producer: KafkaProducer,
    unique: Callable[[str], str],
    committed: Callable[[str, str], int | None],
) -> None:
    recorder = Recorder(pg_engine)
    # Event 3 loses the connection in the batch and again when handled alone: the consumer must wait and
    # retry it (it is not poison) while 1 and 2 stay committed.
    recorder.fail_first[3] = 2
    group = unique("group")
    _send(producer, topic, [_event(n) for n in range(1, 6)])
    sentinel = _event(99, poison=True)  # the first dead letter must be this one
    _send(producer, topic, [sentinel])

    _run_until(
        EventConsumer(pg_engine, broker.bootstrap, group, [topic], {HAPPENED: recorder}, retry_backoff_s=0.2),
        lambda: committed(group, topic) == 6,
    )

    assert recorder.numbers() == [1, 2, 3, 4, 5]
    assert recorder.calls[3] >= 3
    assert sorted(recorder.applied) == [1, 2, 3, 4, 5]
    dead = read_from_start(broker.bootstrap, dlq(topic), 1)
    assert CloudEvent.from_bytes(dead[0].value) == sentinel


def test_a_poll_stuck_inside_the_kafka_client_is_broken_off_and_the_consumer_made_again(
    pg_engine: Engine,
    broker: TansuBroker,
    topic: str,
    producer: KafkaProducer,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kafka-python 3.0.12 can wait forever inside ``poll`` after a broker SIGKILL (its network loop waits on
    an event without a timeout; seen in the reliability suite's R1). The first consumer here is stuck the same
    way - waiting in its network loop on a future nobody completes - and the consumer still handles every
    event, through a new client."""
    from kafka.future import Future

    from relearn.shared.events import consumer as consumer_module

    made: list[KafkaConsumer] = []
    real_make = consumer_module.make_consumer

    def make(*args: Any, **kwargs: Any) -> KafkaConsumer:
        client = real_make(*args, **kwargs)
        if not made:
            never = Future()

            def stuck_poll(*_a: Any, **_k: Any) -> Any:
                client._net.run(client._manager.wait_for, never, None)  # no timeout, as in 3.0.12
                raise AssertionError("a future nobody completes completed")

            client.poll = stuck_poll  # type: ignore[method-assign]
        made.append(client)
        return client

    monkeypatch.setattr(consumer_module, "make_consumer", make)
    recorder = Recorder(pg_engine)
    _send(producer, topic, [_event(n) for n in range(10)])
    consumer = EventConsumer(
        pg_engine, broker.bootstrap, unique("group"), [topic], {HAPPENED: recorder}, stall_timeout_s=2.0
    )

    _run_until(consumer, lambda: len(recorder.seen()) == 10)

    assert recorder.numbers() == list(range(10))
    assert len(made) >= 2, "the stuck client was replaced"
