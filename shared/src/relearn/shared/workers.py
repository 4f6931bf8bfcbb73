"""Background workers of a service: its outbox relay and its event consumers.

They run inside the API process under ``make run`` (``run_workers``) and as a separate
``worker`` command in production; either way they are built here.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence

from sqlalchemy.engine import Engine

from relearn.shared.events.consumer import EventConsumer
from relearn.shared.events.kafka import TopicGuard, ensure_topics
from relearn.shared.events.outbox import OutboxRelay
from relearn.shared.events.topics import all_topics
from relearn.shared.settings import ServiceSettings

logger = logging.getLogger(__name__)

WorkerFactory = Callable[[Engine, ServiceSettings], Sequence[EventConsumer]]


class Workers:
    """The relay plus the consumers a service declares; started and stopped together."""

    def __init__(self, engine: Engine, settings: ServiceSettings, consumers: WorkerFactory | None) -> None:
        self.settings = settings
        # A local broker (create_topics): topics a broker restart lost are re-created as declared.
        guard = TopicGuard(settings.kafka_bootstrap, all_topics()) if settings.create_topics else None
        self.relay = OutboxRelay(
            engine,
            settings.kafka_bootstrap,
            client_id=f"{settings.service_name}-relay",
            retention_s=settings.outbox_retention_s,
            topic_guard=guard,
        )
        self.consumers: list[EventConsumer] = list(consumers(engine, settings)) if consumers else []
        self._started = False

    def start(self) -> None:
        if self.settings.create_topics:
            try:
                ensure_topics(self.settings.kafka_bootstrap, all_topics())
            except Exception:  # the broker may be down: the relay and consumers retry on their own
                logger.warning("could not ensure topics; will rely on retries", exc_info=True)
        self.relay.start()
        for consumer in self.consumers:
            consumer.start()
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        for consumer in self.consumers:
            consumer.stop()
        self.relay.stop()
        self._started = False


def run_until_signalled(workers: Workers) -> None:
    """The production ``worker`` command: run relay and consumers until SIGTERM/SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    workers.start()
    logger.info("workers running", extra={"consumers": len(workers.consumers)})
    stop.wait()
    workers.stop()
