"""Every topic name, its partitions and the event types it carries: the one place for them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    event_types: tuple[str, ...]


EVALUATION_EVENTS = "relearn.evaluation.events"
PLAN_EVENTS = "relearn.plan.events"
SESSIONS_EVENTS = "relearn.sessions.events"
DEVICE_METRICS = "relearn.device.metrics"
DEVICE_RAW_EMG = "relearn.device.raw.emg"
DEVICE_RAW_BALANCE = "relearn.device.raw.balance"
# One AuditEvent per access to any service (IHE BALP shaped), stored by the audit service.
AUDIT_EVENTS = "relearn.audit.events"
REPORTS_EVENTS = "relearn.reports.events"

TOPICS: tuple[Topic, ...] = (
    Topic(
        EVALUATION_EVENTS,
        6,
        ("evaluation.completed.v1", "evaluation.reassessed.v1", "observation.recorded.v1"),
    ),
    Topic(
        PLAN_EVENTS,
        6,
        (
            "plan.drafted.v1",
            "plan.activated.v1",
            "plan.progressed.v1",
            "plan.stage-changed.v1",
            "plan.updated.v1",
            "plan.discharged.v1",
        ),
    ),
    Topic(REPORTS_EVENTS, 3, ("report.requested.v1", "report.issued.v1")),
    Topic(SESSIONS_EVENTS, 6, ("session.logged.v1", "session.symptoms-recorded.v1")),
    # device.metric-computed.v1 is no longer produced (trial summaries replaced it): the log still has some.
    Topic(
        DEVICE_METRICS,
        6,
        ("device.metric-computed.v1", "device.trial-summarized.v1", "device.stream-metrics-completed.v1"),
    ),
    # Raw sensor frames are keyed by device so each stream stays in order.
    Topic(DEVICE_RAW_EMG, 12, ("device.emg-frame-received.v1", "device.emg-stream-closed.v1")),
    Topic(DEVICE_RAW_BALANCE, 12, ("device.balance-frame-received.v1", "device.balance-stream-closed.v1")),
    Topic(AUDIT_EVENTS, 6, ("audit.recorded.v1",)),
)

DLQ_PARTITIONS = 1

_BY_TYPE = {event_type: t.name for t in TOPICS for event_type in t.event_types}


def topic_for(event_type: str) -> str:
    """The topic an event type is published on; KeyError for an undeclared type."""
    try:
        return _BY_TYPE[event_type]
    except KeyError:
        raise KeyError(f"event type {event_type!r} is not declared in relearn.shared.events.topics") from None


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics() -> list[Topic]:
    """The topics and their dead-letter topics, for creation at start-up or by deployment."""
    return [*TOPICS, *(Topic(dlq(t.name), DLQ_PARTITIONS, ()) for t in TOPICS)]
