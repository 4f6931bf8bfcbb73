"""The consumer runner: idempotent by event id, poison to the DLQ, the rest keeps flowing."""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka import KafkaProducer
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from relearn.devtools.broker import TansuBroker
from relearn.devtools.testing import read_from_start
from relearn.shared.events.consumer import EventConsumer
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.events.kafka import ensure_topics, producer_config
from relearn.shared.events.topics import Topic, dlq


def _make_seen_table(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS seen (event_id text, n int)"))


def _seen(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT n FROM seen ORDER BY n"))]


def _record(session: Session, event: CloudEvent) -> None:
    if event.data.get("poison"):
        raise ValueError("cannot make sense of this event")
    if event.data.get("lose_connection") and event.id not in _connection_lost:
        # A real outage of this handler's database connection, once per event.
        _connection_lost.add(event.id)
        session.connection().execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    session.connection().execute(
        text("INSERT INTO seen (event_id, n) VALUES (:id, :n)"), {"id": event.id, "n": event.data["n"]}
    )


_connection_lost: set[str] = set()


def _wait(predicate: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_replay_is_handled_once_poison_goes_to_the_dlq_and_a_db_outage_is_retried(
    pg_engine: Engine, broker: TansuBroker, unique: Callable[[str], str]
) -> None:
    topic = unique("consumer")
    ensure_topics(broker.bootstrap, [Topic(topic, 1, ()), Topic(dlq(topic), 1, ())])
    _make_seen_table(pg_engine)
    producer = KafkaProducer(**producer_config(broker.bootstrap, "test-producer"))
    first = CloudEvent.new("/test", "test.happened.v1", "p1", {"n": 1})
    unknown = CloudEvent.new("/test", "test.unheard-of.v1", "p1", {"n": 99})
    flaky = CloudEvent.new("/test", "test.happened.v1", "p1", {"n": 2, "lose_connection": True})
    poison = CloudEvent.new("/test", "test.happened.v1", "p1", {"n": 3, "poison": True})
    after = CloudEvent.new("/test", "test.happened.v1", "p1", {"n": 4})
    for e in (first, first, unknown, flaky, poison):  # `first` twice: a replay
        producer.send(topic, key=e.key, value=e.to_bytes())
    producer.send(topic, key=b"p1", value=b"{not an envelope")
    producer.send(topic, key=after.key, value=after.to_bytes())
    producer.flush()
    producer.close()

    consumer = EventConsumer(
        pg_engine,
        broker.bootstrap,
        unique("group"),
        [topic],
        {"test.happened.v1": _record},
        retry_backoff_s=0.2,
    )
    consumer.start()
    try:
        _wait(lambda: _seen(pg_engine) == [1, 2, 4])
    finally:
        consumer.stop()
    # The replay changed nothing, the lost connection was retried, the poison did not block `after`.
    assert _seen(pg_engine) == [1, 2, 4]
    assert flaky.id in _connection_lost

    dead = read_from_start(broker.bootstrap, dlq(topic), 2)
    # In order: the unknown type and the retried event are not dead letters, so the poison is first.
    assert [dict(d.headers)["error_type"] for d in dead] == [b"ValueError", b"InvalidEvent"]
    headers = dict(dead[0].headers)
    assert b"cannot make sense" in headers["error_message"]
    assert headers["original_topic"] == topic.encode()
    assert headers["original_offset"] == b"4"
    assert headers["consumer_group"].startswith(b"test.group.")
    assert CloudEvent.from_bytes(dead[0].value) == poison  # the original bytes
    assert dead[1].value == b"{not an envelope"


def test_a_restarted_consumer_does_not_reprocess_committed_events(
    pg_engine: Engine, broker: TansuBroker, unique: Callable[[str], str]
) -> None:
    topic = unique("consumer-restart")
    ensure_topics(broker.bootstrap, [Topic(topic, 1, ())])
    _make_seen_table(pg_engine)
    producer = KafkaProducer(**producer_config(broker.bootstrap, "test-producer"))
    group = unique("group")
    handlers = {"test.happened.v1": _record}
    producer.send(topic, value=CloudEvent.new("/t", "test.happened.v1", "p", {"n": 10}).to_bytes()).get(10)

    c1 = EventConsumer(pg_engine, broker.bootstrap, group, [topic], handlers)
    c1.start()
    _wait(lambda: _seen(pg_engine) == [10])
    c1.stop()

    producer.send(topic, value=CloudEvent.new("/t", "test.happened.v1", "p", {"n": 11}).to_bytes()).get(10)
    c2 = EventConsumer(pg_engine, broker.bootstrap, group, [topic], handlers)
    c2.start()
    _wait(lambda: _seen(pg_engine) == [10, 11])
    c2.stop()
    assert _seen(pg_engine) == [10, 11]
