"""outbox dead letters: events that can never be published, moved aside with the reason

Revision ID: 89888d6877a0
Revises: 0a5d97476f4c
Create Date: 2026-12-06 12:30:00.000000
"""

from collections.abc import Sequence

from relearn.shared.plumbing_schema import create_plumbing_tables_v3, drop_plumbing_tables_v3

revision: str = "89888d6877a0"
down_revision: str | None = "0a5d97476f4c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_plumbing_tables_v3()


def downgrade() -> None:
    drop_plumbing_tables_v3()
