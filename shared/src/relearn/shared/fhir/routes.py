"""The FHIR REST interactions of one declared resource type (:class:`TypeApi`); :mod:`.router` puts
them and the Bundle endpoint (:mod:`.transaction`, which builds on this module) into one router.

Per type: create (+ If-None-Exist), read (+ If-None-Match), vread, update (+ If-Match),
conditional update, delete, conditional delete, instance and type history, search (GET and
POST ``_search``). Every route authenticates (``PrincipalDep``) and checks the SMART scope letter
of its interaction on the type (:mod:`relearn.shared.auth.scopes`): ``c`` create, ``r`` read, vread
and instance history, ``u`` update (and ``c`` too when it creates), ``d`` delete, ``s`` search and
type history. It confines patient-scoped tokens to their patient's compartment and filtered (v2)
scopes to the resources their filter matches: reads outside are 404, searches never return them,
writes outside are 403. The request's session (``SessionDep``) commits at the
boundary; the store never commits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request, Response
from sqlmodel import Session

from relearn.shared.auth.dependency import PrincipalDep
from relearn.shared.auth.principal import Principal
from relearn.shared.auth.scopes import Permission
from relearn.shared.deps import SessionDep
from relearn.shared.fhir import jsontext
from relearn.shared.fhir import openapi as fhir_openapi
from relearn.shared.fhir.bundle import history_bundle, searchset_bundle
from relearn.shared.fhir.dates import date_range
from relearn.shared.fhir.definition import Interaction, ResourceDefinition
from relearn.shared.fhir.errors import (
    InvalidRequest,
    InvalidResource,
    NotFound,
    PreconditionFailed,
    informational_outcome,
)
from relearn.shared.fhir.http import (
    check_response_format,
    if_match,
    not_modified,
    prefer,
    read_body,
    resource_headers,
    search_params,
)
from relearn.shared.fhir.limits import MAX_INT32, bounded_int
from relearn.shared.fhir.response import FhirResponse, RawJson
from relearn.shared.fhir.scope_filter import ScopeFilter
from relearn.shared.fhir.search_parse import DEFAULT_COUNT, MAX_COUNT, OFFSET_PARAM, Handling
from relearn.shared.fhir.store import FhirStore, StoredResource

Body = Annotated[bytes, Depends(read_body)]
SearchParams = Annotated[list[tuple[str, str]], Depends(search_params)]


class TypeApi:
    """The endpoints of one resource type."""

    def __init__(self, rdef: ResourceDefinition, store: FhirStore, base_url: str | None, prefix: str) -> None:
        self.rdef = rdef
        self.type = rdef.type
        self.store = store
        self._base_url = base_url or store.base_url
        self._prefix = prefix

    def base(self, request: Request) -> str:
        if self._base_url:
            return self._base_url.rstrip("/")
        return str(request.base_url).rstrip("/") + self._prefix

    def install(self, router: APIRouter, prefix: str = "") -> None:
        """Add this type's routes to ``router`` (whose prefix is ``prefix``), documented for OpenAPI: the
        request body and answers by the type's JSON schema (:mod:`relearn.shared.fhir.openapi`), every
        4xx an interaction can answer, and links from a write's answer to the operations on what it wrote."""
        t = self.type
        routes: list[tuple[Interaction, str, str, Callable[..., Response], str, str]] = [
            ("history-type", "GET", "/_history", self.type_history, f"History of all {t}", "history"),
            ("vread", "GET", "/{id}/_history/{vid}", self.vread, f"Read one version of a {t}", "vread"),
            ("history-instance", "GET", "/{id}/_history", self.instance_history, f"{t} history", "history"),
            ("search-type", "POST", "/_search", self.search, f"Search {t} (form body)", "search"),
            ("read", "GET", "/{id}", self.read, f"Read a {t}", "read"),
            ("search-type", "GET", "", self.search, f"Search {t}", "search"),
            ("create", "POST", "", self.create, f"Create a {t} (If-None-Exist)", "create"),
            ("update", "PUT", "/{id}", self.update, f"Update or create a {t} (If-Match)", "update"),
            ("update", "PUT", "", self.conditional_update, f"Conditional update of a {t}", "update"),
            ("delete", "DELETE", "/{id}", self.delete, f"Delete a {t}", "delete"),
            ("delete", "DELETE", "", self.conditional_delete, f"Conditional delete of a {t}", "delete"),
        ]  # fmt: skip
        installed = [r for r in routes if self.rdef.supports(r[0])]
        # Where a write's answer leads: the operations on the resource it names (id, meta.versionId).
        targets = {
            ("GET", "/{id}"): "read",
            ("PUT", "/{id}"): "update",
            ("DELETE", "/{id}"): "delete",
            ("GET", "/{id}/_history"): "history",
            ("GET", "/{id}/_history/{vid}"): "vread",
        }
        links = {
            targets[(method, path)]: fhir_openapi.operation_ref(f"{prefix}/{t}{path}", method)
            for _, method, path, *_ in installed
            if (method, path) in targets
        }
        for _, method, path, endpoint, summary, kind in installed:
            extra = fhir_openapi.operation_doc(kind, t, links=links, body=kind in ("create", "update"))
            if kind == "search":
                extra.update(self._search_doc())
            router.add_api_route(
                f"/{t}{path}",
                endpoint,
                methods=[method],
                tags=[t],
                summary=summary,
                openapi_extra=extra,
                name=f"{t}.{endpoint.__name__}.{method.lower()}",
            )

    def _search_doc(self) -> dict[str, Any]:
        params = [
            {
                "name": p.name,
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": f"{p.kind}: {p.description or ', '.join(p.paths)}",
            }
            for p in self.rdef.search_params
        ]
        for name, doc in (
            ("_id", "token: logical id"),
            ("_lastUpdated", "date: meta.lastUpdated, with prefixes"),
            ("_count", f"page size (default {DEFAULT_COUNT}, max {MAX_COUNT})"),
            (OFFSET_PARAM, "offset of the page (from the paging links)"),
            ("_sort", "comma-separated parameters, '-' for descending"),
            ("_include", f"{self.type}:<reference param>"),
            ("_revinclude", "<Type>:<reference param>"),
            ("_summary", "count | true | text | data | false"),
            ("_total", "none | estimate | accurate"),
            ("_elements", "comma-separated top-level elements"),
        ):
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": doc,
                }
            )
        return {"parameters": params}

    # -- operations (HTTP-free: the routes below and batch/transaction Bundles share them) ----------
    def read_op(self, session: Session, principal: Principal, id: str) -> StoredResource:
        patient, only = self.restriction(principal, "r")
        return self.store.read(session, self.rdef, id, patient_restriction=patient, scope_filter=only)

    def vread_op(self, session: Session, principal: Principal, id: str, vid: str) -> StoredResource:
        if not vid.isascii() or not vid.isdigit():
            raise NotFound(f"{self.type}/{id} has no version {vid!r}")
        version = bounded_int("vid", vid, MAX_INT32)
        patient, only = self.restriction(principal, "r")
        return self.store.vread(
            session, self.rdef, id, version, patient_restriction=patient, scope_filter=only
        )

    def search_op(
        self,
        session: Session,
        principal: Principal,
        params: Sequence[tuple[str, str]],
        *,
        handling: Handling,
        base: str,
    ) -> str:
        """The searchset Bundle text."""
        patient, only = self.restriction(principal, "s")
        include_types, include_filters = self._include_types(principal, patient)
        result = self.store.search(
            session,
            self.rdef,
            params,
            handling=handling,
            patient_restriction=patient,
            include_types=include_types,
            scope_filter=only,
            include_filters=include_filters,
        )
        return searchset_bundle(result, self.rdef, base_url=base, definitions=self.store.definitions)

    def history_op(
        self, session: Session, principal: Principal, id: str | None, q: Mapping[str, str], *, base: str
    ) -> str:
        """The history Bundle text (``q``: ``_count``, ``_since`` and the paging offset); instance
        history is a read (``r``), type history a search (``s``)."""
        patient, only = self.restriction(principal, "s" if id is None else "r")
        count = min(_int_param(q.get("_count"), "_count", DEFAULT_COUNT, MAX_INT32), MAX_COUNT)
        offset = _int_param(q.get(OFFSET_PARAM), OFFSET_PARAM, 0, self.store.limits.max_page_offset)
        since = None
        if q.get("_since"):
            rng = date_range(q["_since"])
            if rng is None:
                raise InvalidRequest(f"_since={q['_since']} is not a valid instant", expression="_since")
            since = rng[0]
        result = self.store.history(
            session,
            self.rdef,
            id,
            since=since,
            count=count,
            offset=offset,
            patient_restriction=patient,
            scope_filter=only,
        )
        path = f"{self.type}/_history" if id is None else f"{self.type}/{id}/_history"
        params = [("_since", q["_since"])] if q.get("_since") else []
        return history_bundle(result, base_url=base, path=path, params=params)

    def match_create(
        self, session: Session, principal: Principal, condition: Sequence[tuple[str, str]]
    ) -> StoredResource | None:
        """The resource a conditional create (``If-None-Exist``) finds, or None; 412 if several."""
        patient, only = self.restriction(principal, "c")
        matches = self.store.match(
            session, self.rdef, condition, patient_restriction=patient, scope_filter=only
        )
        if len(matches) > 1:
            raise PreconditionFailed(f"If-None-Exist matched {len(matches)} {self.type} resources")
        return matches[0] if matches else None

    def create_op(
        self,
        session: Session,
        principal: Principal,
        resource: dict[str, Any],
        *,
        condition: Sequence[tuple[str, str]] | None = None,
        id: str | None = None,
    ) -> Written:
        """Create (server-assigned id unless ``id``); with ``condition``, the match if there is one."""
        patient, only = self.restriction(principal, "c")
        if condition:
            found = self.match_create(session, principal, condition)
            if found is not None:
                return Written(found, 200, created=False, body=self.may_read(principal, found))
        stored = self.store.create(
            session, self.rdef, resource, id=id, patient_restriction=patient, scope_filter=only
        )
        return Written(stored, 201, created=True)

    def update_op(
        self,
        session: Session,
        principal: Principal,
        id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> Written:
        if "id" not in resource:
            raise InvalidResource(
                "An update must carry the resource id in the body", expression=f"{self.type}.id"
            )
        patient, only = self.write_restriction(session, principal, id)
        stored = self.store.update(
            session,
            self.rdef,
            id,
            resource,
            if_match=if_match,
            patient_restriction=patient,
            scope_filter=only,
        )
        return Written(stored, 201 if stored.created else 200, created=stored.created)

    def match_update(
        self,
        session: Session,
        principal: Principal,
        params: Sequence[tuple[str, str]],
        resource: dict[str, Any],
    ) -> str | None:
        """The id a conditional update writes (the match, else the body's id), or None to create."""
        patient, only = self.restriction(principal, "u")
        matches = self.store.match(session, self.rdef, params, patient_restriction=patient, scope_filter=only)
        if len(matches) > 1:
            raise PreconditionFailed(f"The conditional update matched {len(matches)} {self.type} resources")
        body_id = resource.get("id")
        if matches and body_id not in (None, matches[0].id):
            raise InvalidResource(
                f"Body id '{body_id}' differs from the matching resource {matches[0].relative_url}",
                expression=f"{self.type}.id",
            )
        if matches:
            return matches[0].id
        return str(body_id) if isinstance(body_id, str) else None

    def upsert_op(
        self,
        session: Session,
        principal: Principal,
        target: str | None,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
        new_id: str | None = None,
    ) -> Written:
        """The write of a conditional update once :meth:`match_update` chose ``target``."""
        if target is not None:
            patient, only = self.write_restriction(session, principal, target)
            stored = self.store.update(
                session,
                self.rdef,
                target,
                resource,
                if_match=if_match,
                patient_restriction=patient,
                scope_filter=only,
            )
        else:
            patient, only = self.restriction(principal, "c")
            stored = self.store.create(
                session, self.rdef, resource, id=new_id, patient_restriction=patient, scope_filter=only
            )
        return Written(stored, 201 if stored.created else 200, created=stored.created)

    def delete_op(self, session: Session, principal: Principal, id: str) -> Written:
        patient, only = self.restriction(principal, "d")
        stored = self.store.delete(session, self.rdef, id, patient_restriction=patient, scope_filter=only)
        return Written(stored, 204)

    def conditional_delete_op(
        self, session: Session, principal: Principal, params: Sequence[tuple[str, str]]
    ) -> Written:
        patient, only = self.restriction(principal, "d")
        matches = self.store.match(session, self.rdef, params, patient_restriction=patient, scope_filter=only)
        if len(matches) > 1:
            raise PreconditionFailed(f"The conditional delete matched {len(matches)} {self.type} resources")
        stored = (
            self.store.delete(
                session, self.rdef, matches[0].id, patient_restriction=patient, scope_filter=only
            )
            if matches
            else None
        )
        return Written(stored, 204)

    # -- reads --------------------------------------------------------------------------------
    def read(self, request: Request, principal: PrincipalDep, session: SessionDep, id: str) -> Response:
        check_response_format(request)
        stored = self.read_op(session, principal, id)
        headers = resource_headers(stored)
        if not_modified(request.headers.get("if-none-match"), stored):
            return Response(status_code=304, headers=headers)
        return FhirResponse(RawJson(stored.text), headers=headers)

    def vread(
        self, request: Request, principal: PrincipalDep, session: SessionDep, id: str, vid: str
    ) -> Response:
        check_response_format(request)
        stored = self.vread_op(session, principal, id, vid)
        return FhirResponse(RawJson(stored.text), headers=resource_headers(stored))

    def search(
        self, request: Request, principal: PrincipalDep, session: SessionDep, params: SearchParams
    ) -> Response:
        text = self.search_op(
            session, principal, params, handling=prefer(request).handling, base=self.base(request)
        )
        return FhirResponse(RawJson(text))

    def type_history(self, request: Request, principal: PrincipalDep, session: SessionDep) -> Response:
        return self._history(request, principal, session, None)

    def instance_history(
        self, request: Request, principal: PrincipalDep, session: SessionDep, id: str
    ) -> Response:
        return self._history(request, principal, session, id)

    def _history(
        self, request: Request, principal: Principal, session: SessionDep, id: str | None
    ) -> Response:
        check_response_format(request)
        text = self.history_op(session, principal, id, request.query_params, base=self.base(request))
        return FhirResponse(RawJson(text))

    # -- writes -------------------------------------------------------------------------------
    def create(self, request: Request, principal: PrincipalDep, session: SessionDep, body: Body) -> Response:
        resource = jsontext.parse_resource(body, self.type)
        condition = create_condition(request.headers.get("if-none-exist"), request.query_params.multi_items())
        written = self.create_op(session, principal, resource, condition=condition)
        return self._write_response(request, written)

    def update(
        self, request: Request, principal: PrincipalDep, session: SessionDep, id: str, body: Body
    ) -> Response:
        resource = jsontext.parse_resource(body, self.type)
        written = self.update_op(session, principal, id, resource, if_match=if_match(request))
        return self._write_response(request, written)

    def conditional_update(
        self, request: Request, principal: PrincipalDep, session: SessionDep, body: Body
    ) -> Response:
        resource = jsontext.parse_resource(body, self.type)
        params = request.query_params.multi_items()
        target = self.match_update(session, principal, params, resource)
        written = self.upsert_op(session, principal, target, resource, if_match=if_match(request))
        return self._write_response(request, written)

    def delete(self, request: Request, principal: PrincipalDep, session: SessionDep, id: str) -> Response:
        return self._deleted_response(request, self.delete_op(session, principal, id).stored)

    def conditional_delete(self, request: Request, principal: PrincipalDep, session: SessionDep) -> Response:
        written = self.conditional_delete_op(session, principal, request.query_params.multi_items())
        return self._deleted_response(request, written.stored)

    # -- helpers ------------------------------------------------------------------------------
    def restriction(
        self, principal: Principal, letter: Permission, rdef: ResourceDefinition | None = None
    ) -> tuple[str | None, ScopeFilter | None]:
        """403 unless the token's scopes grant ``letter`` on this type (or ``rdef``'s); then the patient
        and the scope filter that access is confined to (None: not confined)."""
        rdef = rdef or self.rdef
        granted = principal.access(rdef.type, letter)
        only = None
        if granted.filters is not None:
            only = ScopeFilter.compile(rdef, granted.filters, self.store.definitions)
        return granted.patient, only

    def write_restriction(
        self, session: Session, principal: Principal, id: str
    ) -> tuple[str | None, ScopeFilter | None]:
        """An update's confinement (``u``); an update that creates (no current version) needs ``c`` too,
        and is confined by what ``c`` allows."""
        updating = self.restriction(principal, "u")
        current = self.store.get(session, self.type, id)
        if current is None or current.deleted:
            return self.restriction(principal, "c")
        return updating

    def may_read(self, principal: Principal, stored: StoredResource) -> bool:
        """Whether the token may read ``stored`` (``r``, its compartment and filter)."""
        if not principal.allows(self.type, "r"):
            return False
        patient, only = self.restriction(principal, "r")
        if patient is not None and patient not in self.store.indexer.patients(self.rdef, stored.resource()):
            return False
        return only is None or only.admits(self.store.indexer, stored.resource())

    def _include_types(
        self, principal: Principal, patient: str | None
    ) -> tuple[set[str], dict[str, ScopeFilter]]:
        """Types this principal may see as includes (an included resource is read: ``r``) without
        widening its patient restriction, and the filters included resources of a type must pass."""
        allowed = set()
        filters: dict[str, ScopeFilter] = {}
        for rtype, rdef in self.store.definitions.items():
            if principal.allows(rtype, "r"):
                own, only = self.restriction(principal, "r", rdef)
                if own is None or own == patient:
                    allowed.add(rtype)
                    if only is not None:
                        filters[rtype] = only
        return allowed, filters

    def _write_response(self, request: Request, written: Written) -> Response:
        stored = written.stored
        assert stored is not None
        created = written.created
        headers = resource_headers(stored, location_base=self.base(request) if created else None)
        wanted = prefer(request).return_
        if wanted == "minimal" or not written.body:
            return Response(status_code=written.status, headers=headers)
        if wanted == "OperationOutcome":
            verb = "Created" if created else "Stored"
            return FhirResponse(
                informational_outcome(f"{verb} {stored.version_url}"),
                status_code=written.status,
                headers=headers,
            )
        return FhirResponse(RawJson(stored.text), status_code=written.status, headers=headers)

    def _deleted_response(self, request: Request, stored: StoredResource | None) -> Response:
        headers = resource_headers(stored) if stored is not None else {}
        if prefer(request).return_ == "OperationOutcome":
            what = f"Deleted {stored.relative_url}" if stored else "Nothing to delete"
            return FhirResponse(informational_outcome(what), status_code=200, headers=headers)
        return Response(status_code=204, headers=headers)


@dataclass(frozen=True)
class Written:
    """What a write did: the stored version (None: a delete that found nothing) and its status."""

    stored: StoredResource | None
    status: int
    created: bool = False
    # False when a conditional create found a resource the caller may not read.
    body: bool = True


def _int_param(value: str | None, name: str, default: int, maximum: int) -> int:
    if value is None:
        return default
    return bounded_int(name, value, maximum)


# Query parameters that only shape the response; a POST create carrying only these is unconditional.
_FORMAT_PARAMS = frozenset({"_format", "_pretty", "_summary", "_elements"})


def condition_params(header: str) -> list[tuple[str, str]]:
    """``If-None-Exist: identifier=x|1&status=final`` (an optional leading ``Type?`` is dropped)."""
    query = re.sub(r"^[A-Z][A-Za-z]+\?", "", header.strip())
    return parse_qsl(query, keep_blank_values=True)


def create_condition(header: str | None, query: Sequence[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """The criteria of a conditional create: the ``If-None-Exist`` header, the only form FHIR defines.

    ``POST [type]?identifier=x`` is how fhirpy (``get_or_create``, ``resource.create(**criteria)``) asks
    for one. FHIR gives a query on create no meaning, and silently ignoring it would store a duplicate the
    client believes it prevented, so it is refused (400) with what to send instead.
    """
    criteria = [(k, v) for k, v in query if k not in _FORMAT_PARAMS]
    if criteria:
        names = ", ".join(sorted({k for k, _ in criteria}))
        raise InvalidRequest(
            f"search parameters on a create ({names}) are not defined by FHIR: a conditional create sends "
            f"its criteria in the If-None-Exist header (If-None-Exist: {urlencode(criteria)}); "
            "in a Bundle, in entry.request.ifNoneExist",
            expression="If-None-Exist",
        )
    return condition_params(header) if header and header.strip() else None
