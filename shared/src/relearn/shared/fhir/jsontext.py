"""FHIR JSON text in and out without losing decimal precision.

Decimals are parsed as :class:`decimal.Decimal` and written back with exactly the digits
the client sent (``66.899999999999991`` stays as is, ``1.0`` keeps its trailing zero).
"""

from __future__ import annotations

import decimal
import json
from typing import Any

import simplejson  # type: ignore[import-untyped]  # no stubs; used through three calls below

from relearn.shared.fhir.errors import InvalidResource, UnprocessableEntity

# The largest finite IEEE double: every number must fit (search, events and consumers use floats).
MAX_DOUBLE = decimal.Decimal("1.7976931348623157e308")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int | decimal.Decimal:
    # Long integer literals stay exact as Decimal (int() refuses thousands of digits; range is checked later).
    return int(text) if len(text) <= 20 else decimal.Decimal(text)


def loads(text: str | bytes) -> Any:
    """Parse JSON with every decimal number as ``Decimal``; NaN/Infinity are rejected."""
    return json.loads(
        text, parse_float=decimal.Decimal, parse_int=_parse_int, parse_constant=_reject_constant
    )


def out_of_range(value: Any, path: str) -> str | None:
    """The path of the first number in ``value`` that is not a finite double (FHIRPath-like), or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, f"{where}.{k}") for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, decimal.Decimal | int) and not isinstance(item, bool):
            number = item if isinstance(item, decimal.Decimal) else decimal.Decimal(item)
            if not number.is_finite() or abs(number) > MAX_DOUBLE:
                return where
    return None


def check_numbers(value: Any, path: str) -> None:
    """422 naming the first number that is not a finite double (``1e400``, a 400-digit integer)."""
    where = out_of_range(value, path)
    if where is not None:
        raise UnprocessableEntity(
            f"{where}: the number is out of range (numbers must be finite, within ±1.8e308)",
            expression=where,
            issue_code="value",
        )


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
    except RecursionError:
        raise InvalidResource("The JSON is nested too deep", expression=expected_type) from None
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
    check_numbers(value, expected_type)
    return value
