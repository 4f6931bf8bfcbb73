"""The events the metrics processor reads (raw frame / stream-closed, docs GATEWAY) and the one it writes.

In: `device.{emg,balance}-frame-received.v1` and `device.{emg,balance}-stream-closed.v1` on the raw topics,
subject = device id. Out, on `relearn.device.metrics`, subject = patient id: `device.metric-computed.v1`, data
`{patient, device, stream, session, channel?, muscle?, metric, window: {start, end}, observation, value, unit,
status, reason?, reference?, antagonist?, components?, samples?, partial?}` with `metric` a code of the
evaluation CodeSystem, `observation` the `Observation/<id>` the metric is stored as
(:func:`metric_observation_id`), `partial: true` with a `reason` when the window is shorter than the metric's
nominal span (the last window of a recording, or whole-recording metrics over the part of the recording the
close could hold); and after a close's metrics `device.stream-metrics-completed.v1`, data `{patient, device,
stream, session, streamType, metrics: [{metric, channel?, muscle?, status}], gaps}` (docs/events.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from relearn.device_gateway.processing.domain import Computed, EmgProtocol
from relearn.device_gateway.signals.frames import SensorFrame, StreamType
from relearn.shared.events import CloudEvent

SOURCE = "/relearn/device-gateway/metrics"

EMG_FRAME = "device.emg-frame-received.v1"
BALANCE_FRAME = "device.balance-frame-received.v1"
EMG_CLOSED = "device.emg-stream-closed.v1"
BALANCE_CLOSED = "device.balance-stream-closed.v1"
METRIC_COMPUTED = "device.metric-computed.v1"
METRICS_COMPLETED = "device.stream-metrics-completed.v1"


class _In(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class Pair(_In):
    agonist: str
    antagonist: str


class Protocol(_In):
    """The binding's protocol as far as metrics need it; anything else in it is ignored, nothing rejected
    (the gateway validated it at binding: `streams.domain`)."""

    vision: str | None = None
    surface: str | None = None
    task: str | None = None
    cue_time: float | None = Field(default=None, description="seconds after the stream origin")
    onset_reference: str | None = Field(
        default=None, description="channel that onset latencies are timed against"
    )
    muscles: dict[str, str] = Field(default_factory=dict, description="channel -> SENIAM muscle slug")
    pairs: list[Pair] = Field(default_factory=list, description="declared agonist/antagonist channel pairs")
    # Load-cell board sensor spacing in cm, when not the Wii Balance Board's.
    board_lx_cm: float | None = None
    board_ly_cm: float | None = None

    def emg(self) -> EmgProtocol:
        return EmgProtocol(
            cue_s=self.cue_time,
            reference=self.onset_reference,
            muscles=dict(self.muscles),
            pairs=tuple((p.agonist, p.antagonist) for p in self.pairs),
        )

    @field_validator("vision", mode="before")
    @classmethod
    def _vision(cls, value: Any) -> str | None:
        """`open` / `closed` (also `eyes-open` / `eyes-closed`); anything else means not a Romberg trial."""
        text = str(value).strip().lower().removeprefix("eyes-") if value is not None else ""
        return text if text in ("open", "closed") else None

    @field_validator("muscles", mode="before")
    @classmethod
    def _muscles(cls, value: Any) -> dict[str, str]:
        """Validated at binding; here anything malformed is dropped rather than failing the close."""
        if not isinstance(value, dict):
            return {}
        return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}

    @field_validator("pairs", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> list[dict[str, str]]:
        if not isinstance(value, list):
            return []
        return [
            {"agonist": p["agonist"], "antagonist": p["antagonist"]}
            for p in value
            if isinstance(p, dict)
            and isinstance(p.get("agonist"), str)
            and isinstance(p.get("antagonist"), str)
        ]

    @field_validator("surface", mode="before")
    @classmethod
    def _surface(cls, value: Any) -> str | None:
        text = str(value).strip().lower().removeprefix("surface-") if value is not None else ""
        return text if 0 < len(text) <= 16 else None


class StreamEvent(_In):
    """What every raw event says about its stream."""

    stream: Annotated[str, Field(min_length=1, max_length=64)]
    device: Annotated[str, Field(min_length=1, max_length=64)]
    patient: Annotated[str, Field(min_length=1, max_length=64)]
    session: str | None = None
    stream_type: StreamType
    origin: AwareDatetime | None = None
    protocol: Protocol = Protocol()
    mvc: dict[str, float] | None = None


class FrameReceived(StreamEvent):
    frame: SensorFrame


class StreamClosed(StreamEvent):
    last_sequence: int | None = None
    frames: int | None = None
    samples: int | None = None
    gaps: int | None = None


def _iso(t: datetime) -> str:
    return t.isoformat()


# The namespace of device-metric Observation ids (the ids the evaluation service always stored metrics under).
_METRIC_OBSERVATIONS = uuid.UUID("0c7f3b8e-2d4a-4b6f-9a51-7e2f4c9d8a33")


def metric_observation_id(
    patient: str, device: str, metric: str, start: datetime, end: datetime, channel: str | None = None
) -> str:
    """The id of the Observation one metric over one window of one device's stream for one patient is stored
    as, named in the event (``observation``) so that no consumer needs the rule.

    One Observation per (patient, device, metric, window, channel), so a replayed or recomputed metric names
    the same Observation. The channel (an EMG channel such as ``vastus-medialis-left``, or a pair ``a/b`` for
    co-contraction) tells apart the same metric of several channels over one window; metrics of a whole
    stream (balance) have none, and keep the ids they always had.
    """
    key = f"{patient}|{device}|{metric}|{start.isoformat()}|{end.isoformat()}"
    if channel is not None:
        key += f"|{channel}"
    return str(uuid.uuid5(_METRIC_OBSERVATIONS, key))


def metric_data(stream: StreamEvent, c: Computed) -> dict[str, Any]:
    """The `device.metric-computed.v1` data of one computed metric."""
    data: dict[str, Any] = {
        "patient": stream.patient,
        "device": stream.device,
        "stream": stream.stream,
        "session": stream.session,
        "metric": c.metric.value,
        "window": {"start": _iso(c.start), "end": _iso(c.end)},
        "observation": "Observation/"
        + metric_observation_id(stream.patient, stream.device, c.metric.value, c.start, c.end, c.channel),
        "value": c.value,
        "unit": c.unit,
        "status": c.status,
    }
    if c.channel is not None:
        data["channel"] = c.channel
    muscle = c.muscle or (stream.protocol.muscles.get(c.channel) if c.channel is not None else None)
    if muscle is not None:
        data["muscle"] = muscle
    if c.antagonist is not None:
        data["antagonist"] = c.antagonist
    if c.reason is not None:
        data["reason"] = c.reason
    if c.reference is not None:
        ref = c.reference
        data["reference"] = {"kind": ref.kind, "channel": ref.channel, "muscle": ref.muscle}
    if c.components:
        data["components"] = [{"code": k.code, "value": k.value, "unit": k.unit} for k in c.components]
    if c.samples is not None:
        data["samples"] = c.samples.to_json()
    if c.partial:
        data["partial"] = True
    return data


def metric_event(stream: StreamEvent, c: Computed) -> CloudEvent:
    return CloudEvent.new(SOURCE, METRIC_COMPUTED, stream.patient, metric_data(stream, c))


def completed_data(stream: StreamClosed, computed: Sequence[Computed]) -> dict[str, Any]:
    """The `device.stream-metrics-completed.v1` data: every whole-recording metric of the close, by status."""
    items = []
    for c in computed:
        item: dict[str, Any] = {"metric": c.metric.value}
        if c.channel is not None:
            item["channel"] = c.channel
        muscle = c.muscle or (stream.protocol.muscles.get(c.channel) if c.channel is not None else None)
        if muscle is not None:
            item["muscle"] = muscle
        item["status"] = c.status
        items.append(item)
    return {
        "patient": stream.patient,
        "device": stream.device,
        "stream": stream.stream,
        "session": stream.session,
        "streamType": stream.stream_type.value,
        "metrics": items,
        "gaps": stream.gaps or 0,
    }


def completed_event(stream: StreamClosed, computed: Sequence[Computed]) -> CloudEvent:
    return CloudEvent.new(SOURCE, METRICS_COMPLETED, stream.patient, completed_data(stream, computed))
