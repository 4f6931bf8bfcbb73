"""The metric events the processor emits are what the evaluation and plan services read.

Every metric code is in the evaluation CodeSystem; each event becomes a valid FHIR R4B Observation; the
channel keeps the Observations of several channels over one window apart, and each event names the
Observation it is stored as: the evaluation service stores it there (the id its own rule gives events that
name none) and the plan service cites it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.observation import Observation
from sqlalchemy import create_engine

from relearn.device_gateway.config import Settings
from relearn.device_gateway.processing import events, metrics_consumer
from relearn.device_gateway.processing import events as events_module
from relearn.device_gateway.signals.metrics import MetricCode
from relearn.evaluation.domain import codes
from relearn.evaluation.mapper import metric_observation, metric_observation_id
from relearn.evaluation.schemas import MetricComputed
from relearn.plan.events import DeviceMetricComputed
from relearn.shared.events import DEVICE_METRICS, DEVICE_RAW_BALANCE, DEVICE_RAW_EMG, topic_for


def test_every_metric_code_is_an_evaluation_code() -> None:
    for code in MetricCode:
        concept = codes.concept(code.value)
        assert concept.selectable and concept.properties["unit"]


def test_raw_event_types_are_the_declared_ones() -> None:
    assert topic_for(events.EMG_FRAME) == topic_for(events.EMG_CLOSED) == DEVICE_RAW_EMG
    assert topic_for(events.BALANCE_FRAME) == topic_for(events.BALANCE_CLOSED) == DEVICE_RAW_BALANCE


def test_emitted_metrics_become_valid_observations_one_per_channel(data: Any, feed: Any) -> None:
    names = ["rectus-femoris", "biceps-femoris"]
    frames = data.wire_frames(
        data.lower_limb()[:3000, :2],
        rate=1000.0,
        channels=[{"name": n, "unit": "mV"} for n in names],
        stream_type="emg",
        frame_len=500,
    )
    emg = data.stream("emg", frames, session="enc-1", mvc={"rectus-femoris": 0.05})
    balance_open = data.plate_stream("BDS00001", patient=emg.patient, protocol={"vision": "open"})
    balance_closed = data.plate_stream("BDS00004", patient=emg.patient, protocol={"vision": "closed"})

    emg.protocol = {
        "muscles": {"rectus-femoris": "rectus-femoris"},
        "pairs": [{"agonist": "rectus-femoris", "antagonist": "biceps-femoris"}],
    }

    everything = feed.run(emg.events() + balance_open.events() + balance_closed.events())
    events = [e for e in everything if e.type == events_module.METRIC_COMPUTED]

    ids: set[str] = set()
    for event in events:
        metric = MetricComputed.model_validate(event.data)
        resource = metric_observation(metric)
        Observation.model_validate(resource)  # valid FHIR R4B
        ids.add(resource["id"])
        assert resource["code"]["coding"][0]["code"] == event.data["metric"]
        if event.data["status"] == "measured":
            assert resource["valueQuantity"]["code"] == event.data["unit"]
        else:  # no onset reference, no MVC for biceps-femoris: stored without a value, with the reason
            assert "valueQuantity" not in resource and resource["dataAbsentReason"]
            assert resource["note"][0]["text"] == event.data["reason"]
        if "muscle" in event.data:
            assert resource["bodySite"]["coding"][0]["code"] == event.data["muscle"]
            assert event.data["channel"] in resource["bodySite"]["text"]
        elif "channel" in event.data:
            assert resource["bodySite"] == {"text": event.data["channel"]}
        if "samples" in event.data:
            (waveform,) = [c for c in resource["component"] if "valueSampledData" in c]
            assert waveform["code"]["coding"][0]["code"] == "emg-envelope"
        # The event names the Observation the evaluation service stores, the one the evaluation service's
        # rule gives an event naming none (ids do not change), and the plan service cites exactly it.
        assert event.data["observation"] == f"Observation/{resource['id']}"
        unnamed = MetricComputed.model_validate({**event.data, "observation": None})
        assert metric_observation_id(unnamed) == resource["id"]
        assert DeviceMetricComputed.model_validate(event.data).observation == f"Observation/{resource['id']}"
    assert len(ids) == len(events), "no two metric events share an Observation"
    kinds = {e.data["metric"] for e in events}
    assert {"emg-co-contraction-index", "emg-percent-mvc", "romberg-quotient", "sway-ellipse-area"} <= kinds
    assert {e.data["status"] for e in events} == {"measured", "not-computable"}
    # Each close ends with its summary, which the evaluation service has no handler for.
    completed = [e for e in everything if e.type == events_module.METRICS_COMPLETED]
    assert len(completed) == 3 and topic_for(events_module.METRICS_COMPLETED) == DEVICE_METRICS


def test_metrics_without_a_channel_keep_their_former_ids() -> None:
    start, end = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 2, 0, 1, tzinfo=UTC)
    before = events.metric_observation_id("p", "d", "sway-ellipse-area", start, end)

    # The id the rule gave before channels existed: stored Observations keep their ids.
    assert before == "5dc34733-da5a-5732-99f3-516ff1df7806"
    assert events.metric_observation_id("p", "d", "sway-ellipse-area", start, end, None) == before
    left = events.metric_observation_id("p", "d", "emg-rms", start, end, "left")
    right = events.metric_observation_id("p", "d", "emg-rms", start, end, "right")
    assert len({before, left, right}) == 3


def test_the_processor_memory_bounds_come_from_the_settings() -> None:
    settings = Settings(metrics_max_open_streams=3, metrics_recording_mib=2.0)
    consumer = metrics_consumer(settings, create_engine("sqlite://"))
    processor = next(iter(consumer.handlers.values())).__self__  # type: ignore[attr-defined]
    # The close's recording bound; nothing is kept in memory while streaming (the frames table is the record).
    assert (processor.max_streams, processor.close_bytes) == (3, 2 * 1024 * 1024)
    assert processor.recording_bytes == 0
