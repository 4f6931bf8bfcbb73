"""Bounds on what one FHIR request may ask of a store (HTTP-level ones: :mod:`relearn.shared.guard`).

Each is configurable per service (``<PREFIX>_MAX_...``, see :class:`~relearn.shared.settings.ServiceSettings`)
and documented in ``docs/api.md``; going over one is a 4xx OperationOutcome naming it, and nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relearn.shared.fhir.errors import InvalidRequest

# Version ids, paging offsets, counts: stored as 32-bit integers at most (PostgreSQL INTEGER).
MAX_INT32 = 2**31 - 1


@dataclass(frozen=True)
class FhirLimits:
    max_bundle_entries: int = 1000
    max_search_params: int = 50
    max_search_values: int = 100
    max_page_offset: int = 100_000

    @classmethod
    def from_settings(cls, settings: Any) -> FhirLimits:
        return cls(
            max_bundle_entries=settings.max_bundle_entries,
            max_search_params=settings.max_search_params,
            max_search_values=settings.max_search_values,
            max_page_offset=settings.max_page_offset,
        )


def bounded_int(name: str, value: str, maximum: int, *, limit_name: str = "") -> int:
    """A non-negative decimal integer up to ``maximum``; 400 naming ``name`` (and the limit) otherwise."""
    if not value.isascii() or not value.isdigit():
        raise InvalidRequest(f"{name} must be a non-negative integer", expression=name)
    # Compare by length first: int() of thousands of digits is refused by Python itself.
    if len(value.lstrip("0")) > len(str(maximum)) or int(value) > maximum:
        which = f" ({limit_name})" if limit_name else ""
        raise InvalidRequest(f"{name}={value[:40]} is larger than {maximum}{which}", expression=name)
    return int(value)
