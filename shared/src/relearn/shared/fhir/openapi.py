"""FHIR resources in OpenAPI: a JSON schema per type, generated from the fhir.resources R4B models.

The official FHIR R4 JSON schema is one 3 MB document of every type. Here each resource type a service
serves gets its own schema (``#/components/schemas/fhir.<Type>``), built from the same R4B model that
validates it (:mod:`relearn.shared.fhir.validation`):

- ``resourceType`` is the type itself (required); every element of the type is listed by its JSON name, with
  its cardinality (array or not) and, for a primitive, its JSON type and FHIR's regular expression or range
  (``date``/``dateTime``/``instant``/``time`` by FHIR's own patterns, decimals as finite numbers); the
  ``_element`` extension siblings of primitives are objects (one ``patternProperties`` entry, not one
  property each: half the schema for generators); required elements are required; no other member is
  allowed (``additionalProperties: false``), as the server refuses unknown elements.
- Datatypes and backbone elements are components of their own (``fhir.CodeableConcept``,
  ``fhir.ObservationComponent``) built the same way. FHIR's datatype graph is recursive (Identifier ->
  Reference -> Identifier, Extension -> every datatype) and deep; the schemas are trimmed so that they form
  no cycle and stay small enough for a generator (schemathesis inlines references): inside a datatype, only
  datatypes made of primitives (Coding, Period, Quantity ...) are typed, others are plain JSON objects
  (``CodeableConcept.coding`` is typed, ``Identifier.assigner`` is an object); a type that would reach itself
  again is a plain object. ``Extension`` (anywhere), ``Narrative`` and
  ``contained`` resources are plain objects too (an Extension is an object with a ``url``).
- A ``choice[x]`` element is listed under each of its names; FHIR's "one of them only" is the server's to
  refuse (400), not the schema's.

What the schemas do not say is what FHIR constraints (invariants) and this server's own rules add: those are
refused with 400/422 OperationOutcomes, documented on each operation.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Iterable
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

PREFIX = "fhir."
REF_BASE = "#/components/schemas/"

# FHIR R4's regular expressions for the date-like primitives (pydantic's "format" keywords are narrower:
# FHIR allows "2024" or "2024-05" as a date or dateTime).
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH_DAY = r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_PATTERNS = {
    "Date": f"^{_YEAR}{_MONTH_DAY}$",
    "DateTime": f"^{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{_TIME}{_ZONE})?)?)?$",
    "Instant": f"^{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{_TIME}{_ZONE}$",
    "Time": f"^{_TIME}$",
}
# JSON schema keywords kept from pydantic's schema of a primitive.
_KEPT = ("type", "pattern", "minLength", "maxLength", "minimum", "maximum", "items")
_PLAIN: dict[str, Any] = {"type": "object"}
_EXTENSION: dict[str, Any] = {
    "type": "object",
    "required": ["url"],
    "properties": {"url": {"type": "string"}},
}
_RESOURCE: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}},
}
# Types that stay plain objects wherever they occur (see the module docstring).
_OPAQUE: dict[str, dict[str, Any]] = {
    "Extension": _EXTENSION,
    "FHIRPrimitiveExtension": _PLAIN,
    "Narrative": _PLAIN,
    "Resource": _RESOURCE,
}


def ref(name: str) -> dict[str, str]:
    """``{"$ref": ...}`` to the component of FHIR type ``name`` (resource, datatype or backbone element)."""
    return {"$ref": f"{REF_BASE}{PREFIX}{name}"}


def referenced_types(spec: Any) -> set[str]:
    """The FHIR types a document refers to with :func:`ref`."""
    found: set[str] = set()
    start = f"{REF_BASE}{PREFIX}"

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            target = node.get("$ref")
            if isinstance(target, str) and target.startswith(start):
                found.add(target[len(start) :])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    return found


def components(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The schemas of the named types and of every type they reach, keyed by component name."""
    built: dict[str, dict[str, Any]] = {}
    for name in sorted(set(names)):
        _build(name, built, ())
    return {f"{PREFIX}{name}": schema for name, schema in built.items()}


def _build(name: str, built: dict[str, dict[str, Any]], stack: tuple[str, ...]) -> None:
    if name in built:
        return
    if name in _OPAQUE:
        built[name] = dict(_OPAQUE[name])
        return
    model = get_fhir_model_class(name)
    pyd = _pydantic_properties(model)
    properties: dict[str, Any] = {}
    required: list[str] = []
    datatype = _is_datatype(model)
    if _is_resource(model):
        properties["resourceType"] = {"type": "string", "enum": [name]}
        required.append("resourceType")
    for field_name, field in model.model_fields.items():
        alias = field.alias or field_name
        if field_name in ("fhir_comments", "resource_type") or field_name.endswith("__ext"):
            continue  # ``_element`` siblings: patternProperties below
        many, inner = _unwrap(field.annotation)
        complex_name = _complex_name(inner)
        if complex_name is not None:
            if complex_name in _OPAQUE:
                item: dict[str, Any] = dict(_OPAQUE[complex_name])
            elif complex_name == name or complex_name in stack:
                item = dict(_PLAIN)  # a cycle: cut here
            elif datatype and not _is_leaf(complex_name):
                item = dict(_PLAIN)  # a datatype's own datatypes: typed only when they are leaves
            else:
                _build(complex_name, built, (*stack, name))
                item = ref(complex_name)
        else:
            item = _primitive(inner, pyd.get(alias, {}))
        properties[alias] = {"type": "array", "minItems": 1, "items": item} if many else item
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if field.is_required() or extra.get("element_required"):
            required.append(alias)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "patternProperties": {"^_[a-z][A-Za-z0-9]*$": {"type": "object"}},
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    built[name] = schema


@functools.cache
def _pydantic_properties(model: Any) -> dict[str, Any]:
    props: dict[str, Any] = model.model_json_schema(by_alias=True).get("properties", {})
    return props


def _is_datatype(model: Any) -> bool:
    from fhir.resources.R4B.backboneelement import BackboneElement

    return not _is_resource(model) and not issubclass(model, BackboneElement)


@functools.cache
def _is_leaf(name: str) -> bool:
    """A datatype whose elements are all primitives (or extensions): Coding, Period, Quantity ..."""
    if name in _OPAQUE:
        return True
    model = get_fhir_model_class(name)
    for field in model.model_fields.values():
        complex_name = _complex_name(_unwrap(field.annotation)[1])
        if complex_name is not None and complex_name not in _OPAQUE:
            return False
    return True


def _is_resource(model: Any) -> bool:
    from fhir.resources.R4B.resource import Resource

    return isinstance(model, type) and issubclass(model, Resource)


def _unwrap(annotation: Any) -> tuple[bool, Any]:
    """(is a list, the element type) of ``Optional[List[X]]``, ``X | None``, ``Annotated[...]``."""
    many = False
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (list, typing.List):  # noqa: UP006
            many, annotation = True, args[0]
        elif origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
            # str | list[str] (fhir_comments) never reaches here; take the first non-None member
            annotation = args[0]
        else:
            return many, annotation


def _complex_name(annotation: Any) -> str | None:
    if typing.get_origin(annotation) is typing.Annotated:
        return None
    name = getattr(annotation, "__name__", "")
    if isinstance(annotation, type) and name.endswith("Type") and annotation.__module__ == "abc":
        return name[: -len("Type")]
    return None


def _primitive(annotation: Any, pydantic_schema: dict[str, Any]) -> dict[str, Any]:
    kind = ""
    if typing.get_origin(annotation) is typing.Annotated:
        meta = typing.get_args(annotation)[1:]
        kind = type(meta[0]).__name__ if meta else ""
    branch = _non_null(pydantic_schema)
    if branch.get("type") == "array":
        branch = _non_null(branch.get("items", {}))
    if kind in _PATTERNS:
        return {"type": "string", "pattern": _PATTERNS[kind]}
    if kind == "Decimal" or annotation is float:
        return {"type": "number"}
    out = {k: v for k, v in branch.items() if k in _KEPT}
    if not out.get("type"):
        out = {"type": _json_type(annotation)}
    return out


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if isinstance(options, list):
        for option in options:
            if isinstance(option, dict) and option.get("type") != "null":
                return dict(option)
        return {}
    return dict(schema)


def _json_type(annotation: Any) -> str:
    base = annotation
    if typing.get_origin(annotation) is typing.Annotated:
        base = typing.get_args(annotation)[0]
    if base is bool:
        return "boolean"
    if base is int:
        return "integer"
    if base is float:
        return "number"
    return "string"


def bundle_response() -> dict[str, Any]:
    """A Bundle (searchset, history, batch-response, transaction-response)."""
    return ref("Bundle")


FHIR_JSON = "application/fhir+json"
_OUTCOME = {"$ref": f"{REF_BASE}OperationOutcome"}

# The 4xx each FHIR interaction can answer besides those every operation can (400, 401, 413, 414, 415 with
# a body: relearn.shared.openapi), each an OperationOutcome.
_ERRORS: dict[str, dict[str, str]] = {
    "read": {
        "403": "The token's scopes do not allow reading this type",
        "404": "No such resource, or not in the token's patient compartment",
        "406": "_format or Accept asks for something other than application/fhir+json",
        "410": "The resource was deleted",
    },
    "vread": {
        "403": "The token's scopes do not allow reading this type",
        "404": "No such resource or version, or not in the token's patient compartment",
        "406": "_format or Accept asks for something other than application/fhir+json",
        "410": "That version is a deletion",
    },
    "history": {
        "403": "The token's scopes do not allow reading this type",
        "404": "No such resource, or not in the token's patient compartment",
        "406": "_format or Accept asks for something other than application/fhir+json",
    },
    "search": {
        "403": "The token's scopes do not allow reading this type",
        "406": "_format or Accept asks for something other than application/fhir+json",
    },
    "create": {
        "403": "The token may not write this type, or not for this patient",
        "404": "A reference the resource carries or a conditional criterion names something unknown",
        "409": "A concurrent write created the same resource",
        "412": "If-None-Exist matched more than one resource",
        "422": "The resource breaks a rule of this server, or Idempotency-Key was used with another request",
    },
    "update": {
        "403": "The token may not write this type, or not for this patient",
        "404": "A reference the resource carries names something unknown",
        "405": "This type is not updated here",
        "409": "A concurrent write changed the resource (retry with If-Match)",
        "412": "If-Match names another version, or the condition matched more than one resource",
        "422": "The resource breaks a rule of this server",
    },
    "delete": {
        "403": "The token may not write this type, or not for this patient",
        "404": "No such resource, or not in the token's patient compartment",
        "405": "This type is not deleted here",
        "409": "The resource is still referenced or was changed concurrently",
        "412": "The condition matched more than one resource",
    },
    "bundle": {
        "403": "A scope does not allow one of the entries",
        "404": "An entry names a resource that does not exist",
        "409": "A concurrent write conflicts with an entry",
        "412": "An entry's If-Match or condition failed",
        "422": "An entry breaks a rule of this server, or Idempotency-Key was used with another request",
    },
}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {FHIR_JSON: {"schema": schema}}


def _links(pointer_of: dict[str, str], *, version: bool) -> dict[str, Any]:
    """Links from a response carrying a resource to the operations on that resource (stateful testing)."""
    links: dict[str, Any] = {}
    for name, pointer in pointer_of.items():
        params = {"id": "$response.body#/id"}
        if name == "vread":
            if not version:
                continue
            params["vid"] = "$response.body#/meta/versionId"
        links[name] = {"operationRef": pointer, "parameters": params}
    return links


def operation_doc(
    kind: str, rtype: str, *, links: dict[str, str] | None = None, body: bool = False
) -> dict[str, Any]:
    """``openapi_extra`` for one FHIR interaction of ``rtype``: request body, answers, errors, links.

    ``kind``: read, vread, history, search, create, update, delete or bundle. ``links`` maps an operation
    name (read, update, delete, history, vread) to its ``operationRef``.
    """
    resource = ref(rtype)
    written = {"anyOf": [resource, _OUTCOME]}  # Prefer: return=OperationOutcome
    responses: dict[str, Any] = {}
    if kind in ("read", "vread"):
        responses["200"] = {"description": f"The {rtype}", "content": _content(resource)}
        if kind == "read":
            responses["304"] = {"description": "Not modified (If-None-Match names the current version)"}
    elif kind in ("history", "search"):
        responses["200"] = {"description": "A Bundle", "content": _content(ref("Bundle"))}
    elif kind == "create":
        responses["201"] = {"description": f"The {rtype} was created", "content": _content(written)}
        responses["200"] = {
            "description": "If-None-Exist found it: the existing resource "
            "(no body if the token may not read it)",
            "content": _content(written),
        }
    elif kind == "update":
        responses["200"] = {"description": f"The {rtype} was updated", "content": _content(written)}
        responses["201"] = {"description": f"The {rtype} was created", "content": _content(written)}
    elif kind == "delete":
        responses["204"] = {"description": "Deleted (or nothing to delete)"}
        responses["200"] = {
            "description": "Deleted, with Prefer: return=OperationOutcome",
            "content": _content(_OUTCOME),
        }
    elif kind == "bundle":
        responses["200"] = {"description": "The batch-response or transaction-response Bundle"}
        responses["200"]["content"] = _content(ref("Bundle"))
    for status, description in _ERRORS[kind].items():
        responses[status] = {"description": description, "content": _content(_OUTCOME)}
    if links:
        for status in ("200", "201"):
            if status in responses and kind in ("create", "update"):
                responses[status]["links"] = _links(links, version=True)
    doc: dict[str, Any] = {"responses": responses}
    if body:
        schema = ref("Bundle") if kind == "bundle" else resource
        doc["requestBody"] = {"required": True, "content": _content(schema)}
    return doc


def operation_ref(path: str, method: str) -> str:
    """A JSON pointer to the operation at ``path`` (``/fhir/Observation/{id}``) and ``method``."""
    escaped = path.replace("~", "~0").replace("/", "~1")
    return f"#/paths/{escaped}/{method.lower()}"
