"""The platform's services in one test process: one httpx client that reaches each app by host name, tokens
minted by the test's development issuer, and a wait until every event in flight has been handled.

The journey's clients (:mod:`relearn.devtools.journey`) take a :class:`~relearn.devtools.journey.client.Api`;
:class:`InProcessApi` is one whose requests go to in-process ``TestClient`` apps (``http://<name>.test``) and
whose tokens come from a :class:`~relearn.dev_issuer.DevIssuer` instead of a token endpoint.
:class:`Quiescence` answers "has everything that was sent been handled?" without sleeping: every service's
outbox is drained and every consumer group has committed up to the end of the topics it reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from sqlalchemy import func
from sqlmodel import Session, col, select

from relearn.dev_issuer import DevIssuer
from relearn.devtools.apps import wait_for
from relearn.devtools.journey.client import Api, Auth, PlatformUrls
from relearn.devtools.smart import BackendClient
from relearn.shared.events import EventConsumer, OutboxEvent, ProcessedEvent


class RoutedTransport(httpx.BaseTransport):
    """Sends each request to the ``TestClient`` registered for its host (``evaluation.test`` ...)."""

    def __init__(self, clients: Mapping[str, TestClient]) -> None:
        self.clients = dict(clients)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        client = self.clients.get(request.url.host)
        if client is None:
            return httpx.Response(502, json={"error": f"no in-process app for host {request.url.host}"})
        target = request.url.raw_path.decode("ascii")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        resp = client.request(request.method, target, content=request.read(), headers=headers)
        return httpx.Response(resp.status_code, headers=resp.headers, content=resp.content)


def in_process_urls(hosts: Mapping[str, str]) -> PlatformUrls:
    """Service role (evaluation, plan, sessions, device_gateway) -> host; the FHIR base is the gateway's
    (Devices are the only FHIR resources the journey's gateway client writes)."""
    base = {role: f"http://{host}" for role, host in hosts.items()}
    return PlatformUrls(
        fhir_base=f"{base['device_gateway']}/fhir",
        issuer="http://issuer.test",
        evaluation=base["evaluation"],
        plan=base["plan"],
        sessions=base["sessions"],
        device_gateway=base["device_gateway"],
    )


class InProcessApi(Api):
    """The journey's :class:`Api` over in-process apps; tokens minted by ``issuer`` for the same clients."""

    def __init__(
        self, urls: PlatformUrls, clients: Mapping[str, TestClient], issuer: DevIssuer, **kwargs: Any
    ) -> None:
        super().__init__(urls, **kwargs)
        self.http.close()
        self.http = httpx.Client(transport=RoutedTransport(clients), timeout=30.0)
        self.issuer = issuer

    def _token(self, auth: Auth, scope: str, device: str | None = None) -> str:
        client_id = auth.client_id if isinstance(auth, BackendClient) else auth[0]
        key = (client_id, scope, device)
        if key not in self._tokens:
            self._tokens[key] = (self.issuer.mint(client_id, scope, device=device), float("inf"))
        return self._tokens[key][0]


def event_consumers(app: FastAPI) -> list[EventConsumer]:
    """The app's Kafka consumers (its workers also include periodic jobs, which read no topic)."""
    return [c for c in app.state.workers.consumers if isinstance(c, EventConsumer)]


class Quiescence:
    """Waits until the apps have nothing in flight: outboxes drained, consumer groups caught up with the
    broker, and - read from the databases, in case the broker's end offsets lag - every published event
    handled by every group of these apps that has a handler for it."""

    def __init__(self, bootstrap: str, apps: Iterable[FastAPI]) -> None:
        self.apps = list(apps)
        # (app, group, topics, event types it handles), for the database check
        self.handlers: list[tuple[FastAPI, str, frozenset[str], frozenset[str]]] = [
            (app, c.group_id, frozenset(c.topics), frozenset(c.handlers))
            for app in self.apps
            for c in event_consumers(app)
        ]
        self.groups: dict[str, list[str]] = {}
        for app in self.apps:
            for consumer in event_consumers(app):
                self.groups.setdefault(consumer.group_id, []).extend(consumer.topics)
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="quiescence")
        self.reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, client_id="quiescence")
        self.partitions: dict[str, list[TopicPartition]] = {}
        for topics in self.groups.values():
            for topic in topics:
                if topic not in self.partitions:
                    parts = self.reader.partitions_for_topic(topic) or set()
                    self.partitions[topic] = [TopicPartition(topic, p) for p in sorted(parts)]

    def close(self) -> None:
        self.admin.close()
        self.reader.close()

    def _unpublished(self) -> int:
        total = 0
        for app in self.apps:
            with Session(app.state.engine) as s:
                query = select(func.count()).select_from(OutboxEvent)
                total += s.exec(query.where(col(OutboxEvent.published_at).is_(None))).one()
        return total

    def _lag(self) -> tuple[int, dict[TopicPartition, int]]:
        every = [tp for parts in self.partitions.values() for tp in parts]
        ends: dict[TopicPartition, int] = self.reader.end_offsets(every)
        lag = 0
        for group, topics in self.groups.items():
            wanted = [tp for topic in topics for tp in self.partitions[topic]]
            committed = self.admin.list_group_offsets({group: wanted}).get(group, {})
            for tp in wanted:
                done = committed.get(tp)
                offset = done.offset if done is not None and done.offset >= 0 else 0
                lag += max(0, ends[tp] - offset)
        return lag, ends

    def quiet(self) -> bool:
        """Nothing in flight now: caught up, no outbox row waiting, and no new record meanwhile (a consumer
        writes its outbox rows before it commits its offsets, so this order misses nothing)."""
        lag, ends = self._lag()
        if lag:
            return False
        if self._unpublished():
            return False
        if self._unhandled():
            return False
        lag_after, ends_after = self._lag()
        return lag_after == 0 and ends_after == ends

    def _unhandled(self) -> int:
        """Published events a group of these apps handles but has not recorded as processed."""
        published: list[tuple[str, str, str]] = []
        for app in self.apps:
            with Session(app.state.engine) as s:
                query = select(OutboxEvent.event_id, OutboxEvent.topic, OutboxEvent.type)
                published.extend(s.exec(query.where(col(OutboxEvent.published_at).is_not(None))).all())
        missing = 0
        for app, group, topics, types in self.handlers:
            wanted = {e for e, topic, type_ in published if topic in topics and type_ in types}
            if not wanted:
                continue
            with Session(app.state.engine) as s:
                query2 = select(ProcessedEvent.event_id).where(ProcessedEvent.consumer == group)
                done = set(s.exec(query2).all())
            missing += len(wanted - done)
        return missing

    def wait(self, timeout_s: float = 60.0, what: str = "every event in flight to be handled") -> None:
        wait_for(self.quiet, timeout_s, what)
