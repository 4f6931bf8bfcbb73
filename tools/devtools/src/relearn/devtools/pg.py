"""Throw-away PostgreSQL databases for tests and benchmarks.

The server comes from ``RELEARN_TEST_PG_URL`` (default: this machine's PostgreSQL on
127.0.0.1:5432, database ``test``, trust auth). Each run creates its own databases and
drops them when it ends.
"""

from __future__ import annotations

import uuid

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


class PgSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELEARN_TEST_")

    pg_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class ScratchDatabases:
    """Create uniquely named databases on the server; ``drop_all()`` removes them."""

    def __init__(self, server_url: str | None = None) -> None:
        self._admin_url = make_url(server_url or PgSettings().pg_url)
        self._admin = create_engine(self._admin_url, isolation_level="AUTOCOMMIT")
        self._run = uuid.uuid4().hex[:8]
        self._created: list[str] = []

    def create(self, name: str) -> str:
        db = f"relearn_t{self._run}_{name}_{len(self._created)}".lower().replace("-", "_")
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        self._created.append(db)
        return self._admin_url.set(database=db).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self._admin.connect() as conn:
            for db in self._created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        self._created.clear()
        self._admin.dispose()

    def create_per_service(self, services: list[str]) -> str:
        """One fresh database per service; returns the URL template with ``{service}`` in the name."""
        prefix = f"relearn_t{self._run}_p{len(self._created)}"
        with self._admin.connect() as conn:
            for service in services:
                db = f"{prefix}_{service}".lower().replace("-", "_")
                conn.execute(text(f'CREATE DATABASE "{db}"'))
                self._created.append(db)
        template = self._admin_url.set(database=f"{prefix}_svcplaceholder").render_as_string(
            hide_password=False
        )
        return template.replace("svcplaceholder", "{service}")
