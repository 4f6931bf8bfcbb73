"""Device metrics become Observations (``device.metric-computed.v1`` from the device gateway).

Following the IoMT pattern (normalise → group → transform → persist): the gateway already
normalised and grouped by (patient, device, metric, window, channel); here each metric
becomes one Observation whose id derives from that group, so a replayed or recomputed metric
updates the same Observation instead of adding another.

``bodySite`` is the channel's bound muscle (coded from the gateway's muscle CodeSystem, SENIAM
slugs) with the channel in its text (the EMG electrode site the device names, e.g.
``vastus-medialis-left``, or ``a/b`` for a co-contraction pair); an unbound channel gives the text
alone. A metric that is ``not-detected`` (a measured failure: e.g. no onset) or
``not-computable`` (no reference, no MVC, too short) is stored too, never dropped: no value, a
``dataAbsentReason`` (``not-applicable``: there is no onset to time, with interpretation ``ND``
"not detected"; ``not-performed``: the measurement the protocol needed was not made) and the
gateway's reason in ``note``. What an onset latency is timed against is a note as well.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from relearn.evaluation import codes
from relearn.evaluation.resources import OBSERVATION
from relearn.shared.events.contracts import device_metric_observation_id
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.fhir.store import FhirStore


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Window(_In):
    start: datetime
    end: datetime


class Component(_In):
    code: str
    value: float
    unit: str


class Samples(_In):
    """A downsampled waveform: value = origin + factor * datum (FHIR SampledData)."""

    period_ms: float = Field(alias="periodMs", gt=0)
    origin: float = 0.0
    factor: float = 1.0
    dimensions: int = 1
    unit: str
    data: str


class OnsetReference(_In):
    """What an onset latency is timed against: a synergist channel's onset, or the movement cue."""

    kind: Literal["synergist", "cue"]
    channel: str | None = Field(default=None, max_length=200)
    muscle: str | None = Field(default=None, max_length=64)


class MetricComputed(_In):
    """The data of ``device.metric-computed.v1`` (docs/events.md)."""

    patient: str
    device: str
    stream: str
    session: str | None = None
    channel: str | None = Field(default=None, min_length=1, max_length=200)
    muscle: str | None = Field(default=None, min_length=1, max_length=64)
    antagonist: str | None = Field(default=None, min_length=1, max_length=64)
    metric: str = Field(description="a code of the evaluation CodeSystem, e.g. emg-rms, sway-ellipse-area")
    window: Window
    value: float | None = None
    unit: str | None = None
    status: Literal["measured", "not-detected", "not-computable"] = "measured"
    reason: str | None = Field(default=None, max_length=1000)
    reference: OnsetReference | None = None
    components: list[Component] = []
    samples: Samples | None = None


def metric_observation_id(m: MetricComputed) -> str:
    return device_metric_observation_id(
        m.patient, m.device, m.metric, m.window.start, m.window.end, m.channel
    )


def _code(code: str) -> dict[str, Any]:
    return {"coding": [dict(codes.local(code))]}


MUSCLE_SYSTEM = "https://relearn.health/fhir/CodeSystem/muscle"  # the device gateway's, published there
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_ABSENT = {
    # No proper value exists: the muscle produced no onset (the measurement itself was made).
    "not-detected": codes.coding(DATA_ABSENT_REASON, "not-applicable", "Not Applicable"),
    # The measurement the value needs was not made: no reference channel or cue, no MVC, too short.
    "not-computable": codes.coding(DATA_ABSENT_REASON, "not-performed", "Not Performed"),
}
INTERPRETATION_NOT_DETECTED = codes.coding(codes.INTERPRETATION, "ND", "Not detected")


def _body_site(m: MetricComputed) -> dict[str, Any] | None:
    if m.muscle is None:
        return {"text": m.channel} if m.channel else None
    muscles = f"{m.muscle} / {m.antagonist}" if m.antagonist else m.muscle
    text = f"{muscles} (channel {m.channel})" if m.channel else muscles
    return {"coding": [codes.coding(MUSCLE_SYSTEM, m.muscle)], "text": text}


def _reference_note(ref: OnsetReference) -> str:
    if ref.kind == "cue":
        return "Onset latency from the movement cue (protocol cueTime)."
    who = ref.muscle or "the reference muscle"
    return f"Onset latency relative to the onset of the synergist {who} (channel {ref.channel})."


def metric_observation(m: MetricComputed) -> dict[str, Any]:
    concept = codes.concept(m.metric)  # an unknown metric code is poison: it goes to the DLQ
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": metric_observation_id(m),
        "status": "final",
        "category": [codes.category(str(concept.properties.get("category", {}).get("code", "exam")))],
        "code": _code(m.metric),
        "subject": {"reference": f"Patient/{m.patient}"},
        "effectivePeriod": {"start": m.window.start.isoformat(), "end": m.window.end.isoformat()},
        "device": {"reference": f"Device/{m.device}"},
        "identifier": [{"system": "https://relearn.health/fhir/sid/device-stream", "value": m.stream}],
    }
    body_site = _body_site(m)
    if body_site is not None:
        obs["bodySite"] = body_site
    if m.session:
        obs["encounter"] = {"reference": m.session if "/" in m.session else f"Encounter/{m.session}"}
    notes: list[str] = []
    if m.status != "measured":
        obs["dataAbsentReason"] = {"coding": [dict(_ABSENT[m.status])], "text": m.status}
        if m.status == "not-detected":
            obs["interpretation"] = [{"coding": [dict(INTERPRETATION_NOT_DETECTED)]}]
        notes.append(m.reason or m.status)
    elif m.value is not None:
        obs["valueQuantity"] = codes.quantity(m.value, m.unit or str(concept.properties.get("unit", "1")))
    if m.reference is not None:
        notes.append(_reference_note(m.reference))
    if notes:
        obs["note"] = [{"text": n} for n in notes]
    components = [
        {"code": _code(c.code), "valueQuantity": codes.quantity(c.value, c.unit)} for c in m.components
    ]
    if m.samples is not None:
        s = m.samples
        components.append(
            {
                "code": _code("emg-envelope") if m.metric.startswith("emg") else _code(m.metric),
                "valueSampledData": {
                    "origin": codes.quantity(s.origin, s.unit),
                    "period": s.period_ms,
                    "factor": s.factor,
                    "dimensions": s.dimensions,
                    "data": s.data,
                },
            }
        )
    if components:
        obs["component"] = components
    return obs


def metric_handler(store: FhirStore) -> Any:
    def handle(session: Session, event: CloudEvent) -> None:
        metric = MetricComputed.model_validate(event.data)
        resource = metric_observation(metric)
        store.update(session, OBSERVATION, resource["id"], resource)

    return handle
