"""Every query on the subscriptions service's tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, or_, update
from sqlmodel import Session, col, select

from relearn.subscriptions.tables import NotificationEvent, SubscriptionState, WsBindingToken

LIVE = ("requested", "active", "error")


def get_state(session: Session, id: str, *, lock: bool = False) -> SubscriptionState | None:
    query = select(SubscriptionState).where(SubscriptionState.id == id)
    if lock:
        query = query.with_for_update()
    return session.exec(query).first()


def add(session: Session, row: SubscriptionState | NotificationEvent | WsBindingToken) -> None:
    session.add(row)
    session.flush()


def delete_state(session: Session, id: str) -> None:
    session.execute(delete(SubscriptionState).where(col(SubscriptionState.id) == id))


def live_for_topic(session: Session, topic: str) -> Sequence[SubscriptionState]:
    """The live subscriptions of a topic, row-locked until the transaction ends (their event numbers)."""
    query = (
        select(SubscriptionState)
        .where(SubscriptionState.topic == topic, col(SubscriptionState.status).in_(LIVE))
        .order_by(col(SubscriptionState.id))
        .with_for_update()
    )
    return session.exec(query).all()


def stage_event(session: Session, row: NotificationEvent) -> None:
    """Add a log row, written with the others at the next flush (the commit)."""
    session.add(row)


def events(
    session: Session, subscription_id: str, since: int, until: int | None, limit: int
) -> Sequence[NotificationEvent]:
    """Events numbered ``since`` .. ``until`` (inclusive), in order, at most ``limit``."""
    query = select(NotificationEvent).where(
        NotificationEvent.subscription_id == subscription_id, NotificationEvent.number >= since
    )
    if until is not None:
        query = query.where(NotificationEvent.number <= until)
    return session.exec(query.order_by(col(NotificationEvent.number)).limit(limit)).all()


def claim_due(session: Session, now: datetime, lease_until: datetime, limit: int) -> list[str]:
    """Lease rest-hook subscriptions with something to send now (a handshake, events, a heartbeat check)."""
    query = (
        select(SubscriptionState.id)
        .where(
            SubscriptionState.channel == "rest-hook",
            col(SubscriptionState.status).in_(LIVE),
            or_(
                col(SubscriptionState.next_attempt_at).is_(None),
                col(SubscriptionState.next_attempt_at) <= now,
            ),
            or_(col(SubscriptionState.lease_until).is_(None), col(SubscriptionState.lease_until) < now),
            or_(
                col(SubscriptionState.handshake_done).is_(False),
                col(SubscriptionState.acked_through) < col(SubscriptionState.events_since_start),
                col(SubscriptionState.heartbeat_s).is_not(None),
            ),
        )
        .order_by(col(SubscriptionState.next_attempt_at))
        .limit(limit)
    )
    ids = list(session.exec(query).all())
    if ids:
        session.execute(
            update(SubscriptionState)
            .where(col(SubscriptionState.id).in_(ids))
            .values(lease_until=lease_until)
        )
    return ids


def release(session: Session, id: str) -> None:
    session.execute(update(SubscriptionState).where(col(SubscriptionState.id) == id).values(lease_until=None))


def get_ws_token(session: Session, token: str) -> WsBindingToken | None:
    return session.get(WsBindingToken, token)


def purge_ws_tokens(session: Session, now: datetime) -> None:
    session.execute(delete(WsBindingToken).where(col(WsBindingToken.expires_at) < now))


def save(session: Session, row: SubscriptionState) -> None:
    """Mark a changed row to be written at the next flush."""
    session.add(row)


def remove(session: Session, row: WsBindingToken) -> None:
    session.delete(row)
