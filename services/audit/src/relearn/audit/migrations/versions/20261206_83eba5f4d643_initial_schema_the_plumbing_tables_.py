"""initial schema: the plumbing tables (AuditEvents live in the FHIR store tables)

Revision ID: 83eba5f4d643
Revises:
Create Date: 2026-12-06 17:24:29.316679
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

revision: str = "83eba5f4d643"
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
