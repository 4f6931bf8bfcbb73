"""Bodies of the subscriptions service's domain API."""

from __future__ import annotations

from pydantic import BaseModel


class TopicOut(BaseModel):
    url: str
    title: str
    resource: str
    eventTypes: list[str]
    filters: list[str]
