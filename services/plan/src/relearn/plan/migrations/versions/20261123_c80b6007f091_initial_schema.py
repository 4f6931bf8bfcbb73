"""initial schema

Revision ID: c80b6007f091
Revises:
Create Date: 2026-11-23 21:20:23.797625
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from relearn.shared.plumbing_schema import create_plumbing_tables_v1, drop_plumbing_tables_v1

revision: str = "c80b6007f091"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_plumbing_tables_v1()
    op.create_table(
        "recorded_measurement",
        sa.Column("observation_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("effective", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("observation_id"),
    )
    with op.batch_alter_table("recorded_measurement", schema=None) as batch_op:
        batch_op.create_index("ix_recorded_measurement_patient_code", ["patient_id", "code"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("recorded_measurement", schema=None) as batch_op:
        batch_op.drop_index("ix_recorded_measurement_patient_code")

    op.drop_table("recorded_measurement")
    drop_plumbing_tables_v1()
