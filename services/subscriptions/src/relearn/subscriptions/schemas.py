"""Bodies of the subscriptions service's domain API."""

from __future__ import annotations

from pydantic import BaseModel


class TopicOut(BaseModel):
    url: str
    title: str
    resource: str
    eventTypes: list[str]
    filters: list[str]


class DeliveryOut(BaseModel):
    """Where delivery of one Subscription stands (what an operator reads when an EHR says it missed one)."""

    subscription: str
    status: str
    channel: str
    eventsSinceSubscriptionStart: int
    acknowledgedThrough: int
    pending: int
    handshakeDone: bool
    failures: int
    firstFailureAt: str | None
    nextAttemptAt: str | None
    lastSentAt: str | None
    lastError: str | None
