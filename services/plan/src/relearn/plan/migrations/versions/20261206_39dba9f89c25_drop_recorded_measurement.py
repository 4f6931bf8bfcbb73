"""drop recorded_measurement

The plan service no longer keeps a second copy of every Observation (read by nothing but a test); the
evaluation service's FHIR store is where measurements live.

Revision ID: 39dba9f89c25
Revises: 24d02a6f7e1c
Create Date: 2026-12-06 14:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "39dba9f89c25"
down_revision: str | None = "24d02a6f7e1c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recorded_measurement", schema=None) as batch_op:
        batch_op.drop_index("ix_recorded_measurement_patient_code")
    op.drop_table("recorded_measurement")


def downgrade() -> None:
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
