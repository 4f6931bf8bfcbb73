"""Nothing lost through a notifier SIGKILL, a broker restart and a receiver outage (issue 17's "done when").

The service runs as its own process (``relearn-subscriptions serve`` with its workers), on its own broker
(restarted here; Tansu's durable ``s3`` engine against a local S3, so topics and the notifier's committed
offsets survive the restart as they do on Kafka; a broker that forgets them is test_lost_offsets.py), a fresh
PostgreSQL database, a real HTTP receiver and a real websocket client. The events are a patient's journey as
the services publish it (evaluation, activation, sessions with device metrics, progressions, stage changes, a
therapist task, a re-assessment whose goals are achieved), each subscription on one of the eight topics.
The receiver outage lasts ``RELEARN_TEST_SUBSCRIPTION_OUTAGE_S`` seconds (default 120, the issue's figure).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from relearn.devtools.apps import AUDIENCE, FHIR_BASE, ISSUER, make_issuer, wait_for
from relearn.devtools.broker import LocalS3, TansuBroker, free_port
from relearn.shared.events import CloudEvent, producer_config, topic_for
from relearn.shared.fhir import CANONICAL_URL
from relearn.shared.migrations import upgrade

OUTAGE_S = float(os.environ.get("RELEARN_TEST_SUBSCRIPTION_OUTAGE_S", "120"))
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


class Service:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.url, self.log = env, f"http://127.0.0.1:{port}", log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        script = str(Path(sys.executable).parent / "relearn-subscriptions")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [script, "serve"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout_s=240, what="the subscriptions service")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    s3 = LocalS3(tmp_path_factory.mktemp("own-s3"))
    s3.start()
    b = TansuBroker(log_dir=tmp_path_factory.mktemp("own-broker"), s3=s3)
    b.start()
    yield b
    b.stop()
    s3.stop()


@pytest.fixture
def running(
    own_broker: TansuBroker, pg_database: Callable[[str], str], tmp_path: Path
) -> Iterator[tuple[Service, Any]]:
    issuer = make_issuer(tmp_path / "keys")
    url = pg_database("subscriptions_crash")
    upgrade("relearn.subscriptions", url)
    port = free_port()
    env = {
        **os.environ,
        "SUBSCRIPTIONS_DATABASE_URL": url,
        "SUBSCRIPTIONS_PORT": str(port),
        "SUBSCRIPTIONS_KAFKA_BOOTSTRAP": own_broker.bootstrap,
        "SUBSCRIPTIONS_AUTH_JWKS": str(issuer.publish()),
        "SUBSCRIPTIONS_AUTH_ISSUER": ISSUER,
        "SUBSCRIPTIONS_AUTH_AUDIENCE": AUDIENCE,
        "SUBSCRIPTIONS_FHIR_BASE_URL": FHIR_BASE,
        "SUBSCRIPTIONS_ENVIRONMENT": "test",
        "SUBSCRIPTIONS_RETRY_BASE_S": "0.2",
        "SUBSCRIPTIONS_RETRY_CAP_S": "2",
        "SUBSCRIPTIONS_DELIVERY_POLL_S": "0.05",
    }
    service = Service(env, port, tmp_path / "service.log")
    service.start()
    yield service, issuer
    service.stop()


TOPICS = (
    "plan-activated",
    "plan-progressed",
    "competence-stage-changed",
    "goal-achieved",
    "evaluation-completed",
    "session-logged",
    "device-metric-recorded",
    "therapist-task-raised",
)


def journey_events(
    patient: str, part: str, plan_version: list[int]
) -> list[tuple[str, dict[str, Any], tuple[str, ...]]]:
    """One part of a patient's course as the services publish it: (event type, data, the topics it raises)."""
    plan = f"CarePlan/cp-{patient}"
    out: list[tuple[str, dict[str, Any], tuple[str, ...]]] = []

    def plan_event(event_type: str, topics: tuple[str, ...], **data: Any) -> None:
        plan_version[0] += 1
        base = {"carePlan": plan, "versionId": plan_version[0], "patient": patient, "status": "active"}
        out.append((event_type, base | data, topics))

    if part == "start":
        out.append(
            (
                "evaluation.completed.v1",
                {"evaluation": f"Observation/ev-{patient}", "kind": "initial"},
                ("evaluation-completed",),
            )
        )
        plan_event("plan.drafted.v1", ())
        plan_event("plan.activated.v1", ("plan-activated",), activities=[{"pattern": "sit-to-stand"}])
        return out
    if part == "end":
        out.append(
            (
                "evaluation.reassessed.v1",
                {"evaluation": f"Observation/re-{patient}", "kind": "reassessment"},
                ("evaluation-completed",),
            )
        )
        goals = [
            {
                "goal": f"Goal/g1-{patient}",
                "versionId": 2,
                "lifecycleStatus": "completed",
                "achievementStatus": "achieved",
                "achieved": True,
            },
            {
                "goal": f"Goal/g2-{patient}",
                "versionId": 2,
                "lifecycleStatus": "active",
                "achievementStatus": "improving",
                "achieved": False,
            },
        ]
        plan_event("plan.updated.v1", ("goal-achieved",), reason="re-assessment applied", goals=goals)
        return out
    session = f"Encounter/{part}-{patient}"
    out.append(
        (
            "session.logged.v1",
            {"session": session, "setting": "clinic", "exercises": [{"pattern": "sit-to-stand"}]},
            ("session-logged",),
        )
    )
    for metric in ("emg-rms", "sway-ellipse-area"):
        out.append(
            (
                "device.metric-computed.v1",
                {
                    "metric": metric,
                    "observation": f"Observation/{metric}-{part}-{patient}",
                    "session": session,
                },
                ("device-metric-recorded",),
            )
        )
    plan_event(
        "plan.progressed.v1",
        ("plan-progressed", "therapist-task-raised"),
        kind="advance",
        pattern="sit-to-stand",
        stage="associative",
        task=f"Task/{part}-{patient}",
    )
    plan_event(
        "plan.stage-changed.v1", ("competence-stage-changed",), pattern="sit-to-stand", stage="autonomous"
    )
    plan_event("plan.updated.v1", (), reason="dose unchanged: hold", goals=[])
    return out


def _publish(bootstrap: str, patient: str, events: list[tuple[str, dict[str, Any], tuple[str, ...]]]) -> None:
    """A new producer each time (the broker may have restarted since)."""
    producer = KafkaProducer(**producer_config(bootstrap, f"crash-test-{uuid.uuid4().hex[:6]}"))
    try:
        for event_type, data, _ in events:
            event = CloudEvent.new("/relearn/test", event_type, patient, {"patient": patient, **data})
            producer.send(topic_for(event_type), key=event.key, value=event.to_bytes()).get(timeout=60)
    finally:
        producer.close()


def _subscription(patient: str, topic: str, *, channel: dict[str, Any]) -> dict[str, Any]:
    focus = TOPIC_FOCUS[topic]
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": f"crash test: {topic}",
        "criteria": f"{CANONICAL_URL}/SubscriptionTopic/{topic}",
        "_criteria": {
            "extension": [
                {"url": f"{BACKPORT}/backport-filter-criteria", "valueString": f"{focus}?patient={patient}"}
            ]
        },
        "channel": {
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": "id-only"}]
            },
            **channel,
        },
    }


TOPIC_FOCUS = {
    "plan-activated": "CarePlan",
    "plan-progressed": "CarePlan",
    "competence-stage-changed": "CarePlan",
    "goal-achieved": "Goal",
    "evaluation-completed": "Observation",
    "session-logged": "Encounter",
    "device-metric-recorded": "Observation",
    "therapist-task-raised": "Task",
}


class Api:
    def __init__(self, service: Service, issuer: Any) -> None:
        self.url = service.url
        self.auth = {"Authorization": f"Bearer {issuer.mint('relearn-dev', 'system/*.read system/*.write')}"}

    def create(self, body: dict[str, Any]) -> str:
        resp = httpx.post(f"{self.url}/fhir/Subscription", json=body, headers=self.auth, timeout=30)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def numbered(self, sid: str) -> int:
        resp = httpx.get(f"{self.url}/fhir/Subscription/{sid}/$status", headers=self.auth, timeout=10)
        params = resp.json()["entry"][0]["resource"]["parameter"]
        return int(next(p["valueString"] for p in params if p["name"] == "events-since-subscription-start"))

    def events(self, sid: str, since: int, until: int) -> dict[int, str]:
        """``$events``: event number -> focus, for the range."""
        bundle = httpx.get(
            f"{self.url}/fhir/Subscription/{sid}/$events",
            params={"eventsSinceNumber": since, "eventsUntilNumber": until},
            headers=self.auth,
            timeout=30,
        ).json()
        return _events_of(bundle)

    def ws_token(self, sid: str) -> str:
        resp = httpx.post(
            f"{self.url}/fhir/Subscription/{sid}/$get-ws-binding-token", headers=self.auth, timeout=30
        )
        assert resp.status_code == 200, resp.text
        return str(next(p["valueString"] for p in resp.json()["parameter"] if p["name"] == "token"))


def _events_of(bundle: dict[str, Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for p in bundle["entry"][0]["resource"]["parameter"]:
        if p["name"] == "notification-event":
            parts = {part["name"]: part for part in p["part"]}
            out[int(parts["event-number"]["valueString"])] = parts["focus"]["valueReference"]["reference"]
    return out


def _sid_of(bundle: dict[str, Any]) -> str:
    params = bundle["entry"][0]["resource"]["parameter"]
    return str(next(p["valueReference"]["reference"] for p in params if p["name"] == "subscription")).rsplit(
        "/", 1
    )[1]


def _kind_of(bundle: dict[str, Any]) -> str:
    params = bundle["entry"][0]["resource"]["parameter"]
    return str(next(p["valueCode"] for p in params if p["name"] == "type"))


@pytest.mark.slow
@pytest.mark.timeout(OUTAGE_S + 600)  # the outage itself, then start-ups, catch-up and delivery
def test_every_notification_of_a_journey_arrives_through_sigkill_broker_restart_and_outage(
    running: tuple[Service, Any], own_broker: TansuBroker, receiver: Any
) -> None:
    service, issuer = running
    api = Api(service, issuer)
    patient = f"p-{uuid.uuid4().hex[:8]}"
    subs = {
        topic: api.create(
            _subscription(
                patient,
                topic,
                channel={
                    "type": "rest-hook",
                    "endpoint": receiver.url,
                    "extension": [{"url": f"{BACKPORT}/backport-timeout", "valueUnsignedInt": 2}],
                },
            )
        )
        for topic in TOPICS
    }
    by_sid = {sid: topic for topic, sid in subs.items()}
    expected = dict.fromkeys(TOPICS, 0)
    version = [0]

    def publish(part: str) -> None:
        events = journey_events(patient, part, version)
        for _, _, topics in events:
            for topic in topics:
                expected[topic] += 1
        _publish(own_broker.bootstrap, patient, events)

    def all_numbered() -> bool:
        return all(api.numbered(subs[t]) == expected[t] for t in TOPICS)

    def received() -> dict[str, list[tuple[str, int, str]]]:
        """Per topic: (bundle id, event number, focus) of every event notification that arrived."""
        out: dict[str, list[tuple[str, int, str]]] = {t: [] for t in TOPICS}
        for r in receiver.of_kind("event-notification"):
            for n, focus in _events_of(r.bundle).items():
                out[by_sid[_sid_of(r.bundle)]].append((r.bundle["id"], n, focus))
        return out

    def all_arrived() -> bool:
        got = received()
        return all({n for _, n, _ in got[t]} >= set(range(1, expected[t] + 1)) for t in TOPICS)

    wait_for(
        lambda: {_sid_of(r.bundle) for r in receiver.of_kind("handshake")} >= set(by_sid),
        what="the handshakes",
    )
    publish("start")
    publish("session-1")
    wait_for(all_arrived, timeout_s=120, what="the first part of the journey")

    receiver.up = False  # the outage starts
    outage_started = time.monotonic()
    publish("session-2")
    wait_for(all_numbered, timeout_s=120, what="events numbered during the outage")

    service.kill()  # SIGKILL: no clean shutdown of the notifier or the sender
    publish("session-3")  # waiting on the broker for the notifier
    service.start()
    wait_for(all_numbered, timeout_s=240, what="the notifier to catch up after SIGKILL")

    own_broker.restart()  # durable: the notifier reconnects and goes on from its committed offsets
    time.sleep(2)
    publish("session-4")
    publish("end")
    wait_for(all_numbered, timeout_s=240, what="events after the broker restart")

    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
    outage_s = time.monotonic() - outage_started
    refused = receiver.refused
    receiver.up = True  # the outage ends
    wait_for(all_arrived, timeout_s=300, what="every event")

    got = received()
    total = duplicates = 0
    for topic in TOPICS:
        numbers = [n for _, n, _ in got[topic]]
        assert sorted(set(numbers)) == list(range(1, expected[topic] + 1)), f"{topic}: none lost"
        # At-least-once: a duplicate is the same event number again (in another bundle, or the same
        # bundle resent), always naming the same focus; the receiver keeps the first.
        first: dict[int, str] = {}
        for _, n, focus in got[topic]:
            assert first.setdefault(n, focus) == focus, f"{topic}: event {n} named two foci"
        total += len(numbers)
        duplicates += len(numbers) - len(set(numbers))
        # Any gap is recoverable: $events hands back every number of the log with its focus.
        assert api.events(subs[topic], 1, expected[topic]) == first
    assert expected["goal-achieved"] == 1 and got["goal-achieved"][0][2].endswith(f"Goal/g1-{patient}")
    assert refused > 0 and outage_s >= OUTAGE_S
    events = sum(expected.values())
    print(
        f"\n  {events} events on {len(TOPICS)} topics: {total} notified ({duplicates} duplicates), "
        f"{refused} refused during a {outage_s:.0f} s outage"
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_websocket_client_gets_every_notification_through_a_notifier_sigkill(
    running: tuple[Service, Any], own_broker: TansuBroker
) -> None:
    service, issuer = running
    api = Api(service, issuer)
    patient = f"p-{uuid.uuid4().hex[:8]}"
    sid = api.create(
        _subscription(
            patient,
            "plan-progressed",
            channel={
                "type": "websocket",
                "extension": [{"url": f"{BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": 3}],
            },
        )
    )
    ws_url = service.url.replace("http://", "ws://") + "/subscriptions/ws"
    bundles: list[dict[str, Any]] = []
    lock = threading.Lock()

    def listen(token: str) -> tuple[threading.Thread, threading.Event]:
        """A client bound with ``token`` recording every bundle until the socket closes or ``hang_up``."""
        bound, hang_up = threading.Event(), threading.Event()

        def run() -> None:
            with contextlib.suppress(ConnectionClosed, OSError), connect(ws_url, open_timeout=30) as ws:
                ws.send(f"bind-with-token {token}")
                bound.set()
                while not hang_up.is_set():
                    with contextlib.suppress(TimeoutError):
                        message = ws.recv(timeout=0.2)
                        with lock:
                            bundles.append(json.loads(message))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert bound.wait(30), "the socket connected"
        return thread, hang_up

    def kinds(kind: str) -> list[dict[str, Any]]:
        with lock:
            return [b for b in bundles if _kind_of(b) == kind]

    def numbers() -> set[int]:
        return {n for b in kinds("event-notification") for n in _events_of(b)}

    def progressed(parts: tuple[str, ...]) -> int:
        events = [e for part in parts for e in journey_events(patient, part, version)]
        _publish(own_broker.bootstrap, patient, events)
        return len([e for e in events if "plan-progressed" in e[2]])

    def acknowledged() -> int:
        resp = httpx.get(f"{service.url}/subscriptions/{sid}/delivery", headers=api.auth, timeout=10)
        return int(resp.json()["acknowledgedThrough"])

    version = [0]
    first, hang_up = listen(api.ws_token(sid))
    wait_for(lambda: kinds("handshake"), what="the handshake")
    total = progressed(("session-1", "session-2"))
    wait_for(lambda: numbers() >= set(range(1, total + 1)), timeout_s=120, what="the first notifications")
    wait_for(lambda: kinds("heartbeat"), what="a heartbeat")

    # The client hangs up; the server learns it only when it next sends: what it sends until then (events
    # counted as delivered once sent on the socket) is a gap the client fills with $events.
    hang_up.set()
    first.join(30)
    total += progressed(("session-3",))
    wait_for(lambda: api.numbered(sid) == total, timeout_s=120, what="events numbered while hung up")
    with contextlib.suppress(AssertionError):
        wait_for(lambda: acknowledged() == total, timeout_s=10, what="sent into the closed socket")

    service.kill()  # SIGKILL: the notifier and the socket server go with the process
    total += progressed(("session-4", "session-5"))  # while the client is disconnected
    service.start()
    wait_for(lambda: api.numbered(sid) == total, timeout_s=240, what="the notifier to catch up")

    beats = len(kinds("heartbeat"))
    listen(api.ws_token(sid))  # a new token binds the reconnected socket
    wait_for(lambda: len(kinds("handshake")) == 2, what="the second handshake")
    wait_for(lambda: max(numbers()) == total, timeout_s=120, what="what came while disconnected")
    wait_for(lambda: len(kinds("heartbeat")) > beats, what="heartbeats after the reconnect")
    # The numbers show any gap; $events fills it.
    missing = set(range(1, total + 1)) - numbers()
    recovered = api.events(sid, min(missing), max(missing)) if missing else {}
    assert numbers() | set(recovered) == set(range(1, total + 1))
    assert all(f.endswith(f"CarePlan/cp-{patient}") for f in recovered.values())
    beats = len(kinds("heartbeat"))
    print(f"\n  websocket: {total} events, {len(missing)} recovered with $events, {beats} heartbeats")
