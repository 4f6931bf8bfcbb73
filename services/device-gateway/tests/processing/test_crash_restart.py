"""The gateway worker SIGKILLed while it drains a stream's raw events, then restarted: every window's metrics
(one Observation each, by the id the evaluation service stores it under) come out, measured, none missing and
none doubled - at least once on the broker, exactly once as Observations.

Real processes on the real broker and PostgreSQL: the frames are stored as ingest stores them, their raw
events published as the outbox publishes them; `relearn-device-gateway worker` (the metrics consumer and the
outbox relay) runs as a child process and is killed with SIGKILL once part of the stream is processed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from relearn.device_gateway.processing.tables import WindowRecord
from relearn.devtools.apps import wait_for
from relearn.devtools.broker import TansuBroker
from relearn.shared.events import (
    DEVICE_METRICS,
    DEVICE_RAW_EMG,
    CloudEvent,
    all_topics,
    ensure_topics,
    producer_config,
)
from relearn.shared.migrations import upgrade
from relearn.shared.service import make_engine

SECONDS = 60
RATE = 2000.0
CHANNELS = ["VM", "VL", "BF", "ST"]
COMPLETED = "device.stream-metrics-completed.v1"


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A broker of this module's own: the worker's consumer group meets no other test's members."""
    b = TansuBroker(log_dir=tmp_path_factory.mktemp("crash-broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def database(pg_database: Callable[[str], str]) -> Iterator[tuple[str, Engine]]:
    url = pg_database("device_gateway_crash")
    upgrade("relearn.device_gateway", url)
    engine = make_engine(url)
    yield url, engine
    engine.dispose()


def _worker(url: str, bootstrap: str, log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("relearn-device-gateway")
    env = {
        **os.environ,
        "DEVICE_GATEWAY_DATABASE_URL": url,
        "DEVICE_GATEWAY_KAFKA_BOOTSTRAP": bootstrap,
        "DEVICE_GATEWAY_ENVIRONMENT": "test",
    }
    with log.open("ab") as out:
        return subprocess.Popen([str(exe), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)


def _emg(seconds: int, rate: float, channels: int, seed: int = 7) -> np.ndarray:
    """Resting noise with a 2 s contraction every 5 s, per channel (mV)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    active = ((t % 5.0) > 2.0) & ((t % 5.0) < 4.0)
    gain = np.where(active, 0.4, 0.02)[:, None] * (1 + 0.2 * np.arange(channels))[None, :]
    return np.asarray(rng.standard_normal((n, channels)) * gain)


def _windows_done(engine: Engine, stream: str) -> int:
    with Session(engine) as s:
        query = select(func.count()).select_from(WindowRecord).where(col(WindowRecord.stream_id) == stream)
        return int(s.execute(query).scalar_one())


def _metrics(bootstrap: str, stream: str, timeout_s: float) -> list[CloudEvent]:
    """Every metric event of ``stream`` on the metrics topic, from the start, once its close summary is there
    (and a second more, so a late duplicate would be seen too)."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    found: list[CloudEvent] = []

    def poll() -> bool:
        for records in reader.poll(timeout_ms=200, max_records=2000).values():
            found.extend(
                e for e in (CloudEvent.from_bytes(r.value) for r in records) if e.data["stream"] == stream
            )
        return any(e.type == COMPLETED for e in found)

    try:
        partitions = wait_for(lambda: reader.partitions_for_topic(DEVICE_METRICS), what="the metrics topic")
        reader.assign([TopicPartition(DEVICE_METRICS, p) for p in partitions])
        reader.seek_to_beginning()
        wait_for(poll, timeout_s=timeout_s, what="the stream's close summary")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            poll()
    finally:
        reader.close()
    return found


@pytest.mark.timeout(900)  # two worker start-ups and a drain: minutes on a busy 2-core machine
def test_a_worker_killed_mid_drain_and_restarted_sends_every_window_once_as_an_observation(
    own_broker: TansuBroker,
    database: tuple[str, Engine],
    data: Any,
    store: Callable[[Engine, list[CloudEvent]], None],
    tmp_path: Path,
) -> None:
    url, engine = database
    ensure_topics(own_broker.bootstrap, all_topics())
    channels = [{"name": c, "unit": "mV"} for c in CHANNELS]
    frames = data.wire_frames(
        _emg(SECONDS, RATE, len(CHANNELS)), rate=RATE, channels=channels, stream_type="emg", frame_len=200
    )
    stream = data.stream("emg", frames)
    events = stream.events()
    store(engine, events)  # ingest stored every frame before it staged its event
    producer = KafkaProducer(**producer_config(own_broker.bootstrap, "crash-test-raw"))
    for e in events:
        producer.send(DEVICE_RAW_EMG, key=e.key, value=e.to_bytes())
    producer.flush()
    producer.close()

    log = tmp_path / "worker.log"
    worker = _worker(url, own_broker.bootstrap, log)
    try:
        wait_for(lambda: _windows_done(engine, stream.stream) >= 10, timeout_s=600, what="10 windows staged")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        killed_at = _windows_done(engine, stream.stream)
        assert killed_at < SECONDS, "the worker must be killed mid-drain, before the stream's last window"

        worker = _worker(url, own_broker.bootstrap, log)
        sent = _metrics(own_broker.bootstrap, stream.stream, timeout_s=600)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()

    metrics = [e.data for e in sent if e.type != COMPLETED]
    assert [e.type for e in sent].count(COMPLETED) >= 1

    def observation(d: dict[str, Any]) -> str:
        return str(d["observation"])  # the Observation the event names

    by_id: dict[str, list[dict[str, Any]]] = {}
    for d in metrics:
        by_id.setdefault(observation(d), []).append(d)
    windows = {k: v for k, v in by_id.items() if _span(v[0]) == 1.0}
    # Every 1 s window x channel x (RMS, envelope peak, median frequency): one Observation each, measured.
    assert len(windows) == SECONDS * len(CHANNELS) * 3
    starts = sorted({v[0]["window"]["start"] for v in windows.values()})
    assert len(starts) == SECONDS
    assert all(v[-1]["status"] == "measured" and v[-1]["value"] is not None for v in windows.values())
    # A window sent twice (at least once) carries the same value both times: its Observation is updated to
    # what it already was, never doubled and never changed.
    for versions in by_id.values():
        assert len({(v["status"], v["value"]) for v in versions}) == 1
    # The whole recording: each channel's RMS covers all of it.
    whole = [v[-1] for v in by_id.values() if _span(v[0]) == SECONDS]
    assert {d["channel"] for d in whole if d["metric"] == "emg-rms"} == set(CHANNELS)
    with Session(engine) as s:
        rows = s.execute(
            select(col(WindowRecord.window_index), col(WindowRecord.status)).where(
                col(WindowRecord.stream_id) == stream.stream
            )
        ).all()
    assert sorted(i for i, _ in rows) == list(range(SECONDS))
    assert {st for _, st in rows} == {"measured"}
    print(
        f"\nkilled after {killed_at} of {SECONDS} windows; {len(metrics)} metric events for "
        f"{len(by_id)} Observations ({len(metrics) - len(by_id)} sent again after the restart)"
    )


def _span(d: dict[str, Any]) -> float:
    start, end = (datetime.fromisoformat(d["window"][k]) for k in ("start", "end"))
    return (end - start).total_seconds()
