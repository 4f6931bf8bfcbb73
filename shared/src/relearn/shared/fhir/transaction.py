"""batch and transaction Bundles posted to the base URL (``POST [base]``).

    batch        every entry on its own, in its own database transaction; the
                 ``batch-response`` has one entry per request entry, in the same order, each
                 with ``response.status`` (and ``location``/``etag`` or an ``outcome``).
    transaction  every entry in ONE database transaction: all stored or nothing. The first
                 failure fails the whole Bundle with that entry's OperationOutcome (its
                 status, ``issue.expression`` pointing into ``Bundle.entry[i]``).
                 Entries run in the FHIR order (DELETE, POST, PUT, GET) and ``fullUrl``
                 references (``urn:uuid:...``) are rewritten to the ids the server assigns.

Each entry goes through the same operations, scope checks and patient compartments as the
single-resource routes (:class:`relearn.shared.fhir.routes.TypeApi`), so a Bundle can do
nothing its entries could not do one by one. PATCH is not supported; read-only types refuse
writes with 405.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl

from fastapi import Request, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session

from relearn.shared.auth.dependency import PrincipalDep
from relearn.shared.auth.principal import Principal
from relearn.shared.db import transaction
from relearn.shared.deps import EngineDep
from relearn.shared.fhir import jsontext
from relearn.shared.fhir.dates import format_instant, now_ms
from relearn.shared.fhir.definition import Interaction
from relearn.shared.fhir.errors import (
    FhirError,
    InvalidRequest,
    Issue,
    MethodNotAllowed,
    NotFound,
    informational_outcome,
)
from relearn.shared.fhir.http import Prefer, not_modified, parse_if_match, prefer
from relearn.shared.fhir.limits import FhirLimits
from relearn.shared.fhir.records import StoredResource
from relearn.shared.fhir.response import FhirResponse, RawJson
from relearn.shared.fhir.routes import Body, TypeApi, Written, create_condition

logger = logging.getLogger(__name__)

BUNDLE_TYPES = ("batch", "transaction")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# FHIR transaction processing order (R4 http.html#trules).
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")
_WRITES: tuple[Interaction, ...] = ("create", "update", "delete")


@dataclass
class EntryRequest:
    """One ``Bundle.entry`` as a request: what it asks of which type."""

    index: int
    method: str
    url: str
    type: str
    interaction: Interaction | None  # None: PATCH (not supported)
    id: str | None = None
    vid: str | None = None
    query: list[tuple[str, str]] = field(default_factory=list)
    resource: dict[str, Any] | None = None
    full_url: str | None = None
    if_none_exist: str | None = None
    if_match: str | None = None
    if_none_match: str | None = None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE") and self.interaction != "search-type"


@dataclass
class BundleRequest:
    type: str
    entries: list[EntryRequest]


# -- parsing -------------------------------------------------------------------------------------
def parse_bundle(body: bytes, base: str, *, max_entries: int | None = None) -> BundleRequest:
    """Validate a posted batch/transaction Bundle; 400 naming every wrong field (``Bundle.entry[2]...``),
    413 above ``max_entries`` entries (default :class:`FhirLimits`), 422 for a number out of range."""
    try:
        bundle = jsontext.loads(body)
    except RecursionError:
        raise InvalidRequest("The JSON is nested too deep", expression="Bundle") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}", expression="Bundle") from exc
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        got = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise InvalidRequest(
            f"POST to the base URL takes a Bundle of type batch or transaction, not {got!r}",
            expression="Bundle.resourceType",
        )
    btype = bundle.get("type")
    if btype not in BUNDLE_TYPES:
        raise InvalidRequest(
            f"Bundle.type must be batch or transaction to be posted to the base URL, got {btype!r}",
            expression="Bundle.type",
        )
    raw_entries = bundle.get("entry", [])
    if not isinstance(raw_entries, list):
        raise InvalidRequest("Bundle.entry must be a list", expression="Bundle.entry")
    limit = FhirLimits().max_bundle_entries if max_entries is None else max_entries
    if len(raw_entries) > limit:
        raise FhirError(
            f"{len(raw_entries)} entries; a batch or transaction takes at most {limit} (max_bundle_entries): "
            "split it",
            expression="Bundle.entry",
            status_code=413,
            issue_code="too-long",
        )
    jsontext.check_numbers(bundle, "Bundle")
    issues: list[Issue] = []
    entries: list[EntryRequest] = []
    for i, raw in enumerate(raw_entries):
        entry = _parse_entry(i, raw, base, issues)
        if entry is not None:
            entries.append(entry)
    if btype == "transaction":
        seen: dict[str, int] = {}
        for e in entries:
            if e.full_url is None:
                continue
            if e.full_url in seen:
                issues.append(
                    _issue(
                        f"{e.where}.fullUrl",
                        f"fullUrl {e.full_url} is also used by Bundle.entry[{seen[e.full_url]}]",
                    )
                )
            seen[e.full_url] = e.index
    if issues:
        raise InvalidRequest(issues[0].diagnostics, issues=issues)
    return BundleRequest(str(btype), entries)


def _issue(expression: str, message: str) -> Issue:
    return Issue("invalid", f"{expression}: {message}", "error", [expression])


def _parse_entry(i: int, raw: Any, base: str, issues: list[Issue]) -> EntryRequest | None:
    where = f"Bundle.entry[{i}]"
    if not isinstance(raw, dict):
        issues.append(_issue(where, "an entry must be an object"))
        return None
    request = raw.get("request")
    if not isinstance(request, dict):
        issues.append(_issue(f"{where}.request", "every entry of a batch or transaction needs a request"))
        return None
    method = request.get("method")
    if method not in _METHODS:
        issues.append(
            _issue(f"{where}.request.method", f"must be one of {', '.join(_METHODS)}, got {method!r}")
        )
        return None
    url = request.get("url")
    if not isinstance(url, str) or not url.strip():
        issues.append(_issue(f"{where}.request.url", "a relative URL such as Observation or Observation/123"))
        return None
    parsed = _parse_url(url.strip(), base)
    if isinstance(parsed, str):
        issues.append(_issue(f"{where}.request.url", parsed))
        return None
    rtype, parts, query = parsed
    interaction = _interaction(str(method), parts, query)
    if isinstance(interaction, str) and interaction.startswith("!"):
        issues.append(_issue(f"{where}.request.url", f"{method} {url}: {interaction[1:]}"))
        return None
    entry = EntryRequest(
        index=i,
        method=str(method),
        url=url,
        type=rtype,
        interaction=cast("Interaction | None", interaction),
        id=parts[0] if parts and not parts[0].startswith("_") else None,
        vid=parts[2] if len(parts) == 3 else None,
        query=query,
    )
    for key, attr in (
        ("ifNoneExist", "if_none_exist"),
        ("ifMatch", "if_match"),
        ("ifNoneMatch", "if_none_match"),
    ):
        value = request.get(key)
        if value is not None and not isinstance(value, str):
            issues.append(_issue(f"{where}.request.{key}", "must be a string"))
        elif value is not None:
            setattr(entry, attr, value)
    full_url = raw.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        issues.append(_issue(f"{where}.fullUrl", "must be a string"))
    elif isinstance(full_url, str) and full_url:
        entry.full_url = full_url
    resource = raw.get("resource")
    needs_body = method in ("POST", "PUT") and interaction != "search-type"
    if needs_body:
        if not isinstance(resource, dict):
            issues.append(_issue(f"{where}.resource", f"{method} {url} needs the resource"))
        elif resource.get("resourceType") != rtype:
            issues.append(
                _issue(
                    f"{where}.resource.resourceType",
                    f"is {resource.get('resourceType')!r} but request.url is for {rtype}",
                )
            )
        else:
            entry.resource = resource
    return entry


def _parse_url(url: str, base: str) -> tuple[str, list[str], list[tuple[str, str]]] | str:
    """``Type[/id[/_history[/vid]]][?query]`` (relative, or absolute on ``base``), or why not."""
    if "://" in url:
        prefix = base.rstrip("/") + "/"
        if not url.startswith(prefix):
            return f"an absolute URL must be on this server's base {base}"
        url = url[len(prefix) :]
    path, _, qs = url.lstrip("/").partition("?")
    parts = [p for p in path.split("/") if p]
    if not parts or not _TYPE.match(parts[0]):
        return f"{url!r} does not start with a resource type"
    try:
        query = parse_qsl(qs, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        return f"the query string is malformed: {exc}"
    return parts[0], parts[1:], query


def _interaction(method: str, parts: list[str], query: list[tuple[str, str]]) -> str | None:
    """The interaction a method on a path means; ``"!why"`` when it means none."""
    n = len(parts)
    if method in ("GET", "HEAD"):
        if n == 0:
            return "search-type"
        if n == 1:
            return "history-type" if parts[0] == "_history" else "read"
        if n == 2 and parts[1] == "_history":
            return "history-instance"
        if n == 3 and parts[1] == "_history":
            return "vread"
        return "!not a read, search or history URL"
    if method == "POST":
        if n == 0:
            return "create"
        if parts == ["_search"]:
            return "search-type"
        return "!POST goes to the type (create) or to Type/_search"
    if method == "PATCH":
        return None if n == 1 else "!PATCH needs Type/id"
    if n == 1 and not parts[0].startswith("_"):
        return "update" if method == "PUT" else "delete"
    if n == 0:
        if query:
            return "update" if method == "PUT" else "delete"
        return f"!{method} needs Type/id or search criteria (a conditional {method.lower()})"
    return f"!{method} needs Type/id or Type?criteria"


# -- processing ----------------------------------------------------------------------------------
class BundleProcessor:
    """Runs parsed Bundles against the operations of the types a service serves."""

    def __init__(self, apis: Mapping[str, TypeApi], base: str) -> None:
        self.apis = apis
        self.base = base.rstrip("/")

    def batch(self, engine: Engine, principal: Principal, bundle: BundleRequest, prefs: Prefer) -> str:
        out: list[dict[str, Any]] = []
        for e in bundle.entries:
            try:
                urns = [p for p, v in _references(e.resource, e.where + ".resource") if _is_urn(v)]
                if urns:
                    raise InvalidRequest(
                        "entries of a batch are independent and cannot reference each other by fullUrl "
                        "(send a transaction to link them)",
                        expression=urns,
                    )
                with transaction(engine) as session:
                    out.append(self._run(session, principal, e, prefs))
            except FhirError as exc:
                out.append(error_entry(located(exc, e)))
            except Exception:  # one entry's bug must not lose the others' answers
                logger.exception("batch entry failed", extra={"entry": e.index, "url": e.url})
                out.append(
                    error_entry(FhirError("Internal server error", status_code=500, issue_code="exception"))
                )
        return response_bundle("batch-response", out)

    def transaction(self, engine: Engine, principal: Principal, bundle: BundleRequest, prefs: Prefer) -> str:
        entries = bundle.entries
        for e in entries:  # refuse what cannot be done before touching the database
            with _at(e):
                self._api(e)
        results: dict[int, dict[str, Any]] = {}
        by_method = sorted(entries, key=lambda e: (_ORDER[e.method], e.index))
        with transaction(engine) as session:
            for e in (e for e in by_method if e.method == "DELETE"):
                with _at(e):
                    results[e.index] = self._run(session, principal, e, prefs)
            plans = self._plan_writes(session, principal, entries)
            for e in by_method:
                if e.method in ("POST", "PUT") and e.index in plans:
                    with _at(e):
                        results[e.index] = self._write(session, principal, e, plans[e.index], prefs)
            for e in by_method:
                if e.index not in results:
                    with _at(e):
                        results[e.index] = self._run(session, principal, e, prefs)
        return response_bundle("transaction-response", [results[e.index] for e in entries])

    # -- transaction planning ---------------------------------------------------------------------
    def _plan_writes(
        self, session: Session, principal: Principal, entries: list[EntryRequest]
    ) -> dict[int, _Plan]:
        """Decide every POST/PUT target first, so ``fullUrl`` references can be rewritten."""
        plans: dict[int, _Plan] = {}
        mapping: dict[str, str] = {}
        for e in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
            if e.resource is None or e.method not in ("POST", "PUT"):
                continue
            api = self.apis[e.type]
            with _at(e):
                if e.method == "POST":
                    condition = create_condition(e.if_none_exist, e.query)
                    found = api.match_create(session, principal, condition) if condition else None
                    plan = _Plan(e.type, found.id if found else str(uuid.uuid4()), found=found)
                elif e.id is not None:
                    plan = _Plan(e.type, e.id)
                else:
                    target = api.match_update(session, principal, e.query, e.resource)
                    plan = _Plan(
                        e.type, target or str(uuid.uuid4()), conditional=True, exists=target is not None
                    )
            plans[e.index] = plan
            if e.full_url and e.full_url != f"{self.base}/{plan.reference}":
                mapping[e.full_url] = plan.reference
        touched: dict[str, int] = {}
        for e in entries:
            if e.index in plans:
                ref: str | None = None if plans[e.index].found else plans[e.index].reference
            else:
                ref = f"{e.type}/{e.id}" if e.is_write and e.id else None
            if ref is None:
                continue
            if ref in touched:
                with _at(e):
                    raise InvalidRequest(
                        f"{ref} is also written by Bundle.entry[{touched[ref]}]; a transaction may change "
                        "a resource only once",
                        expression=f"{e.where}.request.url",
                    )
            touched[ref] = e.index
        for e in entries:
            if e.resource is None or e.index not in plans:
                continue
            unresolved = _rewrite(e.resource, mapping)
            if unresolved:
                with _at(e):
                    paths = [f"{e.where}.resource{p}" for p in unresolved]
                    raise InvalidRequest(
                        "this reference matches no entry's fullUrl in the transaction",
                        expression=paths,
                    )
        return plans

    def _write(
        self, session: Session, principal: Principal, e: EntryRequest, plan: _Plan, prefs: Prefer
    ) -> dict[str, Any]:
        api = self.apis[e.type]
        assert e.resource is not None
        if plan.found is not None:
            written = Written(plan.found, 200, created=False, body=api.may_read(principal, plan.found))
        elif e.method == "POST":
            written = api.create_op(session, principal, e.resource, id=plan.id)
        elif not plan.conditional:
            written = api.update_op(session, principal, plan.id, e.resource, if_match=_if_match(e))
        else:
            target = plan.id if plan.exists else None
            written = api.upsert_op(
                session, principal, target, e.resource, if_match=_if_match(e), new_id=plan.id
            )
        return self._write_entry(written, prefs)

    # -- one entry ------------------------------------------------------------------------------
    def _api(self, e: EntryRequest) -> TypeApi:
        api = self.apis.get(e.type)
        if api is None:
            raise NotFound(f"Resource type '{e.type}' is not served here", issue_code="not-supported")
        if e.interaction is None:
            raise MethodNotAllowed("PATCH is not supported; send the whole resource with PUT")
        if not api.rdef.supports(e.interaction):
            if not any(api.rdef.supports(w) for w in _WRITES):
                raise MethodNotAllowed(f"{e.type} is read-only on this server: {e.method} is not supported")
            raise MethodNotAllowed(f"{e.type} does not support {e.interaction}")
        return api

    def _run(self, session: Session, principal: Principal, e: EntryRequest, prefs: Prefer) -> dict[str, Any]:
        api = self._api(e)
        show = e.method != "HEAD"
        match e.interaction:
            case "read":
                assert e.id is not None
                stored = api.read_op(session, principal, e.id)
                if not_modified(e.if_none_match, stored):
                    return {"response": {"status": status_line(304), **_version_fields(stored)}}
                return self._read_entry(stored, show)
            case "vread":
                assert e.id is not None and e.vid is not None
                return self._read_entry(api.vread_op(session, principal, e.id, e.vid), show)
            case "search-type":
                text = api.search_op(session, principal, e.query, handling=prefs.handling, base=self.base)
                return _text_entry(text, show)
            case "history-type" | "history-instance":
                text = api.history_op(session, principal, e.id, dict(e.query), base=self.base)
                return _text_entry(text, show)
            case "create":
                assert e.resource is not None
                condition = create_condition(e.if_none_exist, e.query)
                return self._write_entry(
                    api.create_op(session, principal, e.resource, condition=condition), prefs
                )
            case "update":
                assert e.resource is not None
                if e.id is not None:
                    written = api.update_op(session, principal, e.id, e.resource, if_match=_if_match(e))
                else:
                    target = api.match_update(session, principal, e.query, e.resource)
                    written = api.upsert_op(session, principal, target, e.resource, if_match=_if_match(e))
                return self._write_entry(written, prefs)
            case "delete":
                if e.id is not None:
                    return self._write_entry(api.delete_op(session, principal, e.id), prefs)
                return self._write_entry(api.conditional_delete_op(session, principal, e.query), prefs)
        raise MethodNotAllowed(f"{e.method} {e.url} is not supported in a Bundle")  # pragma: no cover

    def _read_entry(self, stored: StoredResource, show: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"fullUrl": f"{self.base}/{stored.relative_url}"}
        if show:
            entry["resource"] = jsontext.raw(stored.text)
        entry["response"] = {"status": status_line(200), **_version_fields(stored)}
        return entry

    def _write_entry(self, written: Written, prefs: Prefer) -> dict[str, Any]:
        stored = written.stored
        entry: dict[str, Any] = {}
        response: dict[str, Any] = {"status": status_line(written.status)}
        if stored is not None:
            if not stored.deleted:
                entry["fullUrl"] = f"{self.base}/{stored.relative_url}"
                response["location"] = stored.version_url
            response.update(_version_fields(stored))
        if prefs.return_ == "representation" and written.body and stored is not None and not stored.deleted:
            entry["resource"] = jsontext.raw(stored.text)
        elif prefs.return_ == "OperationOutcome":
            if stored is None:
                what = "Nothing to delete"
            elif stored.deleted:
                what = f"Deleted {stored.relative_url}"
            else:
                what = f"{'Created' if written.created else 'Stored'} {stored.version_url}"
            response["outcome"] = informational_outcome(what)
        entry["response"] = response
        return entry


@dataclass
class _Plan:
    """Where a transaction's POST/PUT entry writes, decided before anything is written."""

    type: str
    id: str
    found: StoredResource | None = None  # a conditional create that matched: nothing to write
    conditional: bool = False  # a conditional update
    exists: bool = False  # ...that matched an existing resource

    @property
    def reference(self) -> str:
        return f"{self.type}/{self.id}"


# -- errors located in the Bundle ----------------------------------------------------------------
def located(exc: FhirError, e: EntryRequest) -> FhirError:
    """The same error, its diagnostics and expressions pointing at ``Bundle.entry[i]``."""
    prefix = f"{e.where} ({e.method} {e.url})"
    issues = []
    for issue in exc.issues:
        unplaced = (
            f"{e.where}.request.ifMatch" if exc.status_code == 412 and e.if_match else f"{e.where}.request"
        )
        exprs = [_locate_expression(x, e) for x in issue.expression] or [unplaced]
        diag = (
            issue.diagnostics if issue.diagnostics.startswith(e.where) else f"{prefix}: {issue.diagnostics}"
        )
        issues.append(Issue(issue.code, diag, issue.severity, list(dict.fromkeys(exprs))))
    return FhirError(
        issues[0].diagnostics, status_code=exc.status_code, issue_code=exc.issue_code, issues=issues
    )


def _locate_expression(expression: str, e: EntryRequest) -> str:
    if expression.startswith("Bundle."):
        return expression
    if expression == e.type or expression.startswith(f"{e.type}."):
        return f"{e.where}.resource{expression[len(e.type) :]}"
    if expression == "If-Match":
        return f"{e.where}.request.ifMatch"
    if expression == "If-None-Exist":
        return f"{e.where}.request.ifNoneExist"
    return f"{e.where}.request.url"


@contextmanager
def _at(e: EntryRequest) -> Iterator[None]:
    try:
        yield
    except FhirError as exc:
        raise located(exc, e) from exc


def error_entry(exc: FhirError) -> dict[str, Any]:
    """A response entry for a failed request entry."""
    return {"response": {"status": status_line(exc.status_code), "outcome": exc.to_operation_outcome()}}


# -- helpers -------------------------------------------------------------------------------------
def status_line(code: int) -> str:
    """``201 Created``: a Bundle ``response.status``."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _version_fields(stored: StoredResource) -> dict[str, str]:
    return {"etag": stored.etag, "lastModified": format_instant(stored.last_updated)}


def _text_entry(text: str, show: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if show:
        entry["resource"] = jsontext.raw(text)
    entry["response"] = {"status": status_line(200)}
    return entry


def _if_match(e: EntryRequest) -> int | None:
    return parse_if_match(e.if_match, expression="If-Match")


def _is_urn(value: str) -> bool:
    return value.startswith(("urn:uuid:", "urn:oid:"))


def _references(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every ``Reference.reference`` string in a resource, with its path."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "reference" and isinstance(v, str):
                yield f"{path}.reference", v
            else:
                yield from _references(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _references(v, f"{path}[{i}]")


def _rewrite(resource: dict[str, Any], mapping: Mapping[str, str]) -> list[str]:
    """Replace references to other entries' fullUrls in place; the paths of ``urn:`` ones left over."""
    unresolved: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k == "reference" and isinstance(v, str):
                    if v in mapping:
                        value[k] = mapping[v]
                    elif _is_urn(v):
                        unresolved.append(f"{path}.reference")
                else:
                    walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    walk(resource, "")
    return unresolved


def response_bundle(kind: str, entries: list[dict[str, Any]]) -> str:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": format_instant(now_ms())},
        "type": kind,
    }
    if entries:
        bundle["entry"] = entries
    return jsontext.dumps(bundle)


# -- the route ------------------------------------------------------------------------------------
class BundleApi:
    """``POST [base]``: the endpoint :func:`relearn.shared.fhir.router.fhir_router` installs."""

    def __init__(self, apis: Mapping[str, TypeApi], base_url: str | None, prefix: str) -> None:
        self.apis = apis
        self._base_url = base_url
        self._prefix = prefix

    def post(self, request: Request, principal: PrincipalDep, engine: EngineDep, body: Body) -> Response:
        if principal.is_device:  # nothing a Bundle can do is open to device credentials
            principal.require("Bundle", "write")
        base = (self._base_url or str(request.base_url).rstrip("/") + self._prefix).rstrip("/")
        limits = next(iter(self.apis.values())).store.limits if self.apis else FhirLimits()
        bundle = parse_bundle(body, base, max_entries=limits.max_bundle_entries)
        processor = BundleProcessor(self.apis, base)
        prefs = prefer(request)
        if bundle.type == "batch":
            text = processor.batch(engine, principal, bundle, prefs)
        else:
            text = processor.transaction(engine, principal, bundle, prefs)
        return FhirResponse(RawJson(text))
