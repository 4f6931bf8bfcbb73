"""The notifier's consumer handlers: a domain event in, its topic notifications numbered."""

from __future__ import annotations

from sqlmodel import Session

from relearn.shared.events import CloudEvent, Handler
from relearn.subscriptions.events import EVENT_TYPES, decode
from relearn.subscriptions.service import Subscriptions


def notifier_handlers(subscriptions: Subscriptions) -> dict[str, Handler]:
    def handle(session: Session, event: CloudEvent) -> None:
        incoming = decode(event)
        if incoming.triggers:
            subscriptions.record(session, incoming)

    return dict.fromkeys(EVENT_TYPES, handle)
