"""Subscriptions: FHIR rest-hook notifications delivered from the domain events, PostgreSQL + the real broker.

A real HTTP receiver (stdlib, threaded) acknowledges every notification and notes when each event number
arrived. S subscriptions on ``plan-progressed``, each filtered on its own patient.

1. Notifier backlog: N plan.progressed.v1 events per subscription on the broker before the notifier starts;
   events numbered per second (one consumer group, one DB transaction per batch, a row lock per
   subscription) until every one is in the event log.
2. Delivery backlog: the rest-hook sender started on that log; notifications/s (one event per
   notification, max-count 1) and events/s with max-count 20, until the receiver acknowledged every one.
3. Event-to-delivery latency: notifier and sender running, events published at a steady pace; latency =
   the receiver's receipt time - the event's time (p50/p99), through Kafka, the notifier's transaction and
   the sender's poll (SUBSCRIPTIONS_DELIVERY_POLL_S, 0.1 s by default).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kafka import KafkaProducer
from sqlalchemy import text

from relearn.devtools.bench import BenchContext, report
from relearn.shared.events import (
    PLAN_EVENTS,
    CloudEvent,
    EventConsumer,
    all_topics,
    ensure_topics,
    producer_config,
)
from relearn.shared.fhir import CANONICAL_URL
from relearn.shared.migrations import upgrade
from relearn.shared.service import make_engine, transaction
from relearn.subscriptions.config import Settings
from relearn.subscriptions.handlers import notifier_handlers
from relearn.subscriptions.main import build
from relearn.subscriptions.service.delivery import RestHookSender

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                now = time.time()
                status = body["entry"][0]["resource"]["parameter"]
                sub = str(status[0]["valueReference"]["reference"]).rsplit("/", 1)[-1]
                numbers = [
                    int(part["valueString"])
                    for p in status
                    if p["name"] == "notification-event"
                    for part in p["part"]
                    if part["name"] == "event-number"
                ]
                with receiver.lock:
                    for n in numbers:
                        receiver.arrived.setdefault((sub, n), now)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def count(self) -> int:
        with self.lock:
            return len(self.arrived)


def _subscription(endpoint: str, patient: str, max_count: int) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bench",
        "criteria": f"{CANONICAL_URL}/SubscriptionTopic/plan-progressed",
        "_criteria": {
            "extension": [
                {"url": f"{BACKPORT}/backport-filter-criteria", "valueString": f"CarePlan?patient={patient}"}
            ]
        },
        "channel": {
            "extension": [{"url": f"{BACKPORT}/backport-max-count", "valuePositiveInt": max_count}],
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": "id-only"}]
            },
        },
    }


def _wait(predicate: Any, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish")
        time.sleep(0.02)


def run(ctx: BenchContext) -> None:
    ensure_topics(ctx.broker.bootstrap, all_topics())
    producer = KafkaProducer(**producer_config(ctx.broker.bootstrap, "bench-subscriptions"))
    try:
        for max_count in (1, 20):
            _backlog(ctx, producer, max_count)
        _latency(ctx, producer)
    finally:
        producer.close()


def _setup(ctx: BenchContext, name: str, receiver: Receiver, subs_n: int, max_count: int) -> tuple[Any, ...]:
    url = ctx.pg_database(name)
    upgrade("relearn.subscriptions", url)
    engine = make_engine(url)
    settings = Settings(database_url=url, kafka_bootstrap=ctx.broker.bootstrap, environment="test")
    store, subs = build(settings)
    rdef = store.definitions["Subscription"]
    run_id = uuid.uuid4().hex[:6]
    patients = [f"bench-{run_id}-{i}" for i in range(subs_n)]
    with transaction(engine) as session:
        for p in patients:
            store.create(session, rdef, _subscription(receiver.url, p, max_count))
    consumer = EventConsumer(
        engine, ctx.broker.bootstrap, f"bench-notifier-{run_id}", [PLAN_EVENTS], notifier_handlers(subs)
    )
    sender = RestHookSender(engine, subs)
    return engine, subs, patients, consumer, sender


def _publish(producer: KafkaProducer, patient: str, i: int) -> None:
    event = CloudEvent.new(
        "/bench",
        "plan.progressed.v1",
        patient,
        {"patient": patient, "carePlan": f"CarePlan/cp-{patient}", "versionId": i + 2, "kind": "advance"},
    )
    producer.send(PLAN_EVENTS, key=event.key, value=event.to_bytes())


def _numbered(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM subscription_event")).scalar_one())


def _backlog(ctx: BenchContext, producer: KafkaProducer, max_count: int) -> None:
    subs_n, n = 10, max(10, int(300 * ctx.scale))
    receiver = Receiver()
    engine, _, patients, consumer, sender = _setup(
        ctx, f"bench_subs_{max_count}", receiver, subs_n, max_count
    )
    # The handshakes first, so the backlog figure is only notifications.
    sender.start()
    with engine.connect() as conn:
        _wait(
            lambda: (
                conn.execute(
                    text("SELECT count(*) FROM subscription_state WHERE status='active'")
                ).scalar_one()
                == subs_n
            )
        )
    sender.stop()
    for i in range(n):
        for p in patients:
            _publish(producer, p, i)
    producer.flush()
    total = n * subs_n
    if max_count == 1:
        t0 = time.perf_counter()
        consumer.start()
        _wait(lambda: _numbered(engine) >= total)
        report(
            f"notifier: backlog numbered ({subs_n} subscriptions)",
            count=total,
            seconds=time.perf_counter() - t0,
            unit="events",
        )
    else:
        consumer.start()
        _wait(lambda: _numbered(engine) >= total)
    t0 = time.perf_counter()
    sender.start()
    _wait(lambda: receiver.count() >= total)
    label = "one event per notification" if max_count == 1 else f"max-count {max_count}"
    report(
        f"rest-hook: backlog delivered ({label})",
        count=total,
        seconds=time.perf_counter() - t0,
        unit="events",
    )
    sender.stop()
    consumer.stop()
    receiver.server.shutdown()
    engine.dispose()


def _latency(ctx: BenchContext, producer: KafkaProducer) -> None:
    subs_n, n, rate = 5, max(20, int(200 * ctx.scale)), 40.0
    receiver = Receiver()
    engine, _, patients, consumer, sender = _setup(ctx, "bench_subs_latency", receiver, subs_n, 20)
    consumer.start()
    sender.start()
    assert consumer.wait_until_assigned(60)
    with engine.connect() as conn:
        _wait(
            lambda: (
                conn.execute(
                    text("SELECT count(*) FROM subscription_state WHERE status='active'")
                ).scalar_one()
                == subs_n
            )
        )
    # Warm-up: one event per subscription, delivered, so the group has caught up with the topic.
    for p in patients:
        _publish(producer, p, 0)
    producer.flush()
    _wait(lambda: receiver.count() >= subs_n)
    sent: dict[tuple[str, int], float] = {}
    t0 = time.perf_counter()
    for i in range(n):
        p = patients[i % subs_n]
        sent[(p, i // subs_n + 2)] = time.time()
        _publish(producer, p, i)
        producer.flush()
        time.sleep(max(0.0, t0 + (i + 1) / rate - time.perf_counter()))
    _wait(lambda: receiver.count() >= n + subs_n)
    elapsed = time.perf_counter() - t0
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT filters, id FROM subscription_state")).all())
    by_patient = {json.loads(f)["patient"].removeprefix("Patient/"): sid for f, sid in ids.items()}
    latencies = [receiver.arrived[(by_patient[p], k)] - at for (p, k), at in sent.items()]
    report(
        f"event-to-delivery at {rate:.0f} events/s",
        count=n,
        seconds=elapsed,
        latencies_s=latencies,
        unit="events",
    )
    sender.stop()
    consumer.stop()
    receiver.server.shutdown()
    engine.dispose()
