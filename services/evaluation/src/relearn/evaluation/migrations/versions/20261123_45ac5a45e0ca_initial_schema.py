"""initial schema

Revision ID: 45ac5a45e0ca
Revises:
Create Date: 2026-11-23 21:20:21.066558
"""

from collections.abc import Sequence

from relearn.shared.plumbing_schema import create_plumbing_tables_v1, drop_plumbing_tables_v1

revision: str = "45ac5a45e0ca"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_plumbing_tables_v1()


def downgrade() -> None:
    drop_plumbing_tables_v1()
