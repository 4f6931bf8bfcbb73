"""Alembic migrations per service, run by the tooling (``<service> migrate``), never at import.

Each service keeps its migration scripts in its package (``relearn/<service>/migrations``)
so they ship with the service; their ``env.py`` calls :func:`run_env`. The target metadata
is SQLModel's: the shared plumbing tables (FHIR store, outbox, processed events) plus the
service's own, whatever the service imported.
"""

from __future__ import annotations

import tempfile
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import pool
from sqlmodel import SQLModel, create_engine


def _config(script_location: Path, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    return cfg


def script_location(package: str) -> Path:
    """The migrations folder inside a service package, e.g. ``relearn.evaluation``."""
    return Path(str(files(package) / "migrations"))


def upgrade(package: str, url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` with the service's migrations."""
    command.upgrade(_config(script_location(package), url), revision)


def check(package: str, url: str) -> None:
    """Upgrade ``url`` to head, then fail if the models differ from what the migrations built.

    Run it in a process that imported only this service's tables (the CLI does): SQLModel's
    metadata is process-wide.
    """
    cfg = _config(script_location(package), url)
    command.upgrade(cfg, "head")
    command.check(cfg)


def autogenerate(package: str, message: str) -> None:
    """Write a new migration from the difference between the models and the current head.

    Runs against a throw-away SQLite file brought to head first; review the result
    (PostgreSQL-specific types may need a touch) before committing it.
    """
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/autogen.db"
        cfg = _config(script_location(package), url)
        command.upgrade(cfg, "head")
        command.revision(cfg, message=message, autogenerate=True)


def run_env() -> None:
    """Body of every service's ``migrations/env.py``."""
    from alembic import context

    cfg = context.config
    url = cfg.get_main_option("sqlalchemy.url") or ""
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs batch ALTERs
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
