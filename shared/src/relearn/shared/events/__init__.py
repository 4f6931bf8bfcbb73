"""Events: the CloudEvents envelope, topics, the transactional outbox and the consumer runner.

The public surface for services: ``from relearn.shared.events import CloudEvent, Handler, stage, ...``;
the submodules are the implementation. ``Handler`` is the one type of a consumer handler.
"""

from relearn.shared.events.consumer import EventConsumer, Handler, ProcessedEvent
from relearn.shared.events.envelope import CloudEvent, InvalidEvent
from relearn.shared.events.kafka import (
    admin_client,
    broker_reachable,
    consumer_config,
    ensure_topics,
    make_consumer,
    producer_config,
)
from relearn.shared.events.outbox import EncodedEvent, OutboxEvent, OutboxRelay, stage, stage_many
from relearn.shared.events.topics import (
    AUDIT_EVENTS,
    DEVICE_METRICS,
    DEVICE_RAW_BALANCE,
    DEVICE_RAW_EMG,
    EVALUATION_EVENTS,
    PLAN_EVENTS,
    REPORTS_EVENTS,
    SESSIONS_EVENTS,
    TOPICS,
    Topic,
    all_topics,
    dlq,
    topic_for,
)

__all__ = [
    "AUDIT_EVENTS",
    "DEVICE_METRICS",
    "DEVICE_RAW_BALANCE",
    "DEVICE_RAW_EMG",
    "EVALUATION_EVENTS",
    "PLAN_EVENTS",
    "REPORTS_EVENTS",
    "SESSIONS_EVENTS",
    "TOPICS",
    "CloudEvent",
    "EncodedEvent",
    "EventConsumer",
    "Handler",
    "InvalidEvent",
    "OutboxEvent",
    "OutboxRelay",
    "ProcessedEvent",
    "Topic",
    "admin_client",
    "all_topics",
    "broker_reachable",
    "consumer_config",
    "dlq",
    "ensure_topics",
    "make_consumer",
    "producer_config",
    "stage",
    "stage_many",
    "topic_for",
]
