"""Pytest fixtures for every Relearn test: a real PostgreSQL database and a real Kafka broker.

Loaded by the repository's root ``conftest.py``. PostgreSQL comes from
``RELEARN_TEST_PG_URL`` (default: the machine's server at 127.0.0.1:5432, database
``test``); each test session creates its own databases and drops them at the end. The
broker is a Tansu process started once per test session on a free loopback port.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from relearn.devtools.broker import TansuBroker
from relearn.devtools.pg import ScratchDatabases


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[str], str]]:
    """A factory: ``pg_database("evaluation")`` creates a fresh database and returns its URL."""
    scratch = ScratchDatabases()
    yield scratch.create
    scratch.drop_all()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One real Tansu broker for the whole test session."""
    b = TansuBroker(log_dir=tmp_path_factory.mktemp("broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


def read_from_start(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    """The records of partition 0 of ``topic`` from its start (no consumer group), once ``expected`` of them
    arrived or ``timeout_s`` passed (dead-letter topics have one partition)."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    reader.assign([TopicPartition(topic, 0)])
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=200).values():
                got.extend(records)
    finally:
        reader.close()
    return got
