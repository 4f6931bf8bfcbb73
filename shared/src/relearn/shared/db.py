"""Database engine and sessions: one engine per service, one transaction per unit of work.

Sessions commit at the boundary (a request dependency, an event handler wrapper), never
inside business code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from relearn.shared.deadline import check_deadline


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the service's engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if url.startswith("postgresql+psycopg"):
        # No server-side prepared statements: psycopg prepares a query after 5 runs, and a
        # generic plan made while a table was still empty (a fresh database filling up) keeps
        # seq-scanning it; measured, FHIR store writes slowed 2x by 12 000 rows and kept falling.
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("prepare_threshold", None)
        kwargs["connect_args"] = connect_args
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error (or when the request's deadline passed)."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            check_deadline()  # work that outlived its request is not committed: the client was told 503
            session.commit()
        except BaseException:
            session.rollback()
            raise


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def lock_for_write(session: Session, key: str) -> None:
    """Serialise this transaction with every other that locks ``key``, until it commits or rolls back.

    For check-then-write sequences (conditional create, idempotency keys): once this returns, every
    transaction that locked ``key`` before has committed, and the next query sees what it wrote.
    PostgreSQL: a transaction-scoped advisory lock on a 64-bit hash of ``key`` (READ COMMITTED takes a
    new snapshot per statement). SQLite has one writer: the database's write lock is taken now
    (``BEGIN IMMEDIATE``), so the check runs inside the write transaction, not before it.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id(key)})
    elif conn.dialect.name == "sqlite":
        raw: Any = conn.connection.dbapi_connection
        # pysqlite begins a transaction only before a write: a transaction already open holds the lock.
        if not raw.in_transaction:
            session.execute(text("BEGIN IMMEDIATE"))


def lock_id(key: str) -> int:
    """A signed 64-bit number for ``key`` (PostgreSQL advisory lock ids are bigint)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
