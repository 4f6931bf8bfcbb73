"""Device metrics as Observations: measured values, and the measured failures and missing evidence too."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.observation import Observation

from relearn.evaluation.mapper import MUSCLE_SYSTEM, metric_observation
from relearn.evaluation.schemas import MetricComputed

WINDOW = {"start": "2026-11-20T10:00:00+00:00", "end": "2026-11-20T10:00:06+00:00"}


def _observation(**data: Any) -> dict[str, Any]:
    event = {"patient": "p-1", "device": "emg-7", "stream": "s-1", "window": WINDOW, **data}
    resource = metric_observation(MetricComputed.model_validate(event))
    Observation.model_validate(resource)  # valid FHIR R4B, obs-6 included
    return resource


def test_a_muscle_without_onset_is_stored_as_not_detected_with_the_reason() -> None:
    obs = _observation(
        metric="emg-onset-latency",
        channel="RF",
        muscle="rectus-femoris",
        value=None,
        unit="ms",
        status="not-detected",
        reason="no onset: the envelope never stayed above baseline mean + 3 SD for 25 ms",
        reference={"kind": "synergist", "channel": "ST", "muscle": "semitendinosus"},
    )

    assert "valueQuantity" not in obs
    assert obs["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"
    assert obs["interpretation"][0]["coding"][0]["code"] == "ND"
    assert obs["bodySite"] == {
        "coding": [{"system": MUSCLE_SYSTEM, "code": "rectus-femoris"}],
        "text": "rectus-femoris (channel RF)",
    }
    notes = [n["text"] for n in obs["note"]]
    assert notes[0].startswith("no onset") and "semitendinosus (channel ST)" in notes[1]


def test_missing_evidence_is_stored_as_not_computable() -> None:
    obs = _observation(
        metric="emg-co-contraction-index",
        channel="RF/BF",
        muscle="rectus-femoris",
        antagonist="biceps-femoris",
        value=None,
        unit="%",
        status="not-computable",
        reason="no MVC for channel BF: %MVC cannot be formed",
    )

    assert obs["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert "interpretation" not in obs and "valueQuantity" not in obs
    assert obs["bodySite"]["text"] == "rectus-femoris / biceps-femoris (channel RF/BF)"
    assert obs["note"] == [{"text": "no MVC for channel BF: %MVC cannot be formed"}]
    # Even without a unit the event is stored (never dead-lettered for lacking a value).
    bare = _observation(metric="emg-onset-latency", channel="VM", status="not-computable")
    assert bare["note"] == [{"text": "not-computable"}]


def test_a_measured_latency_says_what_it_is_timed_against() -> None:
    obs = _observation(
        metric="emg-onset-latency",
        channel="VM",
        muscle="vastus-medialis",
        value=42.0,
        unit="ms",
        status="measured",
        reference={"kind": "cue", "channel": None, "muscle": None},
    )

    assert obs["valueQuantity"]["value"] == 42 and "dataAbsentReason" not in obs
    assert obs["note"] == [{"text": "Onset latency from the movement cue (protocol cueTime)."}]
    # An unbound channel keeps the channel as the body site's text, as before.
    plain = _observation(metric="emg-rms", channel="ch1", value=3.5, unit="uV")
    assert plain["bodySite"] == {"text": "ch1"} and "note" not in plain
