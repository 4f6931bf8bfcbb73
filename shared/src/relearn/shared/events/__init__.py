"""Events: the CloudEvents envelope, topics, the transactional outbox and the consumer runner."""

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
from relearn.shared.events.outbox import OutboxEvent, OutboxRelay, stage
from relearn.shared.events.topics import TOPICS, Topic, all_topics, dlq, topic_for

__all__ = [
    "TOPICS",
    "CloudEvent",
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
    "topic_for",
]
