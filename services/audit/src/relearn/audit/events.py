"""Events in: the audit topic's ``audit.recorded.v1`` (each service's compact record of one access)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from relearn.audit.schemas import AuditRecord
from relearn.shared.events import AUDIT_EVENTS, CloudEvent, InvalidEvent

CONSUMED_TOPICS = (AUDIT_EVENTS,)
AUDIT_RECORDED = "audit.recorded.v1"


@dataclass(frozen=True)
class Recorded:
    id: str  # the event's id, which becomes the AuditEvent's
    record: AuditRecord


def decode(event: CloudEvent) -> Recorded:
    try:
        return Recorded(event.id, AuditRecord.model_validate(event.data))
    except ValidationError as exc:
        raise InvalidEvent(f"audit.recorded.v1: {exc}") from None
