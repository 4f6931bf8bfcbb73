"""Every table of the subscriptions database (imported by the migrations' env.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

import relearn.shared.tables  # noqa: F401  (the plumbing tables, for the metadata)


def _now() -> datetime:
    return datetime.now(UTC)


class SubscriptionState(SQLModel, table=True):
    """What the notifier and the senders keep per Subscription (its row is the lock for its event numbers)."""

    __tablename__ = "subscription_state"

    id: str = Field(primary_key=True, max_length=64)
    status: str = Field(max_length=16, index=True)  # requested | active | error | off
    topic: str = Field(max_length=255, index=True)
    filters: str = Field(default="{}", sa_type=sa.Text)  # JSON name -> value
    channel: str = Field(max_length=16)
    endpoint: str | None = Field(default=None, sa_type=sa.Text)
    payload: str = Field(max_length=16)
    headers: str = Field(default="[]", sa_type=sa.Text)  # JSON [[name, value]]
    heartbeat_s: int | None = None
    timeout_s: int = 60
    max_count: int = 20
    secret: str = Field(max_length=255)
    # Who subscribed: their scopes, and the patient a patient-scoped token is confined to.
    owner_scope: str = Field(default="", sa_type=sa.Text)
    owner_patient: str | None = Field(default=None, max_length=64)
    events_since_start: int = 0
    # The highest event number the subscriber acknowledged (2xx) or a websocket was sent.
    acked_through: int = 0
    handshake_done: bool = False
    failures: int = 0
    first_failure_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    next_attempt_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    last_sent_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    lease_until: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(default_factory=_now, sa_type=sa.DateTime(timezone=True))


class NotificationEvent(SQLModel, table=True):
    """The event log: one row per (subscription, event number), kept for $events and $resend."""

    __tablename__ = "subscription_event"
    __table_args__ = (sa.UniqueConstraint("subscription_id", "source_event", "focus"),)

    subscription_id: str = Field(primary_key=True, max_length=64)
    number: int = Field(primary_key=True)
    source_event: str = Field(max_length=64)  # the CloudEvent id
    event_type: str = Field(max_length=128)
    focus: str = Field(max_length=255)
    # The focus version the event was about when the event names it (else found by time at send).
    focus_version: str | None = Field(default=None, max_length=64)
    patient: str = Field(max_length=64)
    occurred_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    recorded_at: datetime = Field(default_factory=_now, sa_type=sa.DateTime(timezone=True))


class WsBindingToken(SQLModel, table=True):
    __tablename__ = "subscription_ws_token"

    token: str = Field(primary_key=True, max_length=128)
    subscription_id: str = Field(max_length=64, index=True)
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
