"""The subscriptions service on real HTTP (uvicorn in a thread), PostgreSQL and the session's broker,
and a real HTTP receiver for rest-hook notifications (records every bundle; can be taken down: 503)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from kafka import KafkaProducer

from relearn.devtools.apps import make_issuer, service_app
from relearn.devtools.broker import TansuBroker, free_port
from relearn.shared.events import CloudEvent, producer_config, topic_for
from relearn.subscriptions.config import Settings
from relearn.subscriptions.main import create_app


class Running:
    def __init__(self, app: Any, port: int, issuer: Any, producer: KafkaProducer) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self.issuer = issuer
        self.producer = producer

    @property
    def fhir(self) -> str:
        return f"{self.url}/fhir"

    def auth(self, scope: str = "system/*.read system/*.write", patient: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.mint('relearn-dev', scope, patient=patient)}"}

    def publish(self, event_type: str, patient: str, data: dict[str, Any]) -> CloudEvent:
        event = CloudEvent.new("/relearn/test", event_type, patient, {"patient": patient, **data})
        return self.publish_event(event)

    def publish_event(self, event: CloudEvent) -> CloudEvent:
        self.producer.send(topic_for(event.type), key=event.key, value=event.to_bytes()).get(timeout=30)
        return event


@contextmanager
def run_service(bootstrap: str, database_url: str, key_dir: Path, **settings: Any) -> Iterator[Running]:
    """The service on uvicorn in a thread (its notifier and senders running) against ``bootstrap``."""
    issuer = make_issuer(key_dir)
    app = service_app(
        "relearn.subscriptions",
        Settings,
        create_app,
        database_url=database_url,
        bootstrap=bootstrap,
        jwks=issuer.publish(),
        **({"retry_base_s": 0.2, "retry_cap_s": 1.0, "delivery_poll_s": 0.05} | settings),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    assert app.state.workers.consumers[0].wait_until_assigned(60)
    producer = KafkaProducer(**producer_config(bootstrap, "subscriptions-test"))
    try:
        yield Running(app, port, issuer, producer)
    finally:
        producer.close()
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="session")
def start_service() -> Callable[..., Any]:
    """:func:`run_service`, for a test with its own broker."""
    return run_service


@pytest.fixture(scope="module")
def service(
    broker: TansuBroker, pg_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    with run_service(
        broker.bootstrap, pg_database("subscriptions"), tmp_path_factory.mktemp("keys")
    ) as running:
        yield running


@dataclass
class Received:
    bundle: dict[str, Any]
    headers: dict[str, str]
    body: bytes

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.bundle["entry"][0]["resource"])

    def param(self, name: str) -> Any:
        for p in self.status["parameter"]:
            if p["name"] == name:
                return next(v for k, v in p.items() if k.startswith("value"))
        return None

    @property
    def kind(self) -> str:
        return str(self.param("type"))

    @property
    def numbers(self) -> list[int]:
        out = []
        for p in self.status["parameter"]:
            if p["name"] == "notification-event":
                out += [int(part["valueString"]) for part in p["part"] if part["name"] == "event-number"]
        return out

    @property
    def focuses(self) -> list[str]:
        out = []
        for p in self.status["parameter"]:
            if p["name"] == "notification-event":
                out += [part["valueReference"]["reference"] for part in p["part"] if part["name"] == "focus"]
        return out


@dataclass
class Receiver:
    up: bool = True
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    if not receiver.up:
                        receiver.refused += 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    receiver.received.append(
                        Received(json.loads(body), {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def of_kind(self, kind: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.kind == kind]

    def numbers(self) -> list[int]:
        return [n for r in self.of_kind("event-notification") for n in r.numbers]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()
