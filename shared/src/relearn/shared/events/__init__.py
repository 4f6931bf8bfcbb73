"""Events: the CloudEvents envelope, topics, the transactional outbox and the consumer runner."""

from relearn.shared.events.consumer import EventConsumer, Handler, ProcessedEvent
from relearn.shared.events.envelope import CloudEvent, InvalidEvent
from relearn.shared.events.outbox import OutboxEvent, OutboxRelay, stage
from relearn.shared.events.topics import all_topics, dlq, topic_for

__all__ = [
    "CloudEvent",
    "EventConsumer",
    "Handler",
    "InvalidEvent",
    "OutboxEvent",
    "OutboxRelay",
    "ProcessedEvent",
    "all_topics",
    "dlq",
    "stage",
    "topic_for",
]
