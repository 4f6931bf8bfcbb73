"""kafka-python client settings that hold on both Tansu (local) and Apache Kafka (production).

- Producers are idempotent with ``enable_idempotence=True`` set explicitly, so a conflicting
  setting raises instead of silently turning idempotence off; ``acks='all'``.
- Consumers commit by hand after the database commit, start from ``earliest`` (Tansu's
  latest-offset lookup is unreliable, and a new group must not skip events), and use a
  6 s session timeout (Tansu joins a group in about half of it).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from relearn.shared.events.topics import Topic


def producer_config(bootstrap: str, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "enable_idempotence": True,
        "acks": "all",
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": 5,
        "retries": 5,
        "request_timeout_ms": 10_000,
        "delivery_timeout_ms": 30_000,
        # send() blocks at most this long for metadata or buffer space: back-pressure, not a hang.
        "max_block_ms": 10_000,
    }


def consumer_config(bootstrap: str, group_id: str, client_id: str | None = None) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "client_id": client_id or group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1500,
        "fetch_max_wait_ms": 50,
        "max_poll_records": 200,
        "max_poll_interval_ms": 300_000,
    }


def _admin(bootstrap: str, timeout_s: float) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), client_id="relearn-admin"
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
    """True when the broker answers a real metadata request within ``timeout_s``."""
    # A plain TCP connect first: kafka-python retries a dead bootstrap for much longer.
    if not _any_listener(bootstrap, timeout_s):
        return False
    try:
        admin = _admin(bootstrap, timeout_s)
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
    """Create the topics that do not exist yet (partitions as declared, replication 1 locally)."""
    admin = _admin(bootstrap, timeout_s)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t.name, t.partitions, 1) for t in topics if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another service created it first
                admin.create_topics(missing)
    finally:
        admin.close()
