"""initial schema

Revision ID: c66cf358941c
Revises:
Create Date: 2026-11-23 21:20:26.571351
"""

from collections.abc import Sequence

from relearn.shared.plumbing_schema import create_plumbing_tables_v1, drop_plumbing_tables_v1

revision: str = "c66cf358941c"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_plumbing_tables_v1()


def downgrade() -> None:
    drop_plumbing_tables_v1()
