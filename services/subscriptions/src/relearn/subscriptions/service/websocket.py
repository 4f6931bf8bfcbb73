"""The websocket channel: a connection bound with a token from ``$get-ws-binding-token`` gets the
subscription's handshake, then its events in order (what was sent is acknowledged), and heartbeats."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from relearn.shared.fhir import as_utc
from relearn.shared.service import transaction
from relearn.subscriptions import mapper, repository
from relearn.subscriptions.service import Subscriptions, now
from relearn.subscriptions.tables import NotificationEvent


@dataclass(frozen=True)
class Binding:
    subscription_id: str
    heartbeat_s: int | None


class WebsocketChannel:
    def __init__(self, engine: Engine, subscriptions: Subscriptions) -> None:
        self._engine = engine
        self._subs = subscriptions

    def bind(self, token: str) -> tuple[Binding, str] | None:
        """The binding and its handshake text, or None for an unknown or expired token (used once)."""
        with transaction(self._engine) as session:
            row = repository.get_ws_token(session, token)
            if row is None or as_utc(row.expires_at) < now():
                return None
            repository.remove(session, row)
            state = repository.get_state(session, row.subscription_id, lock=True)
            if state is None or state.status == "off" or state.channel != "websocket":
                return None
            state.handshake_done = True
            if state.status in ("requested", "error"):
                state.status = "active"
            repository.save(session, state)
            self._subs.set_resource_status(session, state)
            status = self._subs.status_of(state, "handshake")
            bundle = mapper.notification_bundle(status, subscription_id=state.id, at=now())
            return Binding(state.id, state.heartbeat_s), json.dumps(bundle)

    def next_message(self, binding: Binding, last_sent: float) -> str | None:
        """The next notification to send (its events acknowledged as sent), a heartbeat when one is due
        (``last_sent``: seconds since the last message), or None. A focus that cannot be read now goes
        id-only (the status says why): the client has $events for the rest."""
        with transaction(self._engine) as session:
            state = repository.get_state(session, binding.subscription_id, lock=True)
            if state is None or state.status == "off":
                return None
            events: list[NotificationEvent] = []
            if state.acked_through < state.events_since_start:
                events = list(
                    repository.events(session, state.id, state.acked_through + 1, None, state.max_count)
                )
            if events:
                state.acked_through = events[-1].number
                state.last_sent_at = now()
                repository.save(session, state)
                kind = "event-notification"
            elif binding.heartbeat_s and last_sent >= binding.heartbeat_s:
                kind = "heartbeat"
            else:
                return None
        bundle, _ = self._subs.notification(state, kind, events)  # outside the transaction (full-resource)
        return json.dumps(bundle)

    def alive(self, binding: Binding) -> bool:
        with transaction(self._engine) as session:
            state = repository.get_state(session, binding.subscription_id)
            return state is not None and state.status != "off"
