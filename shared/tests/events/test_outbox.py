"""The outbox: staged with the state, published after commit, never lost, never by cursor."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from relearn.devtools.broker import TansuBroker
from relearn.shared.db import make_engine, transaction
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.events.kafka import consumer_config
from relearn.shared.events.outbox import OutboxEvent, OutboxRelay, stage
from relearn.shared.migrations import upgrade


def _event(n: int, subject: str = "p1") -> CloudEvent:
    return CloudEvent.new("/test", "observation.recorded.v1", subject, {"n": n})


def _read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[CloudEvent]:
    consumer = KafkaConsumer(topic, **consumer_config(bootstrap, f"reader-{topic}"))
    got: list[CloudEvent] = []
    try:
        import time

        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(CloudEvent.from_bytes(r.value) for r in records)
    finally:
        consumer.close()
    return got


def _unpublished(engine: Engine) -> list[OutboxEvent]:
    with Session(engine) as s:
        return list(s.exec(select(OutboxEvent).where(OutboxEvent.published_at.is_(None))).all())  # type: ignore[union-attr]


def test_event_staged_in_a_rolled_back_transaction_never_exists(pg_engine: Engine) -> None:
    with pytest.raises(RuntimeError), transaction(pg_engine) as session:
        stage(session, _event(1))
        raise RuntimeError("the state change failed")
    assert _unpublished(pg_engine) == []


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


def test_broker_down_keeps_events_until_it_returns(
    pg_engine: Engine, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    own = TansuBroker(log_dir=tmp_path)
    own.start()
    topic = unique("outbox-outage")
    relay = OutboxRelay(pg_engine, own.bootstrap, "test-relay", ack_timeout_s=3)
    own.stop()
    with transaction(pg_engine) as session:
        stage(session, _event(1), topic=topic)
    with pytest.raises(Exception):  # noqa: B017 - any client error: the broker is gone
        relay.relay_once()
    [row] = _unpublished(pg_engine)
    assert row.attempts == 1 and row.last_error
    own.start()
    relay.stop()  # drop the failed producer; a fresh one connects
    assert relay.relay_once() == 1
    assert _read_all(own.bootstrap, topic, 1)[0].data == {"n": 1}
    relay.stop()
    own.stop()


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
