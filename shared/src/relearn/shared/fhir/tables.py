"""The FHIR store's tables (one set per service database).

``fhir_resource`` holds the current version of each resource (PK type+id) as the JSON text
that was stored; ``fhir_resource_version`` keeps every version, deletes included. The
``fhir_search_*`` tables hold what the search parameters extract, replaced on every write,
with composite indexes so that every search criterion is an index lookup. Each also has a
(resource_type, resource_id, param, value) index: it serves the replacement on write and
the per-resource min/max lookups of ``_sort``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    CursorResult,
    DateTime,
    Executable,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlmodel import Field, Session, SQLModel

_TYPE = 64  # resource type names
_ID = 64  # resource ids ([A-Za-z0-9\-.]{1,64})
_PARAM = 64
# Index text is cut to this length: enough for a prefix search, small enough for a btree.
INDEX_TEXT_MAX = 256


def _pk() -> Column[int]:
    # BIGINT on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
    return Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)


class FhirResource(SQLModel, table=True):
    __tablename__ = "fhir_resource"
    __table_args__ = (Index("ix_fhir_resource_type_updated", "resource_type", "last_updated"),)

    resource_type: str = Field(sa_column=Column(String(_TYPE), primary_key=True))
    id: str = Field(sa_column=Column(String(_ID), primary_key=True))
    version_id: int = Field(sa_column=Column(Integer, nullable=False))
    last_updated: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    deleted: bool = Field(sa_column=Column(Boolean, nullable=False, default=False))
    # The resource as stored (id and meta set by the server); empty once deleted.
    text: str = Field(sa_column=Column(Text, nullable=False))


class FhirResourceVersion(SQLModel, table=True):
    __tablename__ = "fhir_resource_version"
    __table_args__ = (Index("ix_fhir_resource_version_type_updated", "resource_type", "last_updated"),)

    resource_type: str = Field(sa_column=Column(String(_TYPE), primary_key=True))
    id: str = Field(sa_column=Column(String(_ID), primary_key=True))
    version_id: int = Field(sa_column=Column(Integer, primary_key=True))
    last_updated: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # POST (create), PUT (update, or create with a client id), DELETE.
    method: str = Field(sa_column=Column(String(8), nullable=False))
    text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class FhirSearchToken(SQLModel, table=True):
    __tablename__ = "fhir_search_token"
    __table_args__ = (
        Index("ix_fhir_search_token_code", "resource_type", "param", "code", "system", "resource_id"),
        Index("ix_fhir_search_token_system", "resource_type", "param", "system", "resource_id"),
        Index("ix_fhir_search_token_resource", "resource_type", "resource_id", "param", "code"),
    )

    pk: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    )
    resource_type: str = Field(sa_column=Column(String(_TYPE), nullable=False))
    resource_id: str = Field(sa_column=Column(String(_ID), nullable=False))
    param: str = Field(sa_column=Column(String(_PARAM), nullable=False))
    system: str | None = Field(default=None, sa_column=Column(String(INDEX_TEXT_MAX), nullable=True))
    code: str | None = Field(default=None, sa_column=Column(String(INDEX_TEXT_MAX), nullable=True))


class FhirSearchReference(SQLModel, table=True):
    __tablename__ = "fhir_search_reference"
    __table_args__ = (
        Index(
            "ix_fhir_search_reference_target",
            "resource_type",
            "param",
            "target_type",
            "target_id",
            "resource_id",
        ),
        Index("ix_fhir_search_reference_reverse", "target_type", "target_id"),
        Index("ix_fhir_search_reference_resource", "resource_type", "resource_id", "param", "target_id"),
    )

    pk: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    )
    resource_type: str = Field(sa_column=Column(String(_TYPE), nullable=False))
    resource_id: str = Field(sa_column=Column(String(_ID), nullable=False))
    param: str = Field(sa_column=Column(String(_PARAM), nullable=False))
    target_type: str | None = Field(default=None, sa_column=Column(String(_TYPE), nullable=True))
    target_id: str | None = Field(default=None, sa_column=Column(String(INDEX_TEXT_MAX), nullable=True))
    # Set for references to other servers (absolute URLs not on our base), NULL for local ones.
    url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class FhirSearchDate(SQLModel, table=True):
    __tablename__ = "fhir_search_date"
    __table_args__ = (
        Index("ix_fhir_search_date_low", "resource_type", "param", "low", "high"),
        Index("ix_fhir_search_date_high", "resource_type", "param", "high"),
        Index("ix_fhir_search_date_resource", "resource_type", "resource_id", "param", "low"),
    )

    pk: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    )
    resource_type: str = Field(sa_column=Column(String(_TYPE), nullable=False))
    resource_id: str = Field(sa_column=Column(String(_ID), nullable=False))
    param: str = Field(sa_column=Column(String(_PARAM), nullable=False))
    low: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    high: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class FhirSearchString(SQLModel, table=True):
    __tablename__ = "fhir_search_string"
    __table_args__ = (
        Index(
            "ix_fhir_search_string_norm",
            "resource_type",
            "param",
            "norm",
            postgresql_ops={"norm": "text_pattern_ops"},  # LIKE 'prefix%' uses the index
        ),
        Index("ix_fhir_search_string_resource", "resource_type", "resource_id", "param", "norm"),
    )

    pk: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    )
    resource_type: str = Field(sa_column=Column(String(_TYPE), nullable=False))
    resource_id: str = Field(sa_column=Column(String(_ID), nullable=False))
    param: str = Field(sa_column=Column(String(_PARAM), nullable=False))
    # Lower-cased, accents removed: what plain and :contains searches compare.
    norm: str = Field(sa_column=Column(String(INDEX_TEXT_MAX), nullable=False))
    # As written: what :exact compares.
    value: str = Field(sa_column=Column(Text, nullable=False))


class FhirSearchNumber(SQLModel, table=True):
    """Number and quantity parameters (quantities also carry their unit system and code)."""

    __tablename__ = "fhir_search_number"
    __table_args__ = (
        Index("ix_fhir_search_number_value", "resource_type", "param", "value"),
        Index("ix_fhir_search_number_resource", "resource_type", "resource_id", "param", "value"),
    )

    pk: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    )
    resource_type: str = Field(sa_column=Column(String(_TYPE), nullable=False))
    resource_id: str = Field(sa_column=Column(String(_ID), nullable=False))
    param: str = Field(sa_column=Column(String(_PARAM), nullable=False))
    value: float = Field(sa_column=Column(Float(precision=53), nullable=False))
    system: str | None = Field(default=None, sa_column=Column(String(INDEX_TEXT_MAX), nullable=True))
    code: str | None = Field(default=None, sa_column=Column(String(INDEX_TEXT_MAX), nullable=True))


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]  # set by SQLModel for table=True classes
    assert isinstance(table, Table)
    return table


# The Core tables, for the store's SQL.
RESOURCE = _table(FhirResource)
VERSION = _table(FhirResourceVersion)
TOKEN = _table(FhirSearchToken)
REFERENCE = _table(FhirSearchReference)
DATE = _table(FhirSearchDate)
STRING = _table(FhirSearchString)
NUMBER = _table(FhirSearchNumber)
INDEX_TABLES = {"token": TOKEN, "reference": REFERENCE, "date": DATE, "string": STRING, "number": NUMBER}


def execute(
    session: Session, stmt: Executable, rows: list[dict[str, Any]] | None = None
) -> CursorResult[*tuple[Any, ...]]:
    """Run a Core statement on the session's connection: same transaction, no ORM overhead."""
    conn = session.connection()
    return conn.execute(stmt, rows) if rows else conn.execute(stmt)
