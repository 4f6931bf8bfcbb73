"""Events in: the domain events the notifier consumes, read as topic triggers (it publishes none)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from relearn.shared.events import DEVICE_METRICS, EVALUATION_EVENTS, PLAN_EVENTS, SESSIONS_EVENTS, CloudEvent
from relearn.subscriptions.domain.topics import TOPICS, Trigger, triggers

CONSUMED_TOPICS = (PLAN_EVENTS, EVALUATION_EVENTS, SESSIONS_EVENTS, DEVICE_METRICS)
EVENT_TYPES = tuple(sorted({t for topic in TOPICS for t in topic.event_types}))


@dataclass(frozen=True)
class Incoming:
    id: str
    type: str
    time: datetime
    triggers: list[Trigger]


def decode(event: CloudEvent) -> Incoming:
    return Incoming(event.id, event.type, event.time, triggers(event.type, event.subject, event.data))
