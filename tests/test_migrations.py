"""Each service's migrations build exactly the tables its models declare, on PostgreSQL and SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SERVICES = [
    ("evaluation", "EVALUATION_"),
    ("plan", "PLAN_"),
    ("sessions", "SESSIONS_"),
    ("device-gateway", "DEVICE_GATEWAY_"),
    ("subscriptions", "SUBSCRIPTIONS_"),
    ("authorization", "AUTHORIZATION_"),
    ("audit", "AUDIT_"),
    ("reports", "REPORTS_"),
]


@pytest.mark.parametrize(("service", "prefix"), SERVICES)
@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_models_match_migrations(
    service: str, prefix: str, database: str, pg_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = pg_database(f"mig_{service}") if database == "postgresql" else f"sqlite:///{tmp_path / 'm.db'}"
    script = Path(sys.executable).parent / f"relearn-{service}"
    # Its own process: SQLModel's metadata is process-wide, and this test process imports every service.
    result = subprocess.run(
        [str(script), "check-migrations"],
        env={**os.environ, f"{prefix}DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
