"""Alembic environment of the reports service: the shared plumbing tables."""

import relearn.reports.tables  # noqa: F401  (registers the service's tables on SQLModel.metadata)
from relearn.shared.migrations import run_env

run_env()
