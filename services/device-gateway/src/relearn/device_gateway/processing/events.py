"""The events the metrics processor reads (raw frame / stream-closed, docs GATEWAY) and the ones it writes.

In: `device.{emg,balance}-frame-received.v1` and `device.{emg,balance}-stream-closed.v1` on the raw topics,
subject = device id. Out, on `relearn.device.metrics`, subject = patient id, at a trial's close (a trial is
one stream binding's recording):

- `device.trial-summarized.v1`, one per metric code of the trial: `{patient, device, stream, session,
  streamType, metric, unit, trial: {start, end}, observation, results: [{channel?, muscle?, antagonist?,
  value, unit, status, reason?, reference?, components?, samples?, series?, partial?}], windows?: {periodMs,
  count, partial, gaps: [{index, reason}], gapCount, cut}, partial?}`; `metric` a code of the evaluation
  CodeSystem, `observation` the `Observation/<id>` the summary is stored as (:func:`trial_observation_id`),
  `series` a channel's 1 s window values as FHIR SampledData ("E" for a gap);
- then `device.stream-metrics-completed.v1`: `{patient, device, stream, session, streamType, metrics:
  [{metric, channel?, muscle?, status}], gaps}` (docs/events.md).

Window metrics are not sent: they are kept in `metrics_window` and served by `GET /streams/{id}/windows`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from relearn.device_gateway.processing.domain import (
    MAX_GAP_NOTES,
    WINDOW_PERIOD_MS,
    Computed,
    EmgProtocol,
    Samples,
    TrialSummary,
)
from relearn.device_gateway.signals.frames import SensorFrame, StreamType
from relearn.shared.events import CloudEvent

SOURCE = "/relearn/device-gateway/metrics"

EMG_FRAME = "device.emg-frame-received.v1"
BALANCE_FRAME = "device.balance-frame-received.v1"
EMG_CLOSED = "device.emg-stream-closed.v1"
BALANCE_CLOSED = "device.balance-stream-closed.v1"
# Sent per window and per whole-recording metric until trial summaries replaced it; no longer produced
# (consumers still read it: events already in the log).
METRIC_COMPUTED = "device.metric-computed.v1"
TRIAL_SUMMARIZED = "device.trial-summarized.v1"
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
# The namespace of trial-summary Observation ids.
_TRIAL_OBSERVATIONS = uuid.UUID("5d0e6a2c-8f31-4c7b-b2e4-93a1f6d7c815")


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


def _channel_data(stream: StreamEvent, c: Computed, series: Samples | None) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if c.channel is not None:
        item["channel"] = c.channel
    muscle = c.muscle or (stream.protocol.muscles.get(c.channel) if c.channel is not None else None)
    if muscle is not None:
        item["muscle"] = muscle
    if c.antagonist is not None:
        item["antagonist"] = c.antagonist
    item["value"] = c.value
    item["unit"] = c.unit
    item["status"] = c.status
    if c.reason is not None:
        item["reason"] = c.reason
    if c.reference is not None:
        ref = c.reference
        item["reference"] = {"kind": ref.kind, "channel": ref.channel, "muscle": ref.muscle}
    if c.components:
        item["components"] = [{"code": k.code, "value": k.value, "unit": k.unit} for k in c.components]
    if c.samples is not None:
        item["samples"] = c.samples.to_json()
    if series is not None:
        item["series"] = series.to_json()
    if c.partial:
        item["partial"] = True
    return item


def trial_observation_id(patient: str, device: str, stream: str, metric: str) -> str:
    """The id of the Observation one metric of one trial (a stream binding's recording) is stored as: one per
    (patient, device, stream, metric), so a re-delivered or recomputed summary names the same Observation."""
    return str(uuid.uuid5(_TRIAL_OBSERVATIONS, f"{patient}|{device}|{stream}|{metric}"))


def trial_data(stream: StreamEvent, t: TrialSummary) -> dict[str, Any]:
    """The `device.trial-summarized.v1` data of one metric of a closed trial (docs/events.md)."""
    data: dict[str, Any] = {
        "patient": stream.patient,
        "device": stream.device,
        "stream": stream.stream,
        "session": stream.session,
        "streamType": stream.stream_type.value,
        "metric": t.metric.value,
        "unit": t.unit,
        "trial": {"start": _iso(t.start), "end": _iso(t.end)},
        "observation": "Observation/"
        + trial_observation_id(stream.patient, stream.device, stream.stream, t.metric.value),
        "results": [_channel_data(stream, r.result, r.series) for r in t.results],
    }
    if t.windows:
        data["windows"] = {
            "periodMs": WINDOW_PERIOD_MS,
            "count": t.windows,
            "partial": t.partial_windows,
            "gaps": [{"index": i, "reason": why} for i, why in t.gaps[:MAX_GAP_NOTES]],
            "gapCount": len(t.gaps),
            "cut": t.series_cut,
        }
    if t.partial:
        data["partial"] = True
    return data


def trial_event(stream: StreamEvent, t: TrialSummary) -> CloudEvent:
    return CloudEvent.new(SOURCE, TRIAL_SUMMARIZED, stream.patient, trial_data(stream, t))


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
