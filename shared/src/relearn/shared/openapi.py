"""OpenAPI that tells the truth: every refusal a route can give is documented, as the
``application/fhir+json`` OperationOutcome it is, and FHIR resources are typed by their JSON schema.

FastAPI documents a 422 ``HTTPValidationError`` for request validation; Relearn answers those with a 400
OperationOutcome (:mod:`relearn.shared.fhir.handlers`), so that entry is replaced. Added to every operation:
the refusals of the request guard (:mod:`relearn.shared.guard`: 400, 413, 414, 415 with a body), 503 with
``Retry-After`` (the request deadline passed and its work was rolled back, the database is unreachable, or,
at the front door, the service behind it is), and, except on the open routes, authentication (401) and
authorization (403). An operation with path parameters can answer 404 (nothing there, or not the token's);
a POST 422 (its ``Idempotency-Key`` was used with another request). Every documented 4xx/5xx gets the
OperationOutcome body. The FHIR types operations refer to (``#/components/schemas/fhir.<Type>``, see
:mod:`relearn.shared.fhir.openapi`) are added as components. A POST or PUT whose answer carries an ``id``
gets OpenAPI links to the operations under its path that take that id (schemathesis's stateful phase
follows them: ``POST /streams`` -> ``GET /streams/{stream_id}``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from relearn.shared.fhir import openapi as fhir_openapi

FHIR_JSON = "application/fhir+json"

OPERATION_OUTCOME_SCHEMA: dict[str, Any] = {
    "title": "OperationOutcome",
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string", "enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}

_GUARD = {
    "400": "Malformed request: a parameter, header, path or body (OperationOutcome names it)",
    "413": "The body is over the size limit (max_body_bytes) or a Bundle over max_bundle_entries",
    "414": "The query string is over max_query_bytes",
}
_BODY = {"415": "A body without Content-Type, or of a type this operation does not take"}
_AUTH = {
    "401": "No bearer token, or one that is not valid (WWW-Authenticate says why)",
    "403": "The token's scopes, patient or device do not allow this",
}
_ALWAYS = {
    "503": "Not now (Retry-After says when to retry): the request's deadline passed and nothing was stored, "
    "or the database or the service behind the front door is unavailable",
}
_PATH_PARAMS = {"404": "Nothing there, or nothing the token may see"}
_POST = {"422": "The Idempotency-Key was already used with another request, or the body breaks a rule"}
# Answers in another format than OperationOutcome: (path, status) -> content.
_OWN_CONTENT = {
    ("/readyz", "503"): {"application/json": {"schema": {"type": "object"}}},
}
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return str(schema.get("$ref", "")).endswith("/HTTPValidationError")


def document_errors(
    spec: dict[str, Any], *, open_paths: Collection[str] = (), other_errors: Collection[str] = ()
) -> dict[str, Any]:
    """Rewrite ``spec`` in place (and return it) as the module docstring says. ``open_paths`` need no
    token; ``other_errors`` answer errors in another format (the OAuth token endpoint) and are left as
    they are."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    components["OperationOutcome"] = OPERATION_OUTCOME_SCHEMA
    outcome = {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}
    for path, item in spec.get("paths", {}).items():
        if path in other_errors:
            continue
        for method, operation in item.items():
            if method not in _METHODS or not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            validation = responses.get("422")
            if validation is not None and _is_fastapi_validation(validation):
                del responses["422"]
            wanted = dict(_GUARD)
            wanted.update(_ALWAYS)
            if "requestBody" in operation:
                wanted.update(_BODY)
            if path not in open_paths:
                wanted.update(_AUTH)
                if "{" in path:
                    wanted.update(_PATH_PARAMS)
                if method == "post":
                    wanted.update(_POST)
            for status, description in wanted.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status[:1] in ("4", "5") and isinstance(response, dict):
                    response["content"] = _OWN_CONTENT.get((path, status), dict(outcome))
    _link_by_id(spec)
    for name, schema in fhir_openapi.components(fhir_openapi.referenced_types(spec)).items():
        components.setdefault(name, schema)
    return spec


def _link_by_id(spec: dict[str, Any]) -> None:
    """Links from a POST/PUT answer with an ``id`` to the operations below its path taking one parameter."""
    paths: dict[str, Any] = spec.get("paths", {})
    schemas = spec.get("components", {}).get("schemas", {})
    for path, item in paths.items():
        for method in ("post", "put"):
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                if status[:1] != "2" or not isinstance(response, dict) or "links" in response:
                    continue
                if not _has_id(response, schemas):
                    continue
                links = _links_below(paths, path)
                if links:
                    response["links"] = links


def _has_id(response: dict[str, Any], schemas: dict[str, Any]) -> bool:
    for media in response.get("content", {}).values():
        schema = media.get("schema", {}) if isinstance(media, dict) else {}
        target = str(schema.get("$ref", ""))
        if target.startswith("#/components/schemas/"):
            schema = schemas.get(target.rsplit("/", 1)[1], {})
        if "id" in schema.get("properties", {}):
            return True
    return False


def _links_below(paths: dict[str, Any], path: str) -> dict[str, Any]:
    """``path``'s own parameters are kept; the one new parameter right below it takes the answer's id."""
    base = path.rstrip("/")
    own = set(re.findall(r"{([^}]+)}", base))
    links: dict[str, Any] = {}
    for other, item in paths.items():
        if not other.startswith(base + "/{"):
            continue
        new = set(re.findall(r"{([^}]+)}", other)) - own
        if len(new) != 1:
            continue
        param = new.pop()
        for method, operation in item.items():
            if method not in _METHODS or not isinstance(operation, dict):
                continue
            pointer = other.replace("~", "~0").replace("/", "~1")
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{method}{other}")
            parameters = {param: "$response.body#/id"}
            parameters.update({p: f"$request.path.{p}" for p in own})
            links[name] = {"operationRef": f"#/paths/{pointer}/{method}", "parameters": parameters}
    return links


def install_error_docs(
    app: FastAPI, *, open_paths: Collection[str] = (), other_errors: Collection[str] = ()
) -> None:
    """Make ``app.openapi()`` return the document with its errors documented (computed once)."""
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(original(), open_paths=open_paths, other_errors=other_errors)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def merge_documents(
    own: dict[str, Any],
    others: Mapping[str, Mapping[str, Any]],
    include: Callable[[str, str], bool],
    extra_errors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``own`` with the operations of other documents (a gateway's view of the services behind it).

    ``others`` maps a service name to its document; ``include(service, path)`` says which of its paths are
    served here. A path ``own`` has keeps its operations, except that an operation ``own`` documents without
    a request body takes the service's documentation of it (the front door's ``POST /fhir`` forwards the
    service's Bundle). The first service to list a path wins it (a FHIR type several services serve). A
    component two documents define differently is renamed ``<service>.<name>`` in that service's part.
    ``extra_errors`` (status -> description) are added to every operation taken from another document, as
    OperationOutcomes (the front door's 504 when a service does not answer in time).
    """
    merged = copy.deepcopy(own)
    paths: dict[str, Any] = merged.setdefault("paths", {})
    schemas: dict[str, Any] = merged.setdefault("components", {}).setdefault("schemas", {})
    for service, document in others.items():
        theirs = copy.deepcopy(dict(document))
        their_schemas: dict[str, Any] = theirs.get("components", {}).get("schemas", {})
        renamed = {
            name: f"{service}.{name}"
            for name, schema in their_schemas.items()
            if name in schemas and schemas[name] != schema
        }
        if renamed:
            theirs = _renamed(theirs, renamed)
            their_schemas = theirs.get("components", {}).get("schemas", {})
        used = False
        for path, item in theirs.get("paths", {}).items():
            if not include(service, path):
                continue
            if path not in paths:
                paths[path] = _with_errors(item, extra_errors or {})
                used = True
                continue
            for method, operation in item.items():
                mine = paths[path].get(method)
                if isinstance(mine, dict) and "requestBody" not in mine and "requestBody" in operation:
                    summary = mine.get("summary", operation.get("summary"))
                    taken = _with_errors({method: operation}, extra_errors or {})[method]
                    paths[path][method] = {**taken, "summary": summary}
                    used = True
        if used:
            for name, schema in their_schemas.items():
                schemas.setdefault(name, schema)
        for name, scheme in theirs.get("components", {}).get("securitySchemes", {}).items():
            merged["components"].setdefault("securitySchemes", {}).setdefault(name, scheme)
    return merged


def _with_errors(item: dict[str, Any], errors: Mapping[str, str]) -> dict[str, Any]:
    outcome = {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}
    for method, operation in item.items():
        if method in _METHODS and isinstance(operation, dict):
            responses = operation.setdefault("responses", {})
            for status, description in errors.items():
                responses.setdefault(status, {"description": description, "content": dict(outcome)})
    return item


def _renamed(node: Any, renamed: Mapping[str, str]) -> Any:
    """``node`` with references to (and definitions of) the ``renamed`` components renamed."""
    prefix = "#/components/schemas/"
    if isinstance(node, list):
        return [_renamed(value, renamed) for value in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.startswith(prefix):
            name = value[len(prefix) :]
            out[key] = prefix + renamed.get(name, name)
        else:
            out[key] = _renamed(value, renamed)
    components = out.get("components")
    if isinstance(components, dict) and isinstance(components.get("schemas"), dict):
        components["schemas"] = {renamed.get(k, k): v for k, v in components["schemas"].items()}
    return out


Documents = Mapping[str, Mapping[str, Any]]
Included = Callable[[str, str], bool]


def install_merged_docs(
    app: FastAPI,
    others: Callable[[], Awaitable[tuple[Documents, Included]]],
    extra_errors: Mapping[str, str] | None = None,
) -> None:
    """Serve ``/openapi.json`` as the app's own document merged (:func:`merge_documents`) with the
    documents ``others()`` fetches, each time it is asked (the services behind may change)."""
    url = app.openapi_url or "/openapi.json"
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != url]

    async def openapi() -> JSONResponse:
        documents, include = await others()
        return JSONResponse(merge_documents(app.openapi(), documents, include, extra_errors))

    app.add_api_route(url, openapi, methods=["GET"], include_in_schema=False)
    app.router.routes.insert(0, app.router.routes.pop())  # before any catch-all route
