"""The raw events the gateway stages in its outbox: one per accepted frame, one when a stream closes.

Both go to the stream type's raw topic (``relearn.device.raw.emg`` / ``relearn.device.raw.balance``) with the
device id as subject (= partition key), so one device's frames and its stream-closed event stay in order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from relearn.device_gateway.signals.frames import SensorFrame, StreamType
from relearn.shared.events import CloudEvent, EncodedEvent

SOURCE = "/relearn/device-gateway"

EMG_FRAME = "device.emg-frame-received.v1"
BALANCE_FRAME = "device.balance-frame-received.v1"
EMG_CLOSED = "device.emg-stream-closed.v1"
BALANCE_CLOSED = "device.balance-stream-closed.v1"


class Binding(Protocol):
    """What the events say about a binding (a ``device_stream`` row has it all)."""

    id: str
    device_id: str
    patient_id: str
    session_id: str | None
    stream_type: str
    origin: datetime | None
    protocol: dict[str, Any]
    mvc: dict[str, Any] | None
    targets: dict[str, Any] | None
    next_sequence: int
    frames: int
    samples: int
    gap_count: int
    closed_at: datetime | None


def aware(value: datetime | None) -> datetime | None:
    # SQLite hands timestamps back naive; they were stored in UTC.
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


def frame_event_type(stream_type: StreamType | str) -> str:
    return EMG_FRAME if StreamType(stream_type) is StreamType.EMG else BALANCE_FRAME


def closed_event_type(stream_type: StreamType | str) -> str:
    return EMG_CLOSED if StreamType(stream_type) is StreamType.EMG else BALANCE_CLOSED


def _iso(value: datetime | None) -> str | None:
    value = aware(value)
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _binding(stream: Binding) -> dict[str, Any]:
    return {
        "stream": stream.id,
        "device": stream.device_id,
        "patient": stream.patient_id,
        "session": stream.session_id,
        "streamType": stream.stream_type,
        "origin": _iso(stream.origin),
        "protocol": dict(stream.protocol or {}),
        "mvc": stream.mvc,
    }


def frame_event(stream: Binding, frame: SensorFrame) -> EncodedEvent:
    """``device.<emg|balance>-frame-received.v1``: the binding's context and the frame as sent (camelCase).

    Encoded once, straight to bytes: the envelope (with the binding's context as ``data``) is dumped and
    the frame's JSON, serialised from the validated model in pydantic's core, is spliced in as
    ``data.frame``, so thousands of samples never become Python floats again. The bytes are the same JSON
    as ``CloudEvent(..., data={..., "frame": frame.to_wire()}).to_bytes()``.
    """
    data = {**_binding(stream), "targets": stream.targets}
    envelope = CloudEvent.new(SOURCE, frame_event_type(stream.stream_type), frame.device_id, data)
    head = envelope.to_bytes()
    # ``data`` is the envelope's last member: `..."data":{...}}`; put `,"frame":...` before its `}}`.
    if not head.endswith(b"}}"):
        raise AssertionError("unexpected CloudEvent JSON layout")
    payload = b"".join((head[:-2], b',"frame":', frame.wire_json(), b"}}"))
    return EncodedEvent(envelope.id, envelope.type, envelope.subject, payload)


def closed_event(stream: Binding) -> CloudEvent:
    """``device.<emg|balance>-stream-closed.v1``: what a processor needs to finish the recording."""
    data = {
        **_binding(stream),
        "targets": stream.targets,
        "lastSequence": stream.next_sequence - 1 if stream.frames else None,
        "frames": stream.frames,
        "samples": stream.samples,
        "gaps": stream.gap_count,
        "closedAt": _iso(stream.closed_at),
    }
    return CloudEvent.new(SOURCE, closed_event_type(stream.stream_type), stream.device_id, data)
