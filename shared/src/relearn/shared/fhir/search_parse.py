"""Parse FHIR search parameters into typed criteria, sort keys, includes and paging.

Comma-separated values are ORed, repeated parameters are ANDed. Unknown parameters,
modifiers and include targets raise 400 under ``handling="strict"`` and are dropped (and
reported in :attr:`SearchQuery.ignored`) under ``"lenient"``; malformed values are always 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from relearn.shared.fhir.dates import date_range
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.errors import InvalidRequest
from relearn.shared.fhir.indexing import clip, parse_reference
from relearn.shared.fhir.limits import MAX_INT32, FhirLimits, bounded_int
from relearn.shared.fhir.search_params import CONTROL_PARAMS, MODIFIERS
from relearn.shared.fhir.validation import ID_PATTERN

Handling = Literal["strict", "lenient"]
Prefix = Literal["eq", "ne", "lt", "le", "gt", "ge", "sa", "eb", "ap"]
PREFIXES: tuple[Prefix, ...] = ("eq", "ne", "lt", "le", "gt", "ge", "sa", "eb", "ap")

DEFAULT_COUNT = 20
MAX_COUNT = 1000
OFFSET_PARAM = "_getpagesoffset"
SUMMARY_MODES = ("count", "true", "text", "data", "false")

_MAX_DOUBLE = Decimal("1.7976931348623157e308")
_PREFIXED = re.compile(r"^(eq|ne|lt|le|gt|ge|sa|eb|ap)(?=[-+0-9.])")


@dataclass(frozen=True)
class TokenValue:
    system: str | None
    code: str | None
    # False for "|code" (explicitly no system) and "system|code"; True for plain "code".
    any_system: bool


@dataclass(frozen=True)
class ReferenceValue:
    target_type: str | None
    target_id: str | None
    url: str | None


@dataclass(frozen=True)
class DateValue:
    prefix: Prefix
    low: datetime
    high: datetime


@dataclass(frozen=True)
class NumberValue:
    prefix: Prefix
    value: float
    # The implicit range of the value's precision: 100 → [99.5, 100.5).
    low: float
    high: float
    system: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class Criterion:
    """One parameter occurrence: its values are ORed; criteria are ANDed."""

    name: str
    kind: str
    values: tuple[Any, ...]
    modifier: str | None = None
    # Set for ":missing=true|false".
    missing: bool | None = None


@dataclass(frozen=True)
class SortKey:
    name: str
    kind: str
    descending: bool


@dataclass(frozen=True)
class Include:
    """``_include=Source:param[:Target]`` or, when ``reverse``, ``_revinclude``."""

    source_type: str
    param: str
    target_type: str | None
    reverse: bool = False


@dataclass
class SearchQuery:
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    includes: list[Include] = field(default_factory=list)
    summary: str | None = None
    # ``_total`` as asked: "" (not asked), none, estimate or accurate. What each gives: FhirStore.search.
    total: str = ""
    elements: list[str] | None = None
    # Parameters dropped under lenient handling, as "name" or "name=value" text.
    ignored: list[str] = field(default_factory=list)
    # The parameters that were applied, in request order, for self/next links (no paging ones).
    link_params: list[tuple[str, str]] = field(default_factory=list)

    @property
    def count_only(self) -> bool:
        return self.summary == "count" or self.count == 0


def split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` unless escaped with a backslash; unescape ``\\,`` ``\\|`` ``\\$`` ``\\\\``."""
    parts, buf, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            buf.append(nxt if nxt in ",|$\\" else ch + nxt)
            i += 2
            continue
        if ch == sep:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def _split_keep_escapes(text: str, sep: str) -> list[str]:
    # Split OR values without unescaping, so that "|" escapes survive for the token parser.
    parts, start, i = [], 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


class _Parser:
    def __init__(
        self,
        rdef: ResourceDefinition,
        handling: Handling,
        registry: Mapping[str, ResourceDefinition],
        base_url: str | None,
        limits: FhirLimits,
    ) -> None:
        self.limits = limits
        self.rdef = rdef
        self.handling = handling
        self.registry = registry
        self.base_url = base_url
        self.query = SearchQuery()

    def unknown(self, name: str, value: str, why: str) -> None:
        if self.handling == "strict":
            raise InvalidRequest(f"{why} (Prefer: handling=strict)", expression=name)
        self.query.ignored.append(f"{name}={value}")

    def _check_size(self, params: Sequence[tuple[str, str]]) -> None:
        """400 before any parsing for too many parameters, or too many values of one (they become SQL)."""
        limits = self.limits
        if len(params) > limits.max_search_params:
            raise InvalidRequest(
                f"{len(params)} search parameters; at most {limits.max_search_params} (max_search_params)",
                expression="query",
                issue_code="too-costly",
            )
        values: dict[str, int] = {}
        for raw_name, value in params:
            name = raw_name.partition(":")[0]
            values[name] = values.get(name, 0) + value.count(",") + 1
            if values[name] > limits.max_search_values:
                raise InvalidRequest(
                    f"More than {limits.max_search_values} values of '{name}' (max_search_values)",
                    expression=name,
                    issue_code="too-costly",
                )

    def parse(self, params: Sequence[tuple[str, str]]) -> SearchQuery:
        self._check_size(params)
        for raw_name, value in params:
            name, _, modifier = raw_name.partition(":")
            if name in CONTROL_PARAMS:
                if modifier:  # _include:iterate and the like
                    self.unknown(raw_name, value, f"Unsupported modifier on {name}")
                    continue
                if self._control(name, value) and name not in ("_count", OFFSET_PARAM, "_format", "_pretty"):
                    self.query.link_params.append((raw_name, value))
                continue
            if value == "":  # an empty parameter is ignored (FHIR search rules)
                continue
            criterion = self._criterion(name, modifier or None, value)
            if criterion is not None:
                self.query.criteria.append(criterion)
                self.query.link_params.append((raw_name, value))
        return self.query

    # -- control parameters -------------------------------------------------------------------
    def _control(self, name: str, value: str) -> bool:
        q = self.query
        if name == "_count":
            q.count = min(bounded_int(name, value, MAX_INT32), MAX_COUNT)
        elif name == OFFSET_PARAM:
            q.offset = bounded_int(name, value, self.limits.max_page_offset, limit_name="max_page_offset")
        elif name == "_sort":
            return self._sort(value)
        elif name in ("_include", "_revinclude"):
            return self._include(name, value)
        elif name == "_summary":
            if value not in SUMMARY_MODES:
                raise InvalidRequest(f"_summary must be one of {', '.join(SUMMARY_MODES)}", expression=name)
            q.summary = None if value == "false" else value
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise InvalidRequest("_total must be none, estimate or accurate", expression=name)
            q.total = value
        elif name == "_elements":
            q.elements = [e.strip() for e in value.split(",") if e.strip()]
        return True

    def _sort(self, value: str) -> bool:
        keys = []
        for item in (v.strip() for v in value.split(",")):
            desc = item.startswith("-")
            pname = item[1:] if desc else item
            if pname == "_id":
                kind = "id"
            elif pname == "_lastUpdated":
                kind = "lastUpdated"
            elif pname in self.rdef.params:
                kind = self.rdef.params[pname].kind
            else:
                self.unknown("_sort", value, f"Unknown sort parameter '{pname}' for {self.rdef.type}")
                return False
            keys.append(SortKey(pname, kind, desc))
        self.query.sort.extend(keys)
        return True

    def _include(self, name: str, value: str) -> bool:
        parts = value.split(":")
        reverse = name == "_revinclude"
        if len(parts) not in (2, 3):
            raise InvalidRequest(f"{name} must be SourceType:param[:TargetType]", expression=name)
        source, pname = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        source_def = (
            self.registry.get(source) if reverse else (self.rdef if source == self.rdef.type else None)
        )
        ok = source_def is not None and pname in source_def.includes
        if ok and source_def is not None:
            targets = source_def.params[pname].targets
            if reverse:
                ok = (not targets or self.rdef.type in targets) and target in (None, self.rdef.type)
            elif target is not None:  # a type another service holds is reported as elsewhere
                ok = (not targets or target in targets) and bool(re.match(r"^[A-Z][A-Za-z]+$", target))
        if not ok:
            self.unknown(name, value, f"{name}={value} is not supported for {self.rdef.type}")
            return False
        self.query.includes.append(Include(source, pname, self.rdef.type if reverse else target, reverse))
        return True

    # -- resource parameters ------------------------------------------------------------------
    def _criterion(self, name: str, modifier: str | None, value: str) -> Criterion | None:
        if name == "_id":
            kind = "id"
        elif name == "_lastUpdated":
            kind = "lastUpdated"
        elif name in self.rdef.params:
            kind = self.rdef.params[name].kind
        else:
            self.unknown(name, value, f"Unknown search parameter '{name}' for {self.rdef.type}")
            return None
        if modifier == "missing":
            if value not in ("true", "false"):
                raise InvalidRequest(f"{name}:missing must be true or false", expression=name)
            if kind in ("id", "lastUpdated"):  # never missing
                self.unknown(f"{name}:missing", value, f"{name}:missing is not supported")
                return None
            return Criterion(name, kind, (), "missing", value == "true")
        if modifier is not None and not self._modifier_ok(name, kind, modifier):
            self.unknown(f"{name}:{modifier}", value, f"Unsupported modifier ':{modifier}' on '{name}'")
            return None
        raw_values = _split_keep_escapes(value, ",")
        values = tuple(self._value(name, kind, modifier, v) for v in raw_values)
        return Criterion(name, kind, values, modifier)

    def _modifier_ok(self, name: str, kind: str, modifier: str) -> bool:
        if kind == "reference":
            targets = self.rdef.params[name].targets
            return modifier[:1].isupper() and (not targets or modifier in targets)
        return modifier in MODIFIERS.get(kind, frozenset())

    def _value(self, name: str, kind: str, modifier: str | None, text: str) -> Any:
        if kind == "id":
            ident = split_unescaped(text, ",")[0]
            if not ID_PATTERN.match(ident):
                raise InvalidRequest(f"'{ident}' is not a valid resource id", expression=name)
            return ident
        if kind == "token":
            return _token(text)
        if kind == "reference":
            return self._reference(name, modifier, split_unescaped(text, ",")[0])
        if kind in ("date", "lastUpdated"):
            return _date(name, text)
        if kind == "string":
            return split_unescaped(text, ",")[0]
        return _number(name, text, quantity=kind == "quantity")

    def _reference(self, name: str, modifier: str | None, text: str) -> ReferenceValue:
        targets = self.rdef.params[name].targets
        if ID_PATTERN.match(text):  # a bare id: the type comes from the modifier or the only target
            rtype = modifier or (targets[0] if len(targets) == 1 else None)
            return ReferenceValue(rtype, text, None)
        parsed = parse_reference(text, self.base_url)
        if parsed is None:
            raise InvalidRequest(f"'{text}' is not a reference", expression=name)
        if modifier and parsed.target_type not in (None, modifier):
            raise InvalidRequest(f"'{text}' is not a {modifier} reference", expression=name)
        return ReferenceValue(parsed.target_type, parsed.target_id, parsed.url)


def _token(text: str) -> TokenValue:
    parts = split_unescaped(text, "|")
    if len(parts) == 1:
        return TokenValue(None, clip(parts[0]), True)
    system, code = parts[0], "|".join(parts[1:])
    return TokenValue(clip(system) or None, clip(code) or None, False)


def _split_prefix(text: str) -> tuple[Prefix, str]:
    m = _PREFIXED.match(text)
    if m:
        return m.group(1), text[2:]  # type: ignore[return-value]
    return "eq", text


def _date(name: str, text: str) -> DateValue:
    prefix, rest = _split_prefix(text)
    rng = date_range(rest)
    if rng is None:
        raise InvalidRequest(f"'{text}' is not a valid date for '{name}'", expression=name)
    return DateValue(prefix, rng[0], rng[1])


def _number(name: str, text: str, *, quantity: bool) -> NumberValue:
    parts = split_unescaped(text, "|") if quantity else [text]
    if len(parts) not in (1, 3):
        raise InvalidRequest(f"'{text}' must be number|system|code", expression=name)
    prefix, num = _split_prefix(parts[0])
    try:
        dec = Decimal(num)
    except InvalidOperation:
        raise InvalidRequest(f"'{text}' is not a valid number for '{name}'", expression=name) from None
    if not dec.is_finite() or abs(dec) > _MAX_DOUBLE:
        raise InvalidRequest(f"'{text}' is not a finite number", expression=name)
    half = Decimal(5).scaleb(int(dec.as_tuple().exponent) - 1)
    system = parts[1] or None if len(parts) == 3 else None
    code = parts[2] or None if len(parts) == 3 else None
    return NumberValue(prefix, float(dec), float(dec - half), float(dec + half), system, code)


def parse_search(
    rdef: ResourceDefinition,
    params: Sequence[tuple[str, str]],
    *,
    handling: Handling = "lenient",
    registry: Mapping[str, ResourceDefinition] | None = None,
    base_url: str | None = None,
    limits: FhirLimits | None = None,
) -> SearchQuery:
    """Parse ``(name, value)`` pairs (query string order) for a search on ``rdef.type``."""
    parser = _Parser(rdef, handling, registry or {rdef.type: rdef}, base_url, limits or FhirLimits())
    return parser.parse(params)
