"""initial schema: the plumbing tables, subscription state, the event log and websocket binding tokens

Revision ID: 6f5821db17da
Revises:
Create Date: 2026-12-06 14:34:35.986465
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from relearn.shared.plumbing_schema import (
    create_plumbing_tables_v1,
    create_plumbing_tables_v2,
    create_plumbing_tables_v3,
    drop_plumbing_tables_v1,
    drop_plumbing_tables_v2,
    drop_plumbing_tables_v3,
)

revision: str = "6f5821db17da"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_plumbing_tables_v1()
    create_plumbing_tables_v2()
    create_plumbing_tables_v3()
    op.create_table(
        "subscription_event",
        sa.Column("subscription_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("source_event", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("focus", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("patient", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subscription_id", "number"),
        sa.UniqueConstraint("subscription_id", "source_event", "focus"),
    )
    op.create_table(
        "subscription_state",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("filters", sa.Text(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=True),
        sa.Column("payload", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("heartbeat_s", sa.Integer(), nullable=True),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("max_count", sa.Integer(), nullable=False),
        sa.Column("secret", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("owner_scope", sa.Text(), nullable=False),
        sa.Column("owner_patient", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("events_since_start", sa.Integer(), nullable=False),
        sa.Column("acked_through", sa.Integer(), nullable=False),
        sa.Column("handshake_done", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subscription_state", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscription_state_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_subscription_state_topic"), ["topic"], unique=False)
    op.create_table(
        "subscription_ws_token",
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("subscription_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token"),
    )
    with op.batch_alter_table("subscription_ws_token", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscription_ws_token_subscription_id"), ["subscription_id"], unique=False
        )

    # ### end Alembic commands ###


def downgrade() -> None:
    with op.batch_alter_table("subscription_ws_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscription_ws_token_subscription_id"))
    op.drop_table("subscription_ws_token")
    with op.batch_alter_table("subscription_state", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscription_state_topic"))
        batch_op.drop_index(batch_op.f("ix_subscription_state_status"))
    op.drop_table("subscription_state")
    op.drop_table("subscription_event")
    drop_plumbing_tables_v3()
    drop_plumbing_tables_v2()
    drop_plumbing_tables_v1()
