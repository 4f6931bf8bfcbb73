"""outbox dead letters: events that can never be published, moved aside with the reason

Revision ID: 646fdb0c87cb
Revises: 452b55c19449
Create Date: 2026-12-06 12:30:00.000000
"""

from collections.abc import Sequence

from relearn.shared.plumbing_schema import create_plumbing_tables_v3, drop_plumbing_tables_v3

revision: str = "646fdb0c87cb"
down_revision: str | None = "452b55c19449"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_plumbing_tables_v3()


def downgrade() -> None:
    drop_plumbing_tables_v3()
