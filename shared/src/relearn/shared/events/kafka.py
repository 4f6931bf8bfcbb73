"""kafka-python client settings that hold on both Tansu (local) and Apache Kafka (production).

- Producers are idempotent with ``enable_idempotence=True`` set explicitly, so a conflicting
  setting raises instead of silently turning idempotence off; ``acks='all'``.
- Consumers commit by hand after the database commit, start from ``earliest`` (Tansu's
  latest-offset lookup is unreliable, and a new group must not skip events), and use a
  6 s session timeout (Tansu joins a group in about half of it).
- Every client gives up bootstrapping after a few seconds and retries a lost broker at least
  every second (kafka-python defaults: 30 s each), so outages are noticed and ended quickly.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.net.compat import KafkaNetClient

from relearn.shared.events.topics import Topic

logger = logging.getLogger(__name__)

_BOOTSTRAP_TIMEOUT_MS = 5000
# kafka-python backs off reconnects up to 30 s; the Java clients' 1 s notices a returned broker sooner.
_RECONNECT_BACKOFF_MAX_MS = 1000

C = TypeVar("C")


def producer_config(bootstrap: str, client_id: str) -> dict[str, Any]:
    """Settings for ``KafkaProducer(**producer_config(...))``."""
    return {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "enable_idempotence": True,
        "acks": "all",
        "max_in_flight_requests_per_connection": 5,  # the most idempotence allows with ordering kept
        "linger_ms": 5,
        # kafka-python's default 16 kB is smaller than one sensor-frame event (~20-30 kB), which made every
        # such event its own batch and request; 512 kB batches take many (and stay well under the broker's
        # 1 MB message limit, with max_request_size at its 1 MB default).
        "batch_size": 512 * 1024,
        "retries": 5,
        "request_timeout_ms": 10_000,
        "delivery_timeout_ms": 30_000,
        # send() blocks at most this long for metadata or buffer space: back-pressure, not a hang.
        "max_block_ms": 10_000,
        "bootstrap_timeout_ms": _BOOTSTRAP_TIMEOUT_MS,
        "reconnect_backoff_max_ms": _RECONNECT_BACKOFF_MAX_MS,
    }


def consumer_config(bootstrap: str, group_id: str, client_id: str | None = None) -> dict[str, Any]:
    """Settings for a consumer in group ``group_id``; prefer :func:`make_consumer` to build one."""
    return {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "client_id": client_id or group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 2000,
        # How long the broker holds a fetch while the topic is quiet. It answers as soon as a record comes
        # (measured on Tansu: 10-30 ms delivery with 50, 500 or 1000 ms waits alike), so a long wait costs
        # no latency, and an idle consumer sends one fetch a second instead of twenty (issue 16).
        "fetch_max_wait_ms": 1000,
        "max_poll_records": 200,
        "max_poll_interval_ms": 300_000,
        "bootstrap_timeout_ms": _BOOTSTRAP_TIMEOUT_MS,
        "reconnect_backoff_max_ms": _RECONNECT_BACKOFF_MAX_MS,
    }


def close_producer(producer: KafkaProducer, timeout_s: float = 2.0) -> None:
    """Close ``producer`` for good, dropping what the broker has not acknowledged by ``timeout_s``.

    kafka-python's ``close()`` flushes first and, while the broker is down, gives up with
    ``KafkaTimeoutError`` and leaves the producer's network thread running for ever.
    """
    try:
        producer.close(timeout=timeout_s)
    except KafkaTimeoutError:
        sender = getattr(producer, "_sender", None)  # kafka-python 3.0 internals (the pin is exact)
        if sender is not None:
            sender.force_close()  # fails the pending records and ends the thread
            sender.join(timeout_s)
        with contextlib.suppress(Exception):
            producer.close(timeout=0)


def _build(factory: Callable[..., C], **config: Any) -> C:
    # kafka-python 3.0 starts a consumer's or admin's I/O thread before its eager bootstrap
    # and leaks it when the bootstrap fails; keep hold of the client to close it ourselves.
    created: list[KafkaNetClient] = []

    def make_client(**kw: Any) -> KafkaNetClient:
        client = KafkaNetClient(**kw)
        created.append(client)
        return client

    try:
        return factory(**config, kafka_client=make_client)
    except BaseException:
        for client in created:
            with contextlib.suppress(Exception):
                client.close()
        raise


def make_consumer(bootstrap: str, group_id: str, topics: Iterable[str], **overrides: Any) -> KafkaConsumer:
    """A ``KafkaConsumer`` subscribed to ``topics`` with :func:`consumer_config` (plus ``overrides``).

    Raises ``KafkaTimeoutError`` within a few seconds when no broker answers, without
    leaking the client's I/O thread.
    """
    config = {**consumer_config(bootstrap, group_id), **overrides}
    consumer = _build(KafkaConsumer, **config)
    consumer.subscribe(list(topics))
    return consumer


def admin_client(bootstrap: str, timeout_s: float = 10.0) -> KafkaAdminClient:
    """A ``KafkaAdminClient`` that bootstraps and answers within ``timeout_s`` or raises."""
    ms = max(1, int(timeout_s * 1000))
    return _build(
        KafkaAdminClient,
        bootstrap_servers=bootstrap,
        client_id="relearn-admin",
        request_timeout_ms=ms,
        bootstrap_timeout_ms=ms,
    )


def _any_listener(bootstrap: str, timeout_s: float) -> bool:
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def broker_reachable(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when the broker answers a real metadata request (bootstrap plus list_topics).

    Used by readiness probes: a port that accepts connections but does not speak Kafka is
    not a broker. Takes at most about twice ``timeout_s``.
    """
    # A plain TCP connect first: the common "nothing listens" case answers at once.
    if not _any_listener(bootstrap, timeout_s):
        return False
    try:
        admin = admin_client(bootstrap, timeout_s)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def ensure_topics(bootstrap: str, topics: Iterable[Topic], timeout_s: float = 10.0) -> None:
    """Create the topics that do not exist yet (partitions as declared, replication 1).

    Topics that already exist are left alone; one with fewer partitions than declared (for
    example auto-created by a producer that ran first) is logged as a warning.
    """
    wanted = {t.name: t for t in topics}
    admin = admin_client(bootstrap, timeout_s)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t.name, t.partitions, 1) for name, t in wanted.items() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another service created it first
                admin.create_topics(missing)
        present = [name for name in wanted if name in existing]
        if present:
            for described in admin.describe_topics(present):
                name, have = described["name"], len(described["partitions"])
                if have < wanted[name].partitions:
                    logger.warning(
                        "topic has fewer partitions than declared",
                        extra={"topic": name, "partitions": have, "declared": wanted[name].partitions},
                    )
    finally:
        admin.close()


class TopicGuard:
    """Re-creates declared topics that are gone (a broker restarted without its data), as declared.

    ``check()`` lists the broker's topics (one metadata request) at most every ``every_s`` and creates the
    missing ones with :func:`ensure_topics`; ``check(now=True)`` skips the wait (after a failure). Raises
    what the broker raises: the caller retries.

    Best effort for the event topics on Tansu: it creates any topic a client asks for with its default of 4
    partitions (it ignores ``allow_auto_create_topics`` and has no CreatePartitions), so an event topic a
    consumer or producer asks for before the guard's next check comes back with 4 partitions (logged by
    ``ensure_topics`` at the next start). The dead-letter topics, which no client asks for until an event
    fails, always come back as declared. A deployment's durable broker does not lose topics.
    """

    def __init__(self, bootstrap: str, topics: Iterable[Topic], *, every_s: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.every_s = every_s
        self._checked_at: float | None = None
        self.recreated = 0

    def check(self, *, now: bool = False) -> None:
        at = time.monotonic()
        if not now and self._checked_at is not None and at - self._checked_at < self.every_s:
            return
        admin = admin_client(self.bootstrap)
        try:
            existing = set(admin.list_topics())
        finally:
            admin.close()
        missing = [t for t in self.topics if t.name not in existing]
        if missing:
            ensure_topics(self.bootstrap, missing)
            self.recreated += len(missing)
            logger.warning(
                "declared topics were missing; created them as declared",
                extra={"topics": {t.name: t.partitions for t in missing}},
            )
        self._checked_at = at
