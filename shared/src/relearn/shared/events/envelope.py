"""The one event envelope: CloudEvents 1.0 (structured JSON mode).

``type`` is a versioned past-tense fact (``evaluation.completed.v1``); ``subject`` is the
patient (the device for raw sensor streams) and is also the Kafka partition key, so one
patient's events stay in order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class InvalidEvent(ValueError):
    """Bytes that are not a CloudEvents 1.0 JSON envelope Relearn can read."""


def _now() -> datetime:
    return datetime.now(UTC)


class CloudEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(pattern=r"^[a-z][a-z0-9\-]*(\.[a-z][a-z0-9\-]*)*\.v[0-9]+$")
    subject: str = Field(min_length=1)
    time: datetime = Field(default_factory=_now)
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("specversion")
    @classmethod
    def _v1(cls, v: str) -> str:
        if v != "1.0":
            raise ValueError("only CloudEvents specversion 1.0 is supported")
        return v

    @field_validator("time")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        # Naive times are taken as UTC; aware ones are converted, so every envelope reads alike.
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)

    @classmethod
    def new(cls, source: str, type: str, subject: str, data: dict[str, Any]) -> CloudEvent:
        return cls(source=source, type=type, subject=subject, data=data)

    @property
    def key(self) -> bytes:
        """The partition key: the subject."""
        return self.subject.encode("utf-8")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> CloudEvent:
        if not raw:
            raise InvalidEvent("empty message")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidEvent(str(exc)) from exc
