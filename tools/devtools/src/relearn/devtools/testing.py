"""Pytest fixtures for every Relearn test: a real PostgreSQL database and a real Kafka broker.

Loaded by the repository's root ``conftest.py``. PostgreSQL comes from
``RELEARN_TEST_PG_URL`` (default: the machine's server at 127.0.0.1:5432, database
``test``); each test session creates its own databases and drops them at the end. The
broker is a Tansu process started once per test session on a free loopback port.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from relearn.devtools.broker import TansuBroker


class TestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELEARN_TEST_")

    pg_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[str], str]]:
    """A factory: ``pg_database("evaluation")`` creates a fresh database and returns its URL."""
    admin_url = make_url(TestSettings().pg_url)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    run = uuid.uuid4().hex[:8]
    created: list[str] = []

    def make(name: str) -> str:
        db = f"relearn_t{run}_{name}_{len(created)}".lower().replace("-", "_")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        created.append(db)
        return admin_url.set(database=db).render_as_string(hide_password=False)

    yield make
    with admin.connect() as conn:
        for db in created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One real Tansu broker for the whole test session."""
    b = TansuBroker(log_dir=tmp_path_factory.mktemp("broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()
