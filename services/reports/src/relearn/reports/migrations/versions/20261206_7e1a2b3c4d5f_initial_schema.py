"""initial schema: the plumbing tables (FHIR store, outbox, processed events, idempotency keys)

Revision ID: 7e1a2b3c4d5f
Revises:
Create Date: 2026-12-06 17:30:00.000000
"""

from collections.abc import Sequence

from relearn.shared.plumbing_schema import (
    create_plumbing_tables_v1,
    create_plumbing_tables_v2,
    create_plumbing_tables_v3,
    drop_plumbing_tables_v1,
    drop_plumbing_tables_v2,
    drop_plumbing_tables_v3,
)

revision: str = "7e1a2b3c4d5f"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_plumbing_tables_v1()
    create_plumbing_tables_v2()
    create_plumbing_tables_v3()


def downgrade() -> None:
    drop_plumbing_tables_v3()
    drop_plumbing_tables_v2()
    drop_plumbing_tables_v1()
