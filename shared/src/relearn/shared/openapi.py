"""OpenAPI that tells the truth about errors: every refusal a route can give is documented, as the
``application/fhir+json`` OperationOutcome it is.

FastAPI documents a 422 ``HTTPValidationError`` for request validation; Relearn answers those with a 400
OperationOutcome (:mod:`relearn.shared.fhir.handlers`), so that entry is replaced. The refusals of the
request guard (:mod:`relearn.shared.guard`: 400, 413, 414, 415) and of authentication (401, except on the
open routes) are added to every operation, and every documented 4xx/5xx gets the OperationOutcome body.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from fastapi import FastAPI

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
_AUTH = {"401": "No bearer token, or one that is not valid (WWW-Authenticate says why)"}
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
            if "requestBody" in operation:
                wanted.update(_BODY)
            if path not in open_paths:
                wanted.update(_AUTH)
            for status, description in wanted.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status[:1] in ("4", "5") and isinstance(response, dict):
                    response["content"] = dict(outcome)
    return spec


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
