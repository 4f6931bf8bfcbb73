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
from relearn.shared.events import (
    DEVICE_METRICS,
    DEVICE_RAW_BALANCE,
    DEVICE_RAW_EMG,
    CloudEvent,
    OutboxRelay,
    all_topics,
    ensure_topics,
    producer_config,
)
from relearn.shared.migrations import upgrade
from relearn.shared.service import make_engine


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

    def wait_completed(self, streams: tuple[str, ...]) -> list[CloudEvent]:
        """Every event of `streams` up to each one's close summary (it comes after the close's metrics)."""

        def done() -> bool:
            self.poll()
            closed = {e.data["stream"] for e in self.of(*streams) if e.type == COMPLETED}
            return closed == set(streams)

        wait_for(done, timeout_s=90, what="the close summaries")
        return self.of(*streams)


COMPLETED = "device.stream-metrics-completed.v1"


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
    device: str,
    patient: str,
    stream_type: str,
    frames: list[dict[str, Any]],
    protocol: dict[str, Any],
    mvc: dict[str, float] | None = None,
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
        "mvc": mvc,
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


def test_raw_events_on_the_broker_become_trial_summaries_once(
    engine: Engine, broker: TansuBroker, data: Any, store: Callable[[Engine, list[CloudEvent]], None]
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
        device,
        patient,
        "emg",
        _frames(data.bmc(), 1000.0, [{"name": "biceps", "unit": "V"}], "emg", 250),
        {"cueTime": 0.0},
    )
    # Four thigh muscles bound to their channels (standing: RF stays at rest, ST fires first), latencies
    # against the synergist ST, co-contraction for two declared pairs, one of them without MVC.
    thigh = {"RF": "rectus-femoris", "BF": "biceps-femoris", "VM": "vastus-medialis", "ST": "semitendinosus"}
    legs, leg_events = _raw_events(
        device,
        patient,
        "emg",
        _frames(data.lower_limb()[:6000], 1000.0, [{"name": n, "unit": "mV"} for n in thigh], "emg", 500),
        {
            "muscles": thigh,
            "onsetReference": "ST",
            "pairs": [{"agonist": "VM", "antagonist": "ST"}, {"agonist": "RF", "antagonist": "BF"}],
        },
        mvc={"RF": 0.05, "VM": 0.05, "ST": 0.2},
    )

    def publish(events: list[CloudEvent]) -> None:
        for e in events:
            topic = DEVICE_RAW_EMG if e.type.startswith("device.emg") else DEVICE_RAW_BALANCE
            producer.send(topic, key=e.key, value=e.to_bytes())
        producer.flush()

    # Ingest stores every frame before it stages its event: the recording of record.
    store(engine, open_events + closed_events + emg_events + leg_events)
    metrics = Metrics(broker.bootstrap)
    consumer.start()
    relay.start()
    try:
        assert consumer.wait_until_assigned()
        publish(open_events + closed_events + emg_events + leg_events)
        # Each stream's close summary comes after its metrics (one patient: one partition, in order).
        everything = metrics.wait_completed((opened, closed, emg, legs))
        summaries = {e.data["stream"]: e for e in everything if e.type == COMPLETED}
        for stream in (opened, closed, emg, legs):
            mine = [e for e in everything if e.data["stream"] == stream]
            assert mine[-1].type == COMPLETED and [e.type for e in mine].count(COMPLETED) == 1
        events = [e for e in everything if e.type != COMPLETED]
        assert all(e.subject == patient and e.type == "device.trial-summarized.v1" for e in events)
        # One summary per metric of a trial: balance 9 sway metrics per trial + the Romberg quotient; EMG
        # (3.36 s, one channel): RMS, envelope peak, median frequency (each with its window series), onset.
        assert len(metrics.of(opened, closed, emg)) - 3 == 9 + 9 + 1 + 4
        rms = next(e.data for e in metrics.of(emg) if e.data.get("metric") == "emg-rms")
        # 3 whole windows and the last 0.36 s one (partial), each a datum of the series.
        assert len(rms["results"][0]["series"]["data"].split()) == 4
        assert (rms["windows"]["count"], rms["windows"]["partial"], rms["windows"]["gapCount"]) == (4, 1, 0)

        with (data.sensors / "balance" / "reference-metrics-subject1.tsv").open() as f:
            reference = {row["Trial"]: row for row in csv.DictReader(f, delimiter="\t")}
        identities = {(d["stream"], d["metric"]) for d in (e.data for e in events)}
        assert len(identities) == len(events), "one summary per stream and metric"
        # Each channel's whole-trial result.
        values = {
            (e.data["stream"], e.data["metric"], r.get("channel")): r
            for e in events
            for r in e.data["results"]
        }
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

        # Per muscle, against the synergist; RF never fires: not detected; no reference, no latency to it.
        synergist = {"kind": "synergist", "channel": "ST", "muscle": "semitendinosus"}
        bf, vm, rf = (values[(legs, "emg-onset-latency", c)] for c in ("BF", "VM", "RF"))
        assert (bf["muscle"], bf["status"], bf["reference"]) == ("biceps-femoris", "measured", synergist)
        assert bf["value"] == pytest.approx(100.0, abs=30.0) and vm["value"] == pytest.approx(750.0, abs=40.0)
        assert (rf["status"], rf["value"], rf["muscle"]) == ("not-detected", None, "rectus-femoris")
        assert (legs, "emg-onset-latency", "ST") not in values
        # Co-contraction for the declared pairs only.
        cocon = {c: d for (s_, m, c), d in values.items() if s_ == legs and m == "emg-co-contraction-index"}
        assert set(cocon) == {"VM/ST", "RF/BF"}
        assert cocon["VM/ST"]["status"] == "measured" and 0 < cocon["VM/ST"]["value"] < 100
        assert cocon["VM/ST"]["antagonist"] == "semitendinosus"
        assert (cocon["RF/BF"]["status"], cocon["RF/BF"]["value"]) == ("not-computable", None)
        # The summary lists each whole-recording metric with its status.
        summary = summaries[legs].data
        assert (summary["streamType"], summary["gaps"], summary["patient"]) == ("emg", 0, patient)
        listed = {(m["metric"], m.get("channel")): m["status"] for m in summary["metrics"]}
        assert listed[("emg-onset-latency", "RF")] == "not-detected"
        assert listed[("emg-co-contraction-index", "RF/BF")] == "not-computable"
        assert (
            listed[("emg-onset-latency", "BF")] == listed[("emg-co-contraction-index", "VM/ST")] == "measured"
        )
        assert len(listed) == 4 * 3 + 3 + 3 + 2  # RMS, peak, MDF x 4; %MVC x 3; 3 onsets; 2 pairs
        assert summaries[emg].data["metrics"][-1] == {
            "metric": "emg-onset-latency",
            "channel": "biceps",
            "status": "measured",
        }

        # Replay everything, then a short sentinel stream per topic from the same device (same partitions,
        # so once its metrics are out, the replays before it have been consumed).
        publish(open_events + closed_events + emg_events + leg_events)
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
        store(engine, sentinel_b + sentinel_e)
        publish(sentinel_b + sentinel_e)
        metrics.wait_completed((sentinel_balance, sentinel_emg))
        time.sleep(0.5)  # not a timing assertion: lets a (wrong) late duplicate show up before we count
        metrics.poll()
        assert len(metrics.of(opened, closed, emg, legs)) == len(everything)
    finally:
        relay.stop()
        consumer.stop()
        producer.close()
        metrics.reader.close()
