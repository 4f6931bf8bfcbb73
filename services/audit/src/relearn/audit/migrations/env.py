"""Alembic environment of the audit service: its tables plus the shared plumbing tables."""

import relearn.audit.tables  # noqa: F401  (registers the service's tables on SQLModel.metadata)
from relearn.shared.migrations import run_env

run_env()
