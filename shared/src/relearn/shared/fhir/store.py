"""The versioned FHIR resource store over the caller's SQLModel session.

The store never commits: every method runs inside the caller's transaction, and so do the
write hooks (services stage outbox events there). Versions are bumped optimistically
(``UPDATE ... WHERE version_id = :expected``) so concurrent writers get 409/412, never a
lost update. Resources are kept as the JSON text the client sent (decimals and timestamps
untouched) with ``id`` and ``meta.versionId``/``meta.lastUpdated`` set by the server.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from relearn.shared import audit_context
from relearn.shared.db import lock_for_write
from relearn.shared.fhir import jsontext, search_sql
from relearn.shared.fhir.dates import as_utc, format_instant, now_ms
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidRequest,
    InvalidResource,
    NotFound,
    PreconditionFailed,
)
from relearn.shared.fhir.includes import fetch_included
from relearn.shared.fhir.indexing import Indexer, IndexRows
from relearn.shared.fhir.limits import FhirLimits
from relearn.shared.fhir.records import (
    ChangeKind,
    HistoryResult,
    ResourceChange,
    SearchResult,
    StoredResource,
    WriteHook,
)
from relearn.shared.fhir.scope_filter import ScopeFilter
from relearn.shared.fhir.search_parse import Handling, SearchQuery, parse_search
from relearn.shared.fhir.tables import INDEX_TABLES, execute
from relearn.shared.fhir.tables import RESOURCE as R
from relearn.shared.fhir.tables import VERSION as V
from relearn.shared.fhir.validation import ID_PATTERN, validate_resource

# Rows a search counts past its page for ``Bundle.total`` before it stops counting (FhirStore._cheap_total).
TOTAL_COUNT_CAP = 1000

__all__ = [
    "FhirStore",
    "HistoryResult",
    "ResourceChange",
    "SearchResult",
    "StoredResource",
    "WriteHook",
]


@dataclass
class _Current:
    version_id: int
    last_updated: datetime
    deleted: bool
    text: str


@dataclass
class FhirStore:
    """The resource store of one service database.

    ``base_url`` is the public FHIR base: absolute references on it are indexed as local.
    ``write_hooks`` run in the caller's transaction after every create/update/delete.
    """

    definitions: dict[str, ResourceDefinition] = field(default_factory=dict)
    base_url: str | None = None
    write_hooks: list[WriteHook] = field(default_factory=list)
    limits: FhirLimits = field(default_factory=FhirLimits)

    def __post_init__(self) -> None:
        self.indexer = Indexer(self.base_url)

    def register(self, rdef: ResourceDefinition) -> None:
        """Make ``rdef`` known to the store (needed for includes and compartment checks)."""
        known = self.definitions.get(rdef.type)
        if known is not None and known is not rdef:
            raise ValueError(f"{rdef.type} is already registered with another definition")
        self.definitions[rdef.type] = rdef

    # -- writes -------------------------------------------------------------------------------
    def create(
        self,
        session: Session,
        rdef: ResourceDefinition,
        resource: dict[str, Any],
        *,
        id: str | None = None,
        patient_restriction: str | None = None,
        scope_filter: ScopeFilter | None = None,
    ) -> StoredResource:
        """Store a new resource (server-assigned id unless ``id`` is given); 409 if ``id`` exists.

        ``patient_restriction``/``scope_filter``: what the caller may write (403 outside it)."""
        rid = id or str(uuid.uuid4())
        _check_id(rdef, rid)
        if self._current(session, rdef.type, rid) is not None:
            raise Conflict(f"{rdef.type}/{rid} already exists")
        return self._write_new(session, rdef, rid, resource, "POST", patient_restriction, scope_filter)

    def update(
        self,
        session: Session,
        rdef: ResourceDefinition,
        id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
        patient_restriction: str | None = None,
        scope_filter: ScopeFilter | None = None,
    ) -> StoredResource:
        """Store a new version of ``id`` (creating it if absent); 412 if ``if_match`` is not current.

        With a ``scope_filter``, both the version replaced and the new one must be inside it (403)."""
        _check_id(rdef, id)
        if resource.get("id") not in (None, id):
            raise InvalidResource(
                f"Resource id '{resource.get('id')}' does not match the URL id '{id}'",
                expression=f"{rdef.type}.id",
            )
        cur = self._current(session, rdef.type, id)
        if if_match is not None and (cur is None or cur.version_id != if_match):
            have = "does not exist" if cur is None else f"is at version {cur.version_id}"
            raise PreconditionFailed(f"If-Match version {if_match} failed: {rdef.type}/{id} {have}")
        if cur is None:
            return self._write_new(session, rdef, id, resource, "PUT", patient_restriction, scope_filter)
        if scope_filter is not None:
            previous_text = cur.text or self._last_content(session, rdef.type, id, cur.version_id + 1)
            if previous_text:
                self._require_filter(scope_filter, jsontext.loads(previous_text))
        if patient_restriction is not None:
            # A deleted id still belongs to whoever's it was: the last content decides, so a patient
            # token cannot take over (and then read the history of) another patient's deleted resource.
            previous = self._last_content(session, rdef.type, id, cur.version_id + 1)
            if previous:
                self._require_compartment(rdef, jsontext.loads(previous), patient_restriction)
        if patient_restriction is not None:
            self._early_compartment(rdef, {**resource, "id": id}, patient_restriction)
        prepared, stored = self._prepare(rdef, id, resource, cur.version_id + 1, cur.last_updated, "PUT")
        if patient_restriction is not None:
            self._require_compartment(rdef, prepared, patient_restriction)
        if scope_filter is not None:
            self._require_filter(scope_filter, prepared)
        self._bump(session, rdef.type, id, cur.version_id, stored, if_match)
        self._append_version(session, stored)
        self._replace_index(session, rdef, id, self.indexer.rows(rdef, prepared))
        kind: ChangeKind = "create" if cur.deleted else "update"
        if cur.deleted:
            stored = replace(stored, created=True)
        self._notify(session, ResourceChange(kind, stored, prepared, cur.version_id))
        return stored

    def delete(
        self,
        session: Session,
        rdef: ResourceDefinition,
        id: str,
        *,
        patient_restriction: str | None = None,
        scope_filter: ScopeFilter | None = None,
    ) -> StoredResource | None:
        """Delete ``id`` (a new, empty version); None if it was already deleted, 404 if it never existed."""
        cur = self._current(session, rdef.type, id)
        if cur is None:
            raise NotFound(f"{rdef.type}/{id} does not exist")
        if cur.deleted:
            return None
        if patient_restriction is not None:
            self._require_compartment(rdef, jsontext.loads(cur.text), patient_restriction)
        if scope_filter is not None:
            self._require_filter(scope_filter, jsontext.loads(cur.text))
        self._touch([StoredResource(rdef.type, id, cur.version_id, cur.last_updated, False, cur.text)])
        stamp = _after(cur.last_updated)
        stored = StoredResource(rdef.type, id, cur.version_id + 1, stamp, True, "", "DELETE")
        self._bump(session, rdef.type, id, cur.version_id, stored, None)
        self._append_version(session, stored)
        self._replace_index(session, rdef, id, IndexRows())
        self._notify(session, ResourceChange("delete", stored, None, cur.version_id))
        return stored

    # -- reads --------------------------------------------------------------------------------
    def get(self, session: Session, resource_type: str, id: str) -> StoredResource | None:
        """The current version (possibly a deletion), or None; no access checks."""
        cur = self._current(session, resource_type, id)
        if cur is None:
            return None
        return StoredResource(resource_type, id, cur.version_id, cur.last_updated, cur.deleted, cur.text)

    def get_version(
        self, session: Session, resource_type: str, id: str, version_id: int | None
    ) -> StoredResource | None:
        """One version (possibly a deletion), or None; no access checks."""
        if version_id is None:
            return None
        row = execute(
            session,
            select(V.c.version_id, V.c.last_updated, V.c.method, V.c.text).where(
                V.c.resource_type == resource_type, V.c.id == id, V.c.version_id == version_id
            ),
        ).first()
        return None if row is None else _from_version(resource_type, id, row)

    def read(
        self,
        session: Session,
        rdef: ResourceDefinition,
        id: str,
        *,
        patient_restriction: str | None = None,
        scope_filter: ScopeFilter | None = None,
    ) -> StoredResource:
        """The current version; 404 if unknown (or outside the patient's compartment or the scope
        filter), 410 if deleted."""
        stored = self.get(session, rdef.type, id) if ID_PATTERN.match(id) else None
        if stored is None:
            raise NotFound(f"{rdef.type}/{id} is not known")
        self._hide_outside(session, rdef, stored, patient_restriction, scope_filter)
        if stored.deleted:
            raise Gone(f"{rdef.type}/{id} was deleted", headers=stored.headers())
        self._touch([stored])
        return stored

    def vread(
        self,
        session: Session,
        rdef: ResourceDefinition,
        id: str,
        version_id: int,
        *,
        patient_restriction: str | None = None,
        scope_filter: ScopeFilter | None = None,
    ) -> StoredResource:
        """One version; 404 if there is no such version, 410 if that version is a deletion."""
        stored = self.get_version(session, rdef.type, id, version_id)
        if stored is None:
            raise NotFound(f"{rdef.type}/{id} has no version {version_id}")
        self._hide_outside(session, rdef, stored, patient_restriction, scope_filter)
        if stored.deleted:
            raise Gone(f"Version {version_id} of {rdef.type}/{id} is a deletion", headers=stored.headers())
        self._touch([stored])
        return stored

    def history(
        self,
        session: Session,
        rdef: ResourceDefinition,
        id: str | None = None,
        *,
        since: datetime | None = None,
        count: int = 20,
        offset: int = 0,
        patient_restriction: str | None = None,
        scope_filter: ScopeFilter | None = None,
    ) -> HistoryResult:
        """Versions newest first, of one resource (``id``) or of the whole type.

        With a patient restriction, type history lists only resources currently in the
        patient's compartment; an instance outside it is 404; and of those, only the versions
        that are themselves in the compartment (a deletion: when the content before it was). A scope
        filter confines history the same way: to the versions whose content is inside it.
        """
        restricted = patient_restriction is not None or scope_filter is not None
        conds = [V.c.resource_type == rdef.type]
        if id is not None:
            current = self.get(session, rdef.type, id) if ID_PATTERN.match(id) else None
            if current is None:
                raise NotFound(f"{rdef.type}/{id} is not known")
            self._hide_outside(session, rdef, current, patient_restriction, scope_filter)
            conds.append(V.c.id == id)
        elif restricted:
            extra = scope_filter.condition() if scope_filter is not None else None
            inside = search_sql.match_statement(
                rdef, SearchQuery(), patient_restriction, extra
            ).with_only_columns(R.c.id)
            conds.append(V.c.id.in_(inside))
        if since is not None:
            conds.append(V.c.last_updated >= since)
        if restricted:
            return self._restricted_history(
                session, rdef, conds, count, offset, patient_restriction, scope_filter
            )
        total = execute(session, select(func.count()).select_from(V).where(*conds)).one()[0]
        rows = execute(
            session,
            select(V.c.id, V.c.version_id, V.c.last_updated, V.c.method, V.c.text)
            .where(*conds)
            .order_by(V.c.last_updated.desc(), V.c.id, V.c.version_id.desc())
            .limit(count)
            .offset(offset),
        ).all()
        entries = [_from_version(rdef.type, r[0], r[1:]) for r in rows]
        self._touch(entries)
        return HistoryResult(entries, int(total), offset, count)

    def _restricted_history(
        self,
        session: Session,
        rdef: ResourceDefinition,
        conds: list[Any],
        count: int,
        offset: int,
        patient: str | None,
        scope_filter: ScopeFilter | None,
    ) -> HistoryResult:
        """History of one patient's compartment and/or a scope filter, checked version by version on the
        versions' own content (in one query: versions are not indexed for search)."""
        rows = execute(
            session,
            select(V.c.id, V.c.version_id, V.c.last_updated, V.c.method, V.c.text)
            .where(*conds)
            .order_by(V.c.last_updated.desc(), V.c.id, V.c.version_id.desc()),
        ).all()
        visible: dict[tuple[str, int], bool] = {}
        by_id: dict[str, list[Any]] = {}
        for r in rows:
            by_id.setdefault(r[0], []).append(r)
        for rid, versions in by_id.items():
            # Oldest first: a deletion inherits the content before it (looked up when not on this list).
            inside: bool | None = None
            for r in sorted(versions, key=lambda r: r[1]):
                version_id, text = r[1], r[4]
                if not text and inside is None:
                    text = self._last_content(session, rdef.type, rid, version_id)
                if text:
                    inside = self._inside(rdef, jsontext.loads(text), patient, scope_filter)
                visible[(rid, version_id)] = bool(inside)
        shown = [r for r in rows if visible.get((r[0], r[1]), False)]
        entries = [_from_version(rdef.type, r[0], r[1:]) for r in shown[offset : offset + count]]
        self._touch(entries)
        return HistoryResult(entries, len(shown), offset, count)

    # -- search -------------------------------------------------------------------------------
    def parse(
        self, rdef: ResourceDefinition, params: Sequence[tuple[str, str]], *, handling: Handling = "lenient"
    ) -> SearchQuery:
        """Parse search parameters for ``rdef`` against this store's definitions."""
        return parse_search(
            rdef,
            params,
            handling=handling,
            registry=self.definitions,
            base_url=self.base_url,
            limits=self.limits,
        )

    def search(
        self,
        session: Session,
        rdef: ResourceDefinition,
        params: Sequence[tuple[str, str]] | SearchQuery,
        *,
        handling: Handling = "lenient",
        patient_restriction: str | None = None,
        include_types: Collection[str] | None = None,
        scope_filter: ScopeFilter | None = None,
        include_filters: Mapping[str, ScopeFilter] | None = None,
    ) -> SearchResult:
        """Run a search: one page of matches, their includes (only ``include_types``; of a type in
        ``include_filters``, only those inside its filter) and the total. With a ``scope_filter``, only
        resources inside it match."""
        query = params if isinstance(params, SearchQuery) else self.parse(rdef, params, handling=handling)
        extra = scope_filter.condition() if scope_filter is not None else None
        matches = search_sql.match_statement(rdef, query, patient_restriction, extra)
        total: int | None = None
        if query.total == "accurate" or query.count_only:  # asked for: count every match
            total = int(execute(session, search_sql.count_statement(matches)).one()[0])
        if query.count_only:
            return SearchResult(query, [], [], total)
        rows = execute(
            session, search_sql.ordered(rdef, matches, query.sort).limit(query.count).offset(query.offset)
        )
        page = [StoredResource(rdef.type, r[0], r[1], as_utc(r[2]), False, r[3]) for r in rows.all()]
        if query.total in ("", "estimate"):
            total = self._cheap_total(session, matches, query, len(page))
        included, elsewhere = fetch_included(
            session,
            rdef,
            query,
            page,
            definitions=self.definitions,
            indexer=self.indexer,
            patient=patient_restriction,
            include_types=include_types,
        )
        if include_filters:
            included = [
                r
                for r in included
                if r.resource_type not in include_filters
                or include_filters[r.resource_type].admits(self.indexer, r.resource())
            ]
        self._touch(page)
        self._touch(included)
        return SearchResult(query, page, included, total, elsewhere)

    def match(
        self,
        session: Session,
        rdef: ResourceDefinition,
        params: Sequence[tuple[str, str]],
        *,
        patient_restriction: str | None = None,
        scope_filter: ScopeFilter | None = None,
    ) -> list[StoredResource]:
        """Up to two matches of a conditional create/update/delete (always strict parsing)."""
        query = self.parse(rdef, params, handling="strict")
        if not query.criteria:
            raise InvalidRequest("A conditional operation needs at least one search criterion")
        # Two requests with the same criteria take turns from here to their commit: the second one
        # finds what the first created (a 200, not a duplicate that makes every later match a 412).
        lock_for_write(session, conditional_lock_key(rdef.type, params))
        query.count, query.offset, query.total, query.includes = 2, 0, "none", []
        return self.search(
            session, rdef, query, patient_restriction=patient_restriction, scope_filter=scope_filter
        ).matches

    # -- internals ----------------------------------------------------------------------------
    def _cheap_total(self, session: Session, matches: Any, query: SearchQuery, page_len: int) -> int | None:
        """``Bundle.total`` without counting a large result (issue 16: a broad Observation search must never
        count 100 000 rows). A page that is not full ends the result: its total is known for free. Otherwise
        at most ``TOTAL_COUNT_CAP`` rows past the page are counted: below that the total is exact; above it
        ``_total=estimate`` gives PostgreSQL's planner estimate (SQLite, the small embedded default, counts)
        and a search that did not ask for a total gets none (spec: the total is optional; ``next`` links
        still follow from the page being full). ``_total=accurate`` and ``_summary=count`` always count."""
        if page_len < query.count and (page_len > 0 or query.offset == 0):
            return query.offset + page_len
        bound = query.offset + query.count + TOTAL_COUNT_CAP
        counted = int(execute(session, search_sql.count_statement(matches.limit(bound + 1))).one()[0])
        if counted <= bound:
            return counted
        if query.total != "estimate":
            return None
        if session.connection().dialect.name != "postgresql":
            return int(execute(session, search_sql.count_statement(matches)).one()[0])
        return max(counted, search_sql.planner_rows(session, matches))

    def _current(self, session: Session, rtype: str, id: str) -> _Current | None:
        row = execute(
            session,
            select(R.c.version_id, R.c.last_updated, R.c.deleted, R.c.text).where(
                R.c.resource_type == rtype, R.c.id == id
            ),
        ).first()
        return None if row is None else _Current(row[0], as_utc(row[1]), bool(row[2]), row[3])

    def _prepare(
        self,
        rdef: ResourceDefinition,
        id: str,
        resource: dict[str, Any],
        version: int,
        previous: datetime | None,
        method: str,
    ) -> tuple[dict[str, Any], StoredResource]:
        if resource.get("resourceType") != rdef.type:
            raise InvalidResource(
                f"resourceType is {resource.get('resourceType')!r}, expected {rdef.type}",
                expression=f"{rdef.type}.resourceType",
            )
        stamp = _after(previous)
        meta = dict(resource.get("meta") or {}) if isinstance(resource.get("meta"), dict) else {}
        meta["versionId"] = str(version)
        meta["lastUpdated"] = format_instant(stamp)
        # resourceType, id and meta first, then the client's elements in the client's order.
        prepared: dict[str, Any] = {"resourceType": rdef.type, "id": id, "meta": meta}
        prepared.update((k, v) for k, v in resource.items() if k not in prepared)
        validate_resource(rdef, prepared)
        text = jsontext.dumps(prepared)
        return prepared, StoredResource(rdef.type, id, version, stamp, False, text, method)

    def _write_new(
        self,
        session: Session,
        rdef: ResourceDefinition,
        id: str,
        resource: dict[str, Any],
        method: str,
        patient_restriction: str | None,
        scope_filter: ScopeFilter | None = None,
    ) -> StoredResource:
        """Version 1 of a resource that has no row yet."""
        if patient_restriction is not None:
            self._early_compartment(rdef, {**resource, "id": id}, patient_restriction)
        prepared, stored = self._prepare(rdef, id, resource, 1, None, method)
        if patient_restriction is not None:
            self._require_compartment(rdef, prepared, patient_restriction)
        if scope_filter is not None:
            self._require_filter(scope_filter, prepared)
        try:
            execute(
                session,
                insert(R).values(
                    resource_type=rdef.type,
                    id=id,
                    version_id=1,
                    last_updated=stored.last_updated,
                    deleted=False,
                    text=stored.text,
                ),
            )
        except IntegrityError as exc:  # a concurrent create of the same id won
            raise Conflict(f"{rdef.type}/{id} was created concurrently") from exc
        self._append_version(session, stored)
        self._replace_index(session, rdef, id, self.indexer.rows(rdef, prepared), existing=False)
        stored = replace(stored, created=True)
        self._notify(session, ResourceChange("create", stored, prepared, None))
        return stored

    def _bump(
        self,
        session: Session,
        rtype: str,
        id: str,
        expected: int,
        stored: StoredResource,
        if_match: int | None,
    ) -> None:
        result = execute(
            session,
            update(R)
            .where(R.c.resource_type == rtype, R.c.id == id, R.c.version_id == expected)
            .values(
                version_id=stored.version_id,
                last_updated=stored.last_updated,
                deleted=stored.deleted,
                text=stored.text,
            ),
        )
        if result.rowcount != 1:
            msg = f"{rtype}/{id} was changed concurrently (expected version {expected})"
            raise PreconditionFailed(msg) if if_match is not None else Conflict(msg)

    def _append_version(self, session: Session, stored: StoredResource) -> None:
        execute(
            session,
            insert(V).values(
                resource_type=stored.resource_type,
                id=stored.id,
                version_id=stored.version_id,
                last_updated=stored.last_updated,
                method=stored.method or "PUT",
                text=None if stored.deleted else stored.text,
            ),
        )

    def _replace_index(
        self, session: Session, rdef: ResourceDefinition, id: str, rows: IndexRows, *, existing: bool = True
    ) -> None:
        for kind, table in INDEX_TABLES.items():
            if existing:  # a brand-new resource has no rows to remove
                mine = and_(table.c.resource_type == rdef.type, table.c.resource_id == id)
                execute(session, delete(table).where(mine))
            kind_rows: list[dict[str, Any]] = getattr(rows, kind)
            if kind_rows:
                execute(
                    session,
                    insert(table),
                    [{"resource_type": rdef.type, "resource_id": id, **r} for r in kind_rows],
                )

    def _touch(self, items: Sequence[StoredResource]) -> None:
        """Tell the audit trail which patients' resources the current request sees (no-op outside one)."""
        if audit_context.current() is None:
            return
        for item in items:
            rdef = self.definitions.get(item.resource_type)
            if rdef is not None and item.text:
                audit_context.touch_resources(partial(self.indexer.patients, rdef), [item.text])

    def _notify(self, session: Session, change: ResourceChange) -> None:
        if change.resource is not None:
            rdef = self.definitions.get(change.stored.resource_type)
            if rdef is not None:
                audit_context.touch_resource(partial(self.indexer.patients, rdef), change.resource)
        for hook in self.write_hooks:
            hook(session, change)

    def _early_compartment(self, rdef: ResourceDefinition, resource: dict[str, Any], patient: str) -> None:
        """The compartment check before validation, so a token learns nothing about resources it may not
        write; a body too malformed to read is left to validation (and checked again after it)."""
        try:
            inside = patient in self.indexer.patients(rdef, resource)
        except (TypeError, ValueError, KeyError, AttributeError):
            return
        if not inside:
            raise Forbidden(f"This token may only write {rdef.type} resources of Patient/{patient}")

    def _require_compartment(self, rdef: ResourceDefinition, resource: dict[str, Any], patient: str) -> None:
        if patient not in self.indexer.patients(rdef, resource):
            raise Forbidden(f"This token may only write {rdef.type} resources of Patient/{patient}")

    def _last_content(self, session: Session, rtype: str, id: str, before_version: int) -> str:
        """The text of the newest non-deleted version older than ``before_version`` ("" if none)."""
        row = execute(
            session,
            select(V.c.text)
            .where(
                V.c.resource_type == rtype,
                V.c.id == id,
                V.c.version_id < before_version,
                V.c.text.is_not(None),
            )
            .order_by(V.c.version_id.desc())
            .limit(1),
        ).first()
        return str(row[0]) if row and row[0] else ""

    def _hide_outside(
        self,
        session: Session,
        rdef: ResourceDefinition,
        stored: StoredResource,
        patient: str | None,
        scope_filter: ScopeFilter | None = None,
    ) -> None:
        """404 unless the resource (for a deletion: its last content) is in ``patient``'s compartment
        and inside ``scope_filter`` (each when given)."""
        if patient is None and scope_filter is None:
            return
        text = stored.text or self._last_content(session, rdef.type, stored.id, stored.version_id)
        if not text or not self._inside(rdef, jsontext.loads(text), patient, scope_filter):
            raise NotFound(f"{rdef.type}/{stored.id} is not known")

    def _inside(
        self,
        rdef: ResourceDefinition,
        resource: dict[str, Any],
        patient: str | None,
        scope_filter: ScopeFilter | None,
    ) -> bool:
        if patient is not None and patient not in self.indexer.patients(rdef, resource):
            return False
        return scope_filter is None or scope_filter.admits(self.indexer, resource)

    def _require_filter(self, scope_filter: ScopeFilter, resource: dict[str, Any]) -> None:
        if not scope_filter.admits(self.indexer, resource):
            raise Forbidden(
                f"This token's scopes only allow this on {scope_filter.rdef.type} resources matching "
                f"{scope_filter.describe()}"
            )


def conditional_lock_key(resource_type: str, params: Sequence[tuple[str, str]]) -> str:
    """The lock of a conditional operation: its type and criteria, in a canonical order."""
    criteria = sorted((k.strip(), v.strip()) for k, v in params)
    return f"fhir-conditional:{resource_type}?{urlencode(criteria)}"


def _check_id(rdef: ResourceDefinition, id: str) -> None:
    if not ID_PATTERN.match(id):
        raise InvalidResource(
            f"'{id}' is not a valid id (1-64 of A-Z a-z 0-9 - .)", expression=f"{rdef.type}.id"
        )


def _after(previous: datetime | None) -> datetime:
    """Now (ms precision), but strictly after the previous version's lastUpdated."""
    stamp = now_ms()
    if previous is not None and stamp <= previous:
        stamp = previous + timedelta(milliseconds=1)
    return stamp


def _from_version(rtype: str, id: str, row: Any) -> StoredResource:
    version_id, last_updated, method, text = row
    return StoredResource(rtype, id, version_id, as_utc(last_updated), method == "DELETE", text or "", method)
