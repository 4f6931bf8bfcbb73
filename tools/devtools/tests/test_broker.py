"""The local broker launcher: a real Tansu that answers Kafka, stops cleanly and restarts in place."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from kafka.admin import NewTopic

from relearn.devtools.broker import TansuBroker
from relearn.shared.events import admin_client, broker_reachable


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _topics(bootstrap: str) -> list[str]:
    admin = admin_client(bootstrap)
    try:
        return list(admin.list_topics())
    finally:
        admin.close()


def test_broker_answers_kafka_metadata_and_stop_frees_its_port(tmp_path: Path) -> None:
    with TansuBroker(log_dir=tmp_path) as broker:
        assert broker.port is not None
        port = broker.port
        assert broker.bootstrap == f"127.0.0.1:{port}"
        assert broker_reachable(broker.bootstrap)
        admin = admin_client(broker.bootstrap)
        admin.create_topics([NewTopic("launcher.check", 3, 1)])
        admin.close()
        assert "launcher.check" in _topics(broker.bootstrap)
    assert not broker.running
    assert not _listening(port)
    assert not broker_reachable(broker.bootstrap)
    broker.stop()  # a second stop is harmless
    assert "listening on" in (tmp_path / "tansu.log").read_text()


def test_restart_comes_back_on_the_same_port_with_memory_emptied(tmp_path: Path) -> None:
    broker = TansuBroker(log_dir=tmp_path)
    broker.start()
    try:
        bootstrap = broker.bootstrap
        admin = admin_client(bootstrap)
        admin.create_topics([NewTopic("before.restart", 1, 1)])
        admin.close()
        broker.restart()
        assert broker.bootstrap == bootstrap
        assert broker_reachable(bootstrap)
        assert "before.restart" not in _topics(bootstrap)  # the memory engine starts empty
    finally:
        broker.stop()


def test_a_taken_port_fails_start_with_tansus_own_explanation(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        broker = TansuBroker(log_dir=tmp_path, port=squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match="Address in use"):
            broker.start(timeout_s=20)
    assert not broker.running
