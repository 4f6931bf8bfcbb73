"""Events in: the audit topic's ``audit.recorded.v1`` (the AuditEvent is the event's data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relearn.shared.events import AUDIT_EVENTS, CloudEvent, InvalidEvent

CONSUMED_TOPICS = (AUDIT_EVENTS,)
AUDIT_RECORDED = "audit.recorded.v1"


@dataclass(frozen=True)
class Recorded:
    id: str
    resource: dict[str, Any]


def decode(event: CloudEvent) -> Recorded:
    data = dict(event.data)
    if data.get("resourceType") != "AuditEvent":
        raise InvalidEvent("audit.recorded.v1 data is not an AuditEvent")
    data["id"] = event.id
    return Recorded(event.id, data)
