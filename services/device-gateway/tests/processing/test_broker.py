"""The metrics consumer end to end: raw events on the real broker in, metric events on the metrics topic out.

Raw CloudEvents are published exactly as the gateway's outbox publishes them (GATEWAY.md: raw topic by stream
type, key = device id); the consumer runs on a PostgreSQL database migrated like the service's, its outbox
relay publishes the metric events. Replaying every raw event gives no new metric event.
"""

from __future__ import annotations

import csv
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy.engine import Engine

from relearn.device_gateway.config import Settings
from relearn.device_gateway.processing import metrics_consumer
from relearn.devtools.apps import wait_for
from relearn.devtools.broker import TansuBroker
from relearn.shared.db import make_engine
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.events.kafka import ensure_topics, producer_config
from relearn.shared.events.outbox import OutboxRelay
from relearn.shared.events.topics import DEVICE_METRICS, DEVICE_RAW_BALANCE, DEVICE_RAW_EMG, all_topics
from relearn.shared.migrations import upgrade


@pytest.fixture(scope="module")
def engine(pg_database: Callable[[str], str]) -> Iterator[Engine]:
    url = pg_database("device_gateway_metrics")
    upgrade("relearn.device_gateway", url)  # as relearn.devtools.apps.service_app migrates a service
    engine = make_engine(url)
    yield engine
    engine.dispose()


class Metrics:
    """Reads relearn.device.metrics from the start (no group) and keeps what concerns `streams`."""

    def __init__(self, bootstrap: str) -> None:
        self.reader = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        partitions = wait_for(lambda: self.reader.partitions_for_topic(DEVICE_METRICS), what="metrics topic")
        self.reader.assign([TopicPartition(DEVICE_METRICS, p) for p in partitions])
        self.reader.seek_to_beginning()
        self.seen: list[CloudEvent] = []

    def poll(self) -> None:
        for records in self.reader.poll(timeout_ms=200, max_records=1000).values():
            self.seen.extend(CloudEvent.from_bytes(r.value) for r in records)

    def of(self, *streams: str) -> list[CloudEvent]:
        return [e for e in self.seen if e.data.get("stream") in streams]

    def wait(self, streams: tuple[str, ...], count: int) -> list[CloudEvent]:
        wait_for(
            lambda: self.poll() or len(self.of(*streams)) >= count, timeout_s=90, what=f"{count} metrics"
        )
        return self.of(*streams)


def _frames(values: Any, rate: float, channels: list[dict[str, str]], stream_type: str, n: int) -> list[Any]:
    t0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    return [
        {
            "deviceId": "?",
            "streamType": stream_type,
            "streamId": "?",
            "sequence": seq,
            "startTime": (t0 + timedelta(seconds=lo / rate)).isoformat(),
            "samplingRateHz": rate,
            "channels": channels,
            "samples": values[lo : lo + n].tolist(),
        }
        for seq, lo in enumerate(range(0, values.shape[0], n))
    ]


def _raw_events(
    device: str, patient: str, stream_type: str, frames: list[dict[str, Any]], protocol: dict[str, Any]
) -> tuple[str, list[CloudEvent]]:
    """A stream's frame events and its stream-closed event, as the gateway stages them."""
    stream = f"str-{uuid.uuid4().hex[:10]}"
    kind = "emg" if stream_type == "emg" else "balance"
    common = {
        "stream": stream,
        "device": device,
        "patient": patient,
        "session": None,
        "streamType": stream_type,
        "origin": frames[0]["startTime"],
        "protocol": protocol,
        "mvc": None,
    }
    events = [
        CloudEvent.new(
            "/relearn/device-gateway",
            f"device.{kind}-frame-received.v1",
            device,
            {**common, "targets": None, "frame": {**f, "deviceId": device, "streamId": stream}},
        )
        for f in frames
    ]
    closed = {
        **common,
        "lastSequence": len(frames) - 1,
        "frames": len(frames),
        "samples": sum(len(f["samples"]) for f in frames),
        "gaps": 0,
    }
    events.append(
        CloudEvent.new("/relearn/device-gateway", f"device.{kind}-stream-closed.v1", device, closed)
    )
    return stream, events


def test_raw_events_on_the_broker_become_metric_events_once(
    engine: Engine, broker: TansuBroker, data: Any
) -> None:
    ensure_topics(broker.bootstrap, all_topics())
    settings = Settings(database_url="unused", kafka_bootstrap=broker.bootstrap)
    consumer = metrics_consumer(settings, engine, group_id=f"device-gateway-metrics-{uuid.uuid4().hex[:8]}")
    relay = OutboxRelay(engine, broker.bootstrap, client_id="metrics-test-relay", poll_interval_s=0.1)
    producer = KafkaProducer(**producer_config(broker.bootstrap, "metrics-test-raw"))
    device, patient = f"dev-{uuid.uuid4().hex[:8]}", f"pat-{uuid.uuid4().hex[:8]}"
    plate = [{"name": c["name"], "unit": c["unit"]} for c in data.plate]
    opened, open_events = _raw_events(
        device,
        patient,
        "force-plate",
        _frames(data.balance("BDS00001"), 100.0, plate, "force-plate", 100),
        {"vision": "open", "surface": "firm"},
    )
    closed, closed_events = _raw_events(
        device,
        patient,
        "force-plate",
        _frames(data.balance("BDS00004"), 100.0, plate, "force-plate", 100),
        {"vision": "closed", "surface": "firm"},
    )
    emg, emg_events = _raw_events(
        device, patient, "emg", _frames(data.bmc(), 1000.0, [{"name": "biceps", "unit": "V"}], "emg", 250), {}
    )

    def publish(events: list[CloudEvent]) -> None:
        for e in events:
            topic = DEVICE_RAW_EMG if e.type.startswith("device.emg") else DEVICE_RAW_BALANCE
            producer.send(topic, key=e.key, value=e.to_bytes())
        producer.flush()

    metrics = Metrics(broker.bootstrap)
    consumer.start()
    relay.start()
    try:
        assert consumer.wait_until_assigned()
        publish(open_events + closed_events + emg_events)
        # Balance: 9 sway metrics per trial + the Romberg quotient; EMG: 3 windows x 3 + 4 at the close.
        events = metrics.wait((opened, closed, emg), 9 + 9 + 1 + 9 + 4)

        with (data.sensors / "balance" / "reference-metrics-subject1.tsv").open() as f:
            reference = {row["Trial"]: row for row in csv.DictReader(f, delimiter="\t")}
        identities = {
            (d["stream"], d["metric"], d.get("channel"), d["window"]["start"], d["window"]["end"])
            for d in (e.data for e in events)
        }
        assert len(identities) == len(events), "one event per stream, metric, channel and window"
        # The whole-recording metrics (the last of each stream, metric and channel).
        values = {(e.data["stream"], e.data["metric"], e.data.get("channel")): e.data for e in events}
        for stream, trial in ((opened, "BDS00001"), (closed, "BDS00004")):
            ref = reference[trial]
            assert round(values[(stream, "sway-ellipse-area", None)]["value"], 3) == round(
                float(ref["COParea"]), 3
            )
            assert round(values[(stream, "sway-mean-velocity", None)]["value"], 3) == round(
                float(ref["COPvelo"]), 3
            )
            assert abs(values[(stream, "sway-mean-frequency", None)]["value"] - float(ref["COPmfreq"])) < 5e-4
        quotient = values[(closed, "romberg-quotient", None)]
        assert quotient["value"] == pytest.approx(
            float(reference["BDS00004"]["COParea"]) / float(reference["BDS00001"]["COParea"]), rel=1e-6
        )
        assert 350 <= values[(emg, "emg-onset-latency", "biceps")]["value"] <= 500
        assert all(e.subject == patient and e.type == "device.metric-computed.v1" for e in events)

        # Replay everything, then a short sentinel stream per topic from the same device (same partitions,
        # so once its metrics are out, the replays before it have been consumed).
        publish(open_events + closed_events + emg_events)
        sentinel_balance, sentinel_b = _raw_events(
            device,
            patient,
            "force-plate",
            _frames(data.balance("BDS00001")[:1000], 100.0, plate, "force-plate", 100),
            {},
        )
        sentinel_emg, sentinel_e = _raw_events(
            device,
            patient,
            "emg",
            _frames(np.asarray(data.bmc()[:1500]), 1000.0, [{"name": "biceps", "unit": "V"}], "emg", 250),
            {},
        )
        publish(sentinel_b + sentinel_e)
        metrics.wait((sentinel_balance, sentinel_emg), 9 + 3 + 4)
        time.sleep(0.5)  # not a timing assertion: lets a (wrong) late duplicate show up before we count
        metrics.poll()
        assert len(metrics.of(opened, closed, emg)) == len(events)
    finally:
        relay.stop()
        consumer.stop()
        producer.close()
        metrics.reader.close()
