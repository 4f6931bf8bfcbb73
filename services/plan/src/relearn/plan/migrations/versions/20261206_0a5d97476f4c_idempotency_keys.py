"""idempotency keys: the stored answers of POSTs sent with an Idempotency-Key

Revision ID: 0a5d97476f4c
Revises: 59520c914d0b
Create Date: 2026-12-06 12:20:00.000000
"""

from collections.abc import Sequence

from relearn.shared.plumbing_schema import create_plumbing_tables_v2, drop_plumbing_tables_v2

revision: str = "0a5d97476f4c"
down_revision: str | None = "59520c914d0b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_plumbing_tables_v2()


def downgrade() -> None:
    drop_plumbing_tables_v2()
