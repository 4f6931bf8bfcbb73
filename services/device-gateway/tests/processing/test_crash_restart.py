"""The gateway worker SIGKILLed while it drains a stream's raw events, then restarted: every window's metrics
are recorded once, measured, none missing, and the trial's summaries (one Observation per metric, by the id
the evaluation service stores it under) carry every window in their series - at least once on the broker,
exactly once as Observations.

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
def test_a_worker_killed_mid_drain_and_restarted_summarises_every_window_once(
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

    summaries = [e.data for e in sent if e.type != COMPLETED]
    assert [e.type for e in sent].count(COMPLETED) >= 1
    assert {e.type for e in sent if e.type != COMPLETED} == {"device.trial-summarized.v1"}

    by_id: dict[str, list[dict[str, Any]]] = {}
    for d in summaries:
        by_id.setdefault(str(d["observation"]), []).append(d)  # the Observation the summary names
    # One Observation per metric of the trial, whatever the number of windows and channels.
    assert {v[0]["metric"] for v in by_id.values()} == {
        "emg-rms",
        "emg-envelope-peak",
        "emg-median-frequency",
        "emg-onset-latency",
    }
    assert len(by_id) == 4
    # A summary sent twice (at least once) is the same both times: its Observation is updated to what it
    # already was, never doubled and never changed.
    for versions in by_id.values():
        assert all(v["results"] == versions[0]["results"] for v in versions)
    # Every 1 s window x channel x (RMS, envelope peak, median frequency) is a measured datum of the series.
    for metric in ("emg-rms", "emg-envelope-peak", "emg-median-frequency"):
        summary = next(v[0] for v in by_id.values() if v[0]["metric"] == metric)["results"]
        assert [r["channel"] for r in summary] == CHANNELS
        for r in summary:
            data = r["series"]["data"].split()
            assert len(data) == SECONDS and "E" not in data
            assert r["status"] == "measured" and r["value"] is not None  # the whole recording's value
    rms = next(v[0] for v in by_id.values() if v[0]["metric"] == "emg-rms")
    assert _span(rms["trial"]) == SECONDS and rms["windows"]["gapCount"] == 0
    with Session(engine) as s:
        rows = s.execute(
            select(col(WindowRecord.window_index), col(WindowRecord.status), col(WindowRecord.metrics)).where(
                col(WindowRecord.stream_id) == stream.stream
            )
        ).all()
    assert sorted(i for i, _, _ in rows) == list(range(SECONDS))
    assert {st for _, st, _ in rows} == {"measured"}
    # The window-level data stays in the gateway: every window's values, per channel.
    assert all(len(m) == 3 * len(CHANNELS) for _, _, m in rows)
    print(
        f"\nkilled after {killed_at} of {SECONDS} windows; {len(summaries)} trial summaries for "
        f"{len(by_id)} Observations ({len(summaries) - len(by_id)} sent again after the restart)"
    )


def _span(d: dict[str, Any]) -> float:
    start, end = (datetime.fromisoformat(d[k]) for k in ("start", "end"))
    return (end - start).total_seconds()
