"""Extract search index rows from a resource, by parameter kind and by the shape of each value.

A token path may land on a Coding, a CodeableConcept, an Identifier, a ContactPoint, a code or
a boolean; a date path on a date/dateTime/instant, a Period or a Timing; a string path on a
string, a HumanName or an Address. The value's JSON shape says which, so declarations only
give paths.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from relearn.shared.fhir.dates import MAX_UTC, MIN_UTC, date_range
from relearn.shared.fhir.definition import SELF_COMPARTMENT, ResourceDefinition
from relearn.shared.fhir.paths import values_at
from relearn.shared.fhir.search_params import SearchParam
from relearn.shared.fhir.tables import INDEX_TEXT_MAX

_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]+)?$")
_ABSOLUTE_TAIL = re.compile(r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]+)?$")
# The string parts of a HumanName or an Address.
_STRING_PARTS = (
    *("text", "family", "given", "prefix", "suffix"),
    *("line", "city", "district", "state", "postalCode", "country"),
)


def normalize(text: str) -> str:
    """Case- and accent-insensitive form used by string search: ``Zoë`` → ``zoe``."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()[:INDEX_TEXT_MAX]


def clip(text: str) -> str:
    return text[:INDEX_TEXT_MAX]


@dataclass(frozen=True)
class ParsedReference:
    target_type: str | None
    target_id: str | None
    # Only for references that are not on this server.
    url: str | None


def parse_reference(ref: str, base_url: str | None) -> ParsedReference | None:
    """``Patient/1``, ``[base]/Patient/1`` (local) or another server's URL; None for ``#contained``."""
    ref = ref.strip()
    if not ref or ref.startswith("#"):
        return None
    if base_url and ref.startswith(base_url.rstrip("/") + "/"):
        ref = ref[len(base_url.rstrip("/")) + 1 :]
    m = _RELATIVE.match(ref)
    if m:
        return ParsedReference(m.group(1), m.group(2), None)
    tail = _ABSOLUTE_TAIL.search(ref)
    if tail:
        return ParsedReference(tail.group(1), tail.group(2), ref)
    return ParsedReference(None, None, ref)


@dataclass
class IndexRows:
    """Rows for the ``fhir_search_*`` tables of one resource (without type and id)."""

    token: list[dict[str, Any]] = field(default_factory=list)
    reference: list[dict[str, Any]] = field(default_factory=list)
    date: list[dict[str, Any]] = field(default_factory=list)
    string: list[dict[str, Any]] = field(default_factory=list)
    number: list[dict[str, Any]] = field(default_factory=list)


class Indexer:
    """Turns resources into index rows; ``base_url`` makes our own absolute references local."""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url

    def rows(self, rdef: ResourceDefinition, resource: dict[str, Any]) -> IndexRows:
        out = IndexRows()
        for param in rdef.search_params:
            values = [v for path in param.paths for v in values_at(resource, path)]
            target: list[dict[str, Any]] = getattr(out, "number" if param.kind == "quantity" else param.kind)
            seen: set[tuple[Any, ...]] = set()
            for row in self._extract(param, values):
                key = tuple(sorted(row.items()))
                if key not in seen:
                    seen.add(key)
                    target.append({"param": param.name, **row})
        return out

    def patients(self, rdef: ResourceDefinition, resource: dict[str, Any]) -> set[str]:
        """The patients whose compartment holds ``resource`` (by its compartment parameter)."""
        cp = rdef.compartment_param
        if cp is None:
            return set()
        if cp == SELF_COMPARTMENT:
            rid = resource.get("id")
            return {rid} if isinstance(rid, str) else set()
        param = rdef.params[cp]
        refs = [v for path in param.paths for v in values_at(resource, path)]
        return {
            r["target_id"]
            for r in self._references(param, refs)
            if r["target_type"] == "Patient" and r["url"] is None
        }

    def _extract(self, param: SearchParam, values: list[Any]) -> list[dict[str, Any]]:
        if param.kind == "token":
            return [{"system": s, "code": c} for v in values for s, c in _tokens(v)]
        if param.kind == "reference":
            return self._references(param, values)
        if param.kind == "date":
            return [{"low": lo, "high": hi} for v in values for lo, hi in _dates(v)]
        if param.kind == "string":
            return [{"norm": normalize(s), "value": s} for v in values for s in _strings(v)]
        if param.kind == "number":
            return [{"value": n, "system": None, "code": None} for v in values for n in _numbers(v)]
        return [q for v in values for q in _quantities(v)]

    def _references(self, param: SearchParam, values: list[Any]) -> list[dict[str, Any]]:
        rows = []
        for v in values:
            ref = v.get("reference") if isinstance(v, dict) else v if isinstance(v, str) else None
            parsed = parse_reference(ref, self.base_url) if isinstance(ref, str) else None
            if parsed is None:
                continue
            if param.targets and parsed.target_type not in param.targets:
                continue
            rows.append({"target_type": parsed.target_type, "target_id": parsed.target_id, "url": parsed.url})
        return rows


def _tokens(v: Any) -> list[tuple[str | None, str | None]]:
    if isinstance(v, bool):
        return [(None, "true" if v else "false")]
    if isinstance(v, str):
        return [(None, clip(v))]
    if not isinstance(v, dict):
        return []
    if "coding" in v:  # CodeableConcept
        return [t for c in v.get("coding") or [] for t in _tokens(c)]
    if "code" in v and isinstance(v["code"], str):  # Coding (or a Quantity's unit code)
        return [(_opt(v.get("system")), clip(v["code"]))]
    if "value" in v and isinstance(v["value"], str):  # Identifier, ContactPoint
        return [(_opt(v.get("system")), clip(v["value"]))]
    return []


def _opt(v: Any) -> str | None:
    return clip(v) if isinstance(v, str) and v else None


def _dates(v: Any) -> list[tuple[datetime, datetime]]:
    if isinstance(v, str):
        r = date_range(v)
        return [r] if r else []
    if not isinstance(v, dict):
        return []
    if "start" in v or "end" in v:  # Period: an open end is unbounded
        start = date_range(v["start"]) if isinstance(v.get("start"), str) else None
        end = date_range(v["end"]) if isinstance(v.get("end"), str) else None
        return [(start[0] if start else MIN_UTC, end[1] if end else MAX_UTC)]
    out = [r for e in v.get("event") or [] for r in _dates(e)]  # Timing
    bounds = (v.get("repeat") or {}).get("boundsPeriod")
    if isinstance(bounds, dict):
        out.extend(_dates(bounds))
    return out


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if not isinstance(v, dict):
        return []
    out: list[str] = []
    for key in _STRING_PARTS:
        part = v.get(key)
        parts = part if isinstance(part, list) else [part]
        out.extend(p for p in parts if isinstance(p, str))
    return out


def _numbers(v: Any) -> list[float]:
    if isinstance(v, bool):
        return []
    if isinstance(v, int | Decimal | float):
        return [float(v)]
    if isinstance(v, dict) and isinstance(v.get("value"), int | Decimal | float):
        return [float(v["value"])]
    return []


def _quantities(v: Any) -> list[dict[str, Any]]:
    if not isinstance(v, dict) or not _numbers(v):
        return []
    code = v.get("code") if isinstance(v.get("code"), str) else v.get("unit")
    return [{"value": float(v["value"]), "system": _opt(v.get("system")), "code": _opt(code)}]
