"""The audit record every service publishes for each access (``audit.recorded.v1`` data), as the mapper reads
it: built by ``relearn.shared.audit.audit_record`` on the request path, compact on purpose."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class Caller(_Record):
    """The verified token of the access (absent when there was none, or it did not verify)."""

    client_id: str = Field(alias="clientId", max_length=255)
    subject: str = Field(max_length=255)
    scope: str = Field(default="", max_length=2000)
    device: str | None = Field(default=None, max_length=255)
    fhir_user: str | None = Field(default=None, alias="fhirUser", max_length=255)


class AuditRecord(_Record):
    recorded: datetime
    service: str = Field(max_length=64)
    site: str = Field(max_length=2000)
    kind: Literal["http", "websocket"]
    method: str = Field(max_length=16)
    path: str = Field(max_length=2000)
    query: str = Field(default="", max_length=32 * 1024)
    status: int = Field(ge=100, le=599)
    request_id: str = Field(alias="requestId", max_length=200)
    client_host: str | None = Field(default=None, alias="clientHost", max_length=255)
    patients: tuple[str, ...] = Field(default=(), max_length=1000)
    principal: Caller | None = None
