"""Events: outbox relay throughput and commit-to-handler latency, PostgreSQL + the real broker.

1. Backlog drain: N events committed while no relay runs, then one relay publishes them
   (events/s from committed row to broker ack and marked published).
2. Consumer backlog: the N events on the broker, one consumer group from the start; events/s
   from its start to the last handler's commit (each handler writes a row; the consumer checks
   and records the event ids in ``processed_event`` and commits the Kafka offsets).
3. Latency: relay and a consumer group running; events committed one per transaction at a
   steady pace; latency = handler start - commit time (p50/p99), including Kafka and the
   consumer's idempotency transaction.
"""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from relearn.devtools.bench import BenchContext, report
from relearn.shared.events import CloudEvent, EventConsumer, OutboxRelay, Topic, ensure_topics, stage
from relearn.shared.migrations import upgrade
from relearn.shared.service import make_engine, transaction


def run(ctx: BenchContext) -> None:
    url = ctx.pg_database("bench_events")
    upgrade("relearn.evaluation", url)
    engine = make_engine(url)
    topic = f"bench.events.{uuid.uuid4().hex[:6]}"
    ensure_topics(ctx.broker.bootstrap, [Topic(topic, 6, ())])

    n = int(5000 * ctx.scale)
    for start in range(0, n, 100):
        with transaction(engine) as session:
            for i in range(start, min(n, start + 100)):
                stage(
                    session,
                    CloudEvent.new("/bench", "bench.happened.v1", f"p{i % 50}", {"i": i}),
                    topic=topic,
                )
    relay = OutboxRelay(engine, ctx.broker.bootstrap, "bench-relay", batch_size=500)
    t0 = time.perf_counter()
    published = 0
    while published < n:
        published += relay.relay_once()
    report(
        "outbox relay: backlog drain (batch 500)", count=n, seconds=time.perf_counter() - t0, unit="events"
    )

    _consume_backlog(ctx, engine, topic, n)

    latencies: list[float] = []
    done = threading.Event()
    m = int(1000 * ctx.scale)

    def handler(session: Session, event: CloudEvent) -> None:
        latencies.append(time.time() - event.data["committed"])
        if len(latencies) >= m:
            done.set()

    consumer = EventConsumer(
        engine, ctx.broker.bootstrap, f"bench-{topic}", [topic], {"bench.timed.v1": handler}
    )
    consumer.start()
    consumer.wait_until_assigned(30)
    relay.start()
    t0 = time.perf_counter()
    for i in range(m):
        with transaction(engine) as session:
            stage(
                session,
                CloudEvent.new("/bench", "bench.timed.v1", f"p{i % 50}", {"committed": time.time()}),
                topic=topic,
            )
        time.sleep(0.005)
    done.wait(60)
    elapsed = time.perf_counter() - t0
    report(
        "commit -> consumer handler (one event per transaction)",
        count=len(latencies),
        seconds=elapsed,
        latencies_s=latencies,
        unit="events",
    )
    relay.stop()
    consumer.stop()
    engine.dispose()


def _consume_backlog(ctx: BenchContext, engine: Engine, topic: str, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_seen (event_id text PRIMARY KEY, i int)"))

    def handler(session: Session, event: CloudEvent) -> None:
        session.connection().execute(
            text("INSERT INTO bench_seen (event_id, i) VALUES (:id, :i)"),
            {"id": event.id, "i": event.data["i"]},
        )

    def consumed() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM bench_seen")).scalar_one())

    consumer = EventConsumer(
        engine, ctx.broker.bootstrap, f"bench-backlog-{topic}", [topic], {"bench.happened.v1": handler}
    )
    consumer.start()
    consumer.wait_until_assigned(30)  # the group join is not the consumer's speed
    t0 = time.perf_counter()
    before = consumed()
    while consumed() < n:
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    consumer.stop()
    report("consumer: backlog drain (handler writes a row)", count=n - before, seconds=seconds, unit="events")
