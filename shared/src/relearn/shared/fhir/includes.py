"""``_include`` and ``_revinclude``: the resources a search page references, or that reference it."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy import select
from sqlmodel import Session

from relearn.shared.fhir.dates import as_utc
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.indexing import Indexer
from relearn.shared.fhir.records import StoredResource
from relearn.shared.fhir.search_parse import SearchQuery
from relearn.shared.fhir.tables import REFERENCE, execute
from relearn.shared.fhir.tables import RESOURCE as R


def fetch_included(
    session: Session,
    rdef: ResourceDefinition,
    query: SearchQuery,
    page: list[StoredResource],
    *,
    definitions: Mapping[str, ResourceDefinition],
    indexer: Indexer,
    patient: str | None,
    include_types: Collection[str] | None,
) -> tuple[list[StoredResource], list[str]]:
    """The resources ``_include``/``_revinclude`` add to ``page``, in the same store.

    Only registered types in ``include_types`` (None: all), never deleted, and with a patient
    restriction only those in that patient's compartment. Second: the references (``Type/id``)
    an ``_include`` reached whose type this store does not hold (another service's), sorted.
    """
    ids = [m.id for m in page]
    if not ids or not query.includes:
        return [], []
    ref = REFERENCE
    wanted: set[tuple[str, str]] = set()
    forward: set[tuple[str, str]] = set()
    for inc in query.includes:
        if inc.reverse:
            stmt = select(ref.c.resource_type, ref.c.resource_id).where(
                ref.c.resource_type == inc.source_type,
                ref.c.param == inc.param,
                ref.c.target_type == rdef.type,
                ref.c.target_id.in_(ids),
                ref.c.url.is_(None),
            )
        else:
            stmt = select(ref.c.target_type, ref.c.target_id).where(
                ref.c.resource_type == rdef.type,
                ref.c.param == inc.param,
                ref.c.resource_id.in_(ids),
                ref.c.url.is_(None),
                ref.c.target_type.is_not(None),
            )
            if inc.target_type is not None:
                stmt = stmt.where(ref.c.target_type == inc.target_type)
        found = {(str(t), str(i)) for t, i in execute(session, stmt).all()}
        wanted |= found
        if not inc.reverse:
            forward |= found
    wanted -= {(rdef.type, i) for i in ids}
    elsewhere = sorted(f"{t}/{i}" for t, i in forward if t not in definitions)
    by_type: dict[str, list[str]] = {}
    for rtype, rid in wanted:
        if rtype in definitions and (include_types is None or rtype in include_types):
            by_type.setdefault(rtype, []).append(rid)
    out: list[StoredResource] = []
    for rtype in sorted(by_type):
        rows = execute(
            session,
            select(R.c.id, R.c.version_id, R.c.last_updated, R.c.text)
            .where(R.c.resource_type == rtype, R.c.id.in_(by_type[rtype]), R.c.deleted.is_(False))
            .order_by(R.c.id),
        ).all()
        for r in rows:
            stored = StoredResource(rtype, r[0], r[1], as_utc(r[2]), False, r[3])
            if patient is None or patient in indexer.patients(definitions[rtype], stored.resource()):
                out.append(stored)
    return out, elsewhere
