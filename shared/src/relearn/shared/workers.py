"""Background workers of a service: its outbox relay, its event consumers and its periodic jobs.

They run inside the API process under ``make run`` (``run_workers``) and as a separate
``worker`` command in production; either way they are built here.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session

from relearn.shared.events.consumer import EventConsumer
from relearn.shared.events.kafka import TopicGuard, ensure_topics
from relearn.shared.events.outbox import OutboxRelay
from relearn.shared.events.topics import all_topics
from relearn.shared.settings import ServiceSettings

logger = logging.getLogger(__name__)


class BackgroundWorker(Protocol):
    """What ``Workers`` starts and stops: an event consumer or a periodic job (``group_id`` names it)."""

    group_id: str

    def start(self) -> None: ...

    def stop(self, timeout_s: float = 10.0) -> None: ...


WorkerFactory = Callable[[Engine, ServiceSettings], Sequence[EventConsumer | BackgroundWorker]]


class PeriodicWorker:
    """Runs ``job(session)`` every ``interval_s`` in its own transaction (committed when it returns).

    For work no event triggers, such as a deadline passing. A failing run is logged and retried next time.
    """

    def __init__(
        self, engine: Engine, name: str, job: Callable[[Session], None], *, interval_s: float = 15.0
    ) -> None:
        self.group_id = name
        self._engine = engine
        self._job = job
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        with Session(self._engine) as session:
            self._job(session)
            session.commit()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.run_once()
            except Exception:  # the database may be away: the next run retries
                logger.warning("periodic job failed", extra={"job": self.group_id}, exc_info=True)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"periodic-{self.group_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


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
        self.consumers: list[EventConsumer | BackgroundWorker] = (
            list(consumers(engine, settings)) if consumers else []
        )
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
