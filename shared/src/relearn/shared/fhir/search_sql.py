"""Turn a parsed search into SQL over ``fhir_resource`` and the ``fhir_search_*`` index tables.

Each criterion is ``fhir_resource.id IN (SELECT resource_id FROM <index> WHERE resource_type
AND param AND <values ORed>)``: an index range scan on (resource_type, param, value...).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, false, func, literal, not_, or_, select, true
from sqlmodel import Session

from relearn.shared.fhir.definition import SELF_COMPARTMENT, ResourceDefinition
from relearn.shared.fhir.indexing import normalize
from relearn.shared.fhir.search_parse import (
    Criterion,
    DateValue,
    NumberValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    TokenValue,
    split_unescaped,
)
from relearn.shared.fhir.tables import DATE, NUMBER, REFERENCE, STRING, TOKEN
from relearn.shared.fhir.tables import RESOURCE as R

_TABLE_OF_KIND: dict[str, Table] = {
    "token": TOKEN,
    "reference": REFERENCE,
    "date": DATE,
    "string": STRING,
    "number": NUMBER,
    "quantity": NUMBER,
}


def _in_index(table: Table, rtype: str, param: str, cond: ColumnElement[bool]) -> ColumnElement[bool]:
    sub = select(table.c.resource_id).where(table.c.resource_type == rtype, table.c.param == param, cond)
    return R.c.id.in_(sub)


def compartment_condition(rdef: ResourceDefinition, patient: str) -> ColumnElement[bool]:
    """Resources of ``rdef.type`` in ``patient``'s compartment (nothing when the type has none)."""
    cp = rdef.compartment_param
    if cp is None:
        return false()
    if cp == SELF_COMPARTMENT:
        return R.c.id == patient
    return _in_index(
        REFERENCE,
        rdef.type,
        cp,
        and_(
            REFERENCE.c.target_type == "Patient", REFERENCE.c.target_id == patient, REFERENCE.c.url.is_(None)
        ),
    )


def match_statement(
    rdef: ResourceDefinition,
    query: SearchQuery,
    patient: str | None,
    extra: ColumnElement[bool] | None = None,
) -> Select[Any]:
    """SELECT of the current, non-deleted resources matching every criterion (not yet ordered); ``extra``
    is one more condition (a scope filter's)."""
    conds: list[ColumnElement[bool]] = [R.c.resource_type == rdef.type, R.c.deleted.is_(False)]
    conds.extend(criterion(rdef, c) for c in query.criteria)
    if patient is not None:
        conds.append(compartment_condition(rdef, patient))
    if extra is not None:
        conds.append(extra)
    return select(R.c.id, R.c.version_id, R.c.last_updated, R.c.text).where(*conds)


def count_statement(matches: Select[Any]) -> Select[Any]:
    return select(func.count()).select_from(matches.with_only_columns(R.c.id).subquery())


def planner_rows(session: Session, matches: Select[Any]) -> int:
    """PostgreSQL's estimate of how many rows ``matches`` returns (EXPLAIN, nothing is scanned)."""
    conn = session.connection()
    compiled = matches.with_only_columns(R.c.id).compile(
        dialect=conn.dialect, compile_kwargs={"render_postcompile": True}
    )
    plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar_one()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def ordered(rdef: ResourceDefinition, matches: Select[Any], sort: list[SortKey]) -> Select[Any]:
    """Apply ``_sort`` (default: oldest first by lastUpdated), with id as the final tie-breaker."""
    keys = sort or [SortKey("_lastUpdated", "lastUpdated", False)]
    order = [_sort_expression(rdef, k) for k in keys]
    return matches.order_by(*order, R.c.id)


def _sort_expression(rdef: ResourceDefinition, key: SortKey) -> Any:
    if key.kind == "id":
        col: Any = R.c.id
    elif key.kind == "lastUpdated":
        col = R.c.last_updated
    else:
        table = _TABLE_OF_KIND[key.kind]
        column = {
            "date": table.c.low,  # by the start of each date/period, both ways
            "string": table.c.get("norm"),
            "token": table.c.get("code"),
            "reference": table.c.get("target_id"),
        }.get(key.kind, table.c.get("value"))
        agg = func.max(column) if key.descending else func.min(column)
        col = (
            select(agg)
            .where(
                table.c.resource_type == rdef.type, table.c.resource_id == R.c.id, table.c.param == key.name
            )
            .scalar_subquery()
        )
    return col.desc().nulls_last() if key.descending else col.asc().nulls_last()


def criterion(rdef: ResourceDefinition, c: Criterion) -> ColumnElement[bool]:
    """The condition (over ``fhir_resource``) of one parsed search criterion."""
    if c.kind == "id":
        return R.c.id.in_(list(c.values))
    if c.kind == "lastUpdated":
        return or_(*(_date(R.c.last_updated, R.c.last_updated, v) for v in c.values))
    table = _TABLE_OF_KIND[c.kind]
    if c.missing is not None:
        present = _in_index(table, rdef.type, c.name, true())
        return not_(present) if c.missing else present
    cond = or_(*(_value_condition(c, table, v) for v in c.values))
    if c.modifier == "not":
        return not_(_in_index(table, rdef.type, c.name, cond))
    return _in_index(table, rdef.type, c.name, cond)


def _value_condition(c: Criterion, table: Table, v: Any) -> ColumnElement[bool]:
    if isinstance(v, TokenValue):
        return _token(v)
    if isinstance(v, ReferenceValue):
        return _reference(v)
    if isinstance(v, DateValue):
        return _date(DATE.c.low, DATE.c.high, v)
    if isinstance(v, NumberValue):
        return _number(v)
    return _string(c.modifier, str(v))


def _token(v: TokenValue) -> ColumnElement[bool]:
    t = TOKEN.c
    conds: list[ColumnElement[bool]] = []
    if v.code is not None:
        conds.append(t.code == v.code)
    if not v.any_system:
        conds.append(t.system == v.system if v.system is not None else t.system.is_(None))
    return and_(*conds) if conds else true()


def _reference(v: ReferenceValue) -> ColumnElement[bool]:
    t = REFERENCE.c
    if v.url is not None and v.target_id is None:
        return t.url == v.url
    conds = [t.target_id == v.target_id]
    if v.target_type is not None:
        conds.append(t.target_type == v.target_type)
    conds.append(t.url == v.url if v.url is not None else t.url.is_(None))
    return and_(*conds)


def _date(low: ColumnElement[Any], high: ColumnElement[Any], v: DateValue) -> ColumnElement[bool]:
    sl, sh = v.low, v.high
    within = and_(low >= sl, high <= sh)
    # Each form is also given a redundant bound on one column so that a range index applies.
    if v.prefix == "eq":
        return and_(within, low <= sh)
    if v.prefix == "ne":
        return not_(within)
    if v.prefix == "gt":
        return high > sh
    if v.prefix == "lt":
        return low < sl
    if v.prefix == "ge":
        return and_(high >= sl, or_(high > sh, within))
    if v.prefix == "le":
        return and_(low <= sh, or_(low < sl, within))
    if v.prefix == "sa":
        return low > sh
    if v.prefix == "eb":
        return high < sl
    # ap: overlaps the value widened by 10 % of its distance from now (at least a day).
    now = datetime.now(UTC)
    slack = max(abs(now - sl) / 10, timedelta(days=1))
    return and_(low <= sh + slack, high >= sl - slack)


def _number(v: NumberValue) -> ColumnElement[bool]:
    t = NUMBER.c
    value = t.value
    if v.prefix == "eq":
        cond = and_(value >= v.low, value < v.high)
    elif v.prefix == "ne":
        cond = or_(value < v.low, value >= v.high)
    elif v.prefix in ("gt", "sa"):
        cond = value > v.value
    elif v.prefix in ("lt", "eb"):
        cond = value < v.value
    elif v.prefix == "ge":
        cond = value >= v.value
    elif v.prefix == "le":
        cond = value <= v.value
    else:  # ap: within 10 %
        margin = abs(v.value) / 10
        cond = and_(value >= v.value - margin, value <= v.value + margin)
    extra = []
    if v.system is not None:
        extra.append(t.system == v.system)
    if v.code is not None:
        extra.append(t.code == v.code)
    return and_(cond, *extra)


def _string(modifier: str | None, text: str) -> ColumnElement[bool]:
    t = STRING.c
    if modifier == "exact":
        return t.value == split_unescaped(text, ",")[0]
    needle = _like_escape(normalize(text))
    pattern = f"%{needle}%" if modifier == "contains" else f"{needle}%"
    return t.norm.like(literal(pattern), escape="\\")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
