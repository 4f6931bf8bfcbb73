"""Outbox and consumer tests run on real databases (migrated like a service's) and the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy.engine import Engine

from relearn.shared.db import make_engine
from relearn.shared.migrations import upgrade


@pytest.fixture
def pg_engine(pg_database: Callable[[str], str]) -> Engine:
    # The evaluation service's migrations create exactly the shared plumbing tables.
    url = pg_database("events")
    upgrade("relearn.evaluation", url)
    return make_engine(url)


@pytest.fixture
def unique() -> Callable[[str], str]:
    run = uuid.uuid4().hex[:8]
    return lambda name: f"test.{name}.{run}"
