"""The trial summaries the processor emits are what the evaluation and plan services read.

Every metric code is in the evaluation CodeSystem; each summary becomes one valid FHIR R4B Observation (the
channels and their window series as components) and names the Observation it is stored as: the evaluation
service stores it there and the plan service cites it for each channel's result.
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
from relearn.evaluation.mapper import trial_observation
from relearn.evaluation.schemas import TrialSummarized
from relearn.plan.events import TrialSummarized as PlanTrialSummarized
from relearn.shared.events import DEVICE_METRICS, DEVICE_RAW_BALANCE, DEVICE_RAW_EMG, topic_for


def test_every_metric_code_is_an_evaluation_code() -> None:
    for code in MetricCode:
        concept = codes.concept(code.value)
        assert concept.selectable and concept.properties["unit"]


def test_raw_event_types_are_the_declared_ones() -> None:
    assert topic_for(events.EMG_FRAME) == topic_for(events.EMG_CLOSED) == DEVICE_RAW_EMG
    assert topic_for(events.BALANCE_FRAME) == topic_for(events.BALANCE_CLOSED) == DEVICE_RAW_BALANCE


def test_trial_summaries_become_valid_observations_one_per_metric_of_a_trial(data: Any, feed: Any) -> None:
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
    # No window metric is sent: the window series travel inside the summaries.
    assert not [e for e in everything if e.type == events_module.METRIC_COMPUTED]
    summaries = [e for e in everything if e.type == events_module.TRIAL_SUMMARIZED]
    assert all(topic_for(e.type) == DEVICE_METRICS and e.subject == emg.patient for e in summaries)

    ids: set[str] = set()
    per_stream: dict[str, int] = {}
    for event in summaries:
        summary = TrialSummarized.model_validate(event.data)
        resource = trial_observation(summary)
        Observation.model_validate(resource)  # valid FHIR R4B
        ids.add(resource["id"])
        per_stream[summary.stream] = per_stream.get(summary.stream, 0) + 1
        assert resource["code"]["coding"][0]["code"] == event.data["metric"]
        # The event names the Observation the evaluation service stores and the plan service cites.
        assert event.data["observation"] == f"Observation/{resource['id']}"
        cited = PlanTrialSummarized.model_validate(event.data).metrics()
        assert len(cited) == len(event.data["results"])
        assert {m.observation for m in cited} == {event.data["observation"]}
        if summary.stream_type == "emg":
            # One component per channel (and one per window series): the muscle in the text and extension.
            values = [
                c for c in resource["component"] if c["code"]["coding"][0]["code"] == event.data["metric"]
            ]
            assert len(values) == len(event.data["results"])
            for result, component in zip(event.data["results"], values, strict=True):
                if result["status"] == "measured":
                    assert component["valueQuantity"]["code"] == result["unit"]
                else:  # no MVC for biceps-femoris: stored without a value, with the reason in a note
                    assert "valueQuantity" not in component and component["dataAbsentReason"]
                    assert any(result["reason"] in n["text"] for n in resource["note"])
                if "muscle" in result:
                    assert (
                        component["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]
                        == result["muscle"]
                    )
                    assert result["channel"] in component["code"]["text"]
            series = [
                c for c in resource["component"] if c["code"]["coding"][0]["code"] == "emg-window-series"
            ]
            expected = [r for r in event.data["results"] if "series" in r]
            assert len(series) == len(expected)
            for component, result in zip(series, expected, strict=True):
                assert component["valueSampledData"]["data"] == result["series"]["data"]
                assert len(result["series"]["data"].split()) == 3  # 3 s: three 1 s windows
        else:
            [result] = event.data["results"]
            assert resource["valueQuantity"]["code"] == result["unit"]
            assert "bodySite" not in resource
    assert len(ids) == len(summaries), "no two summaries share an Observation"
    kinds = {e.data["metric"] for e in summaries}
    assert {"emg-co-contraction-index", "emg-percent-mvc", "romberg-quotient", "sway-ellipse-area"} <= kinds
    assert {r["status"] for e in summaries for r in e.data["results"]} == {"measured", "not-computable"}
    # A trial gives at most one Observation per metric code: 6 EMG codes, 9 sway (+ the Romberg quotient).
    assert per_stream == {emg.stream: 6, balance_open.stream: 9, balance_closed.stream: 10}
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
