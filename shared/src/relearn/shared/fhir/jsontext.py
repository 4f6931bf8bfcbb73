"""FHIR JSON text in and out without losing decimal precision.

Decimals are parsed as :class:`decimal.Decimal` and written back with exactly the digits
the client sent (``66.899999999999991`` stays as is, ``1.0`` keeps its trailing zero).
"""

from __future__ import annotations

import decimal
import json
from typing import Any

import simplejson  # type: ignore[import-untyped]  # no stubs; used through three calls below

from relearn.shared.fhir.errors import InvalidResource


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes) -> Any:
    """Parse JSON with every decimal number as ``Decimal``; NaN/Infinity are rejected."""
    return json.loads(text, parse_float=decimal.Decimal, parse_constant=_reject_constant)


def dumps(value: Any) -> str:
    """Compact JSON; ``Decimal`` is written with its exact digits, ``raw()`` fragments verbatim."""
    out: str = simplejson.dumps(value, use_decimal=True, ensure_ascii=False, separators=(",", ":"))
    return out


def raw(text: str) -> Any:
    """Embed already-encoded JSON text (a stored resource) in a structure passed to :func:`dumps`."""
    return simplejson.RawJSON(text)


def parse_resource(body: str | bytes, expected_type: str) -> dict[str, Any]:
    """Parse a request body as a resource of ``expected_type``; 400 OperationOutcome otherwise."""
    try:
        value = loads(body)
    except UnicodeDecodeError as exc:
        raise InvalidResource(f"The body is not UTF-8 text: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidResource(
            f"Malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", expression=expected_type
        ) from exc
    except ValueError as exc:
        raise InvalidResource(f"Malformed JSON: {exc}", expression=expected_type) from exc
    if not isinstance(value, dict):
        raise InvalidResource("The body must be a JSON object (a FHIR resource)", expression=expected_type)
    rtype = value.get("resourceType")
    if rtype != expected_type:
        raise InvalidResource(
            f"resourceType is {rtype!r} but this endpoint takes {expected_type}",
            expression=f"{expected_type}.resourceType",
        )
    return value
