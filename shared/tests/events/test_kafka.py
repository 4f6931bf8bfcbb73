"""Client helpers against the real broker: readiness means a Kafka answer, topics as declared."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from relearn.devtools.broker import TansuBroker
from relearn.shared.events.kafka import admin_client, broker_reachable, ensure_topics
from relearn.shared.events.topics import Topic


def test_broker_reachable_only_when_kafka_answers(broker: TansuBroker) -> None:
    assert broker_reachable(broker.bootstrap)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{closed.getsockname()[1]}"
    assert not broker_reachable(nobody, timeout_s=0.5)


def test_a_listener_that_does_not_speak_kafka_is_not_ready_and_leaks_nothing() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        bootstrap = f"127.0.0.1:{silent.getsockname()[1]}"
        before = threading.active_count()
        for _ in range(3):  # a readiness probe polls repeatedly
            assert not broker_reachable(bootstrap, timeout_s=0.3)
        assert threading.active_count() == before


def test_ensure_topics_creates_missing_topics_as_declared_and_is_repeatable(
    broker: TansuBroker, unique: Callable[[str], str]
) -> None:
    declared = [Topic(unique("ensure-a"), 3, ()), Topic(unique("ensure-b"), 1, ())]
    ensure_topics(broker.bootstrap, declared[:1])
    ensure_topics(broker.bootstrap, declared)  # one exists already: no error, the other is created
    admin = admin_client(broker.bootstrap)
    try:
        described = {
            d["name"]: len(d["partitions"]) for d in admin.describe_topics([t.name for t in declared])
        }
    finally:
        admin.close()
    assert described == {declared[0].name: 3, declared[1].name: 1}
