"""initial schema: clients, the assertion replay store, revoked tokens, codes, refresh tokens, launches

Revision ID: 137bd41b584c
Revises:
Create Date: 2026-12-06 17:24:33.002697
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

revision: str = "137bd41b584c"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_plumbing_tables_v1()
    create_plumbing_tables_v2()
    create_plumbing_tables_v3()
    op.create_table(
        "assertion_jti",
        sa.Column("client_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("jti", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti"),
    )
    with op.batch_alter_table("assertion_jti", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assertion_jti_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "authorization_code",
        sa.Column("code_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("client_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("code_challenge", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("fhir_user", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("patient", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("encounter", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("nonce", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    with op.batch_alter_table("authorization_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_authorization_code_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "launch_context",
        sa.Column("launch_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("issued_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("patient", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("encounter", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("launch_id"),
    )
    with op.batch_alter_table("launch_context", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_launch_context_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "oauth_client",
        sa.Column("client_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("auth_method", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("jwks", sa.Text(), nullable=True),
        sa.Column("jwks_uri", sa.Text(), nullable=True),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("grant_types", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("devices", sa.Text(), nullable=False),
        sa.Column("device_client", sa.Boolean(), nullable=False),
        sa.Column("launch_issuer", sa.Boolean(), nullable=False),
        sa.Column("may_introspect", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )
    op.create_table(
        "refresh_token",
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("family", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("client_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("fhir_user", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("patient", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("encounter", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("refresh_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refresh_token_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_refresh_token_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_refresh_token_family"), ["family"], unique=False)

    op.create_table(
        "revoked_token",
        sa.Column("jti", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("client_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti"),
    )
    with op.batch_alter_table("revoked_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revoked_token_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("revoked_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revoked_token_expires_at"))

    op.drop_table("revoked_token")
    with op.batch_alter_table("refresh_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_token_family"))
        batch_op.drop_index(batch_op.f("ix_refresh_token_expires_at"))
        batch_op.drop_index(batch_op.f("ix_refresh_token_client_id"))

    op.drop_table("refresh_token")
    op.drop_table("oauth_client")
    with op.batch_alter_table("launch_context", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_launch_context_expires_at"))

    op.drop_table("launch_context")
    with op.batch_alter_table("authorization_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authorization_code_expires_at"))

    op.drop_table("authorization_code")
    with op.batch_alter_table("assertion_jti", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assertion_jti_expires_at"))

    op.drop_table("assertion_jti")
    drop_plumbing_tables_v3()
    drop_plumbing_tables_v2()
    drop_plumbing_tables_v1()
