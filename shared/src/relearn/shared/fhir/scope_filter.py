"""SMART v2 scope filters (``patient/Observation.rs?category=vital-signs``) applied by the store.

A filter restriction is a list of alternatives, each a conjunction of search criteria; a resource is
inside it when it matches every criterion of at least one alternative. The same compiled form
gives the SQL condition a search adds (so a filtered search only ever returns matching resources)
and the test a read, a version, an included resource or a write is put to, on its content.

Filters use token search parameters (``category``, ``code``, ``status`` ...; ``system|code``, ``|code``,
``code``, commas OR). An alternative that names anything else (an unknown parameter, another kind, a
modifier) cannot be enforced and admits nothing: a scope whose filter is not understood grants no
more than no scope at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, true

from relearn.shared.fhir import search_sql
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.errors import FhirError
from relearn.shared.fhir.indexing import Indexer
from relearn.shared.fhir.search_parse import Criterion, TokenValue, parse_search

# The restriction as scopes state it: alternatives of (param, value) conjunctions.
FilterSpec = Sequence[Sequence[tuple[str, str]]]


@dataclass(frozen=True)
class ScopeFilter:
    """A filter restriction compiled for one resource type (alternatives of token criteria)."""

    rdef: ResourceDefinition
    alternatives: tuple[tuple[Criterion, ...], ...]
    # The filters as the scopes spell them (for messages).
    spec: tuple[str, ...] = ()

    @classmethod
    def compile(
        cls, rdef: ResourceDefinition, spec: FilterSpec, registry: Mapping[str, ResourceDefinition]
    ) -> ScopeFilter:
        alternatives = []
        for alternative in spec:
            try:
                query = parse_search(rdef, list(alternative), handling="strict", registry=registry)
            except FhirError:
                continue  # not understood: admits nothing
            criteria = tuple(query.criteria)
            if len(criteria) == len(alternative) and all(_enforceable(c) for c in criteria):
                alternatives.append(criteria)
        spelled = tuple("&".join(f"{k}={v}" for k, v in alt) for alt in spec)
        return cls(rdef, tuple(alternatives), spelled)

    def describe(self) -> str:
        """``category=vital-signs`` (alternatives joined by `` or ``)."""
        return " or ".join(f"'{s}'" for s in self.spec) or "no filter"

    def condition(self) -> ColumnElement[bool]:
        """The SQL condition (over ``fhir_resource``) of the resources this filter admits."""
        if not self.alternatives:
            return false()
        return or_(
            *(and_(true(), *(search_sql.criterion(self.rdef, c) for c in alt)) for alt in self.alternatives)
        )

    def admits(self, indexer: Indexer, resource: dict[str, Any]) -> bool:
        """Whether ``resource`` (its content) is inside the filter."""
        if not self.alternatives:
            return False
        tokens: dict[str, list[tuple[str | None, str | None]]] = {}
        for row in indexer.rows(self.rdef, resource).token:
            tokens.setdefault(row["param"], []).append((row["system"], row["code"]))
        return any(all(_token_matches(c, tokens.get(c.name, [])) for c in alt) for alt in self.alternatives)


def _enforceable(c: Criterion) -> bool:
    return c.kind == "token" and c.modifier is None and c.missing is None


def _token_matches(c: Criterion, rows: list[tuple[str | None, str | None]]) -> bool:
    for v in c.values:
        assert isinstance(v, TokenValue)
        for system, code in rows:
            if v.code is not None and code != v.code:
                continue
            if not v.any_system and system != v.system:
                continue
            return True
    return False
