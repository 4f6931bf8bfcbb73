"""What the store hands back: stored versions, changes for write hooks, search and history pages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Literal

from sqlmodel import Session

from relearn.shared.fhir import jsontext
from relearn.shared.fhir.search_parse import SearchQuery

ChangeKind = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class StoredResource:
    """One version of a resource as stored; ``text`` is empty for a deletion."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    text: str
    # History entries: POST, PUT or DELETE. Writes: whether this write created the resource.
    method: str | None = None
    created: bool = False

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def relative_url(self) -> str:
        return f"{self.resource_type}/{self.id}"

    @property
    def version_url(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"

    def headers(self) -> dict[str, str]:
        """``ETag`` and ``Last-Modified`` for this version."""
        return {"ETag": self.etag, "Last-Modified": format_datetime(self.last_updated, usegmt=True)}

    def resource(self) -> dict[str, Any]:
        """The resource as a dict (decimals as ``Decimal``); empty for a deletion."""
        return jsontext.loads(self.text) if self.text else {}


@dataclass(frozen=True)
class ResourceChange:
    """What a write hook is told: the new version (``resource`` is None for a delete)."""

    kind: ChangeKind
    stored: StoredResource
    resource: dict[str, Any] | None
    previous_version_id: int | None

    @property
    def resource_type(self) -> str:
        return self.stored.resource_type

    @property
    def id(self) -> str:
        return self.stored.id


WriteHook = Callable[[Session, ResourceChange], None]


@dataclass
class SearchResult:
    query: SearchQuery
    matches: list[StoredResource]
    included: list[StoredResource]
    # None when the client asked for ``_total=none``.
    total: int | None
    # References an ``_include`` reached whose type another service holds (``Type/id``).
    elsewhere: list[str] = field(default_factory=list)


@dataclass
class HistoryResult:
    entries: list[StoredResource]
    total: int
    offset: int
    count: int
