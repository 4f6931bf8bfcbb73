"""outbox dead letters: events that can never be published, moved aside with the reason

Revision ID: 682aae1696e8
Revises: 0c3ad1fb2e27
Create Date: 2026-12-06 12:30:00.000000
"""

from collections.abc import Sequence

from relearn.shared.plumbing_schema import create_plumbing_tables_v3, drop_plumbing_tables_v3

revision: str = "682aae1696e8"
down_revision: str | None = "0c3ad1fb2e27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_plumbing_tables_v3()


def downgrade() -> None:
    drop_plumbing_tables_v3()
