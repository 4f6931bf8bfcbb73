"""toast lz4 columns: frame samples and outbox payloads compressed with lz4 (PostgreSQL 14+ with lz4)

Frames and their raw events are 20-60 kB values that PostgreSQL TOASTs. Its default pglz compression
costs about 1-3 ms per value; lz4 a fifth to a tenth of that, and still stores float64 samples in about
two thirds of their size (measured on EMG frames: pglz 56 %, lz4 64 %, in 0.93 / 0.17 / 0.13 ms per row
for pglz / lz4 / no compression). Set per column here, once, rather than per ingest transaction.
Compression and storage are not compared by autogenerate; SQLite and servers without lz4 are left as
they are (values written before keep their compression until rewritten).

Revision ID: 5b1e0c7d9a42
Revises: 673ba331a990
Create Date: 2026-12-02 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b1e0c7d9a42"
down_revision: str | None = "673ba331a990"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("device_frame", "sample_data"), ("device_frame", "time_data"), ("outbox_event", "payload"))


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    # PostgreSQL 14+ lists lz4 here only when the server was built with it; older servers have no row.
    query = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    return bool(bind.execute(sa.text(query)).scalar())


def upgrade() -> None:
    if _lz4_available():
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_available():
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION default")
