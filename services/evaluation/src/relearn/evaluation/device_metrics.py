"""Device metrics become Observations (``device.metric-computed.v1`` from the device gateway).

Following the IoMT pattern (normalise → group → transform → persist): the gateway already
normalised and grouped by (patient, device, metric, window, channel); here each metric
becomes one Observation whose id derives from that group, so a replayed or recomputed metric
updates the same Observation instead of adding another. The channel (the EMG electrode site
the device names, e.g. ``vastus-medialis-left``, or ``a/b`` for a co-contraction pair) is
the Observation's ``bodySite.text``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


class MetricComputed(_In):
    """The data of ``device.metric-computed.v1`` (docs/events.md)."""

    patient: str
    device: str
    stream: str
    session: str | None = None
    channel: str | None = Field(default=None, min_length=1, max_length=200)
    metric: str = Field(description="a code of the evaluation CodeSystem, e.g. emg-rms, sway-ellipse-area")
    window: Window
    value: float | None = None
    unit: str
    components: list[Component] = []
    samples: Samples | None = None


def metric_observation_id(m: MetricComputed) -> str:
    return device_metric_observation_id(
        m.patient, m.device, m.metric, m.window.start, m.window.end, m.channel
    )


def _code(code: str) -> dict[str, Any]:
    return {"coding": [dict(codes.local(code))]}


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
    if m.channel:
        obs["bodySite"] = {"text": m.channel}
    if m.session:
        obs["encounter"] = {"reference": m.session if "/" in m.session else f"Encounter/{m.session}"}
    if m.value is not None:
        obs["valueQuantity"] = codes.quantity(m.value, m.unit)
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
