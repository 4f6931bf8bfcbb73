"""The plumbing tables every service database has: the FHIR store, the outbox, processed events.

Each service's first migration calls :func:`create_plumbing_tables_v1`; a later change to
these tables gets a new ``..._v2`` function here, called by a new migration in every
service, so old migrations keep meaning what they meant when they ran.
"""

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime


def create_plumbing_tables_v1() -> None:
    op.create_table(
        "fhir_resource",
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("resource_type", "id"),
    )
    with op.batch_alter_table("fhir_resource", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_resource_type_updated", ["resource_type", "last_updated"], unique=False
        )

    op.create_table(
        "fhir_resource_version",
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("resource_type", "id", "version_id"),
    )
    with op.batch_alter_table("fhir_resource_version", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_resource_version_type_updated", ["resource_type", "last_updated"], unique=False
        )

    op.create_table(
        "fhir_search_date",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("low", sa.DateTime(timezone=True), nullable=False),
        sa.Column("high", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("fhir_search_date", schema=None) as batch_op:
        batch_op.create_index("ix_fhir_search_date_high", ["resource_type", "param", "high"], unique=False)
        batch_op.create_index(
            "ix_fhir_search_date_low", ["resource_type", "param", "low", "high"], unique=False
        )
        batch_op.create_index(
            "ix_fhir_search_date_resource", ["resource_type", "resource_id", "param", "low"], unique=False
        )

    op.create_table(
        "fhir_search_number",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=False),
        sa.Column("system", sa.String(length=256), nullable=True),
        sa.Column("code", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("fhir_search_number", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_search_number_resource", ["resource_type", "resource_id", "param", "value"], unique=False
        )
        batch_op.create_index(
            "ix_fhir_search_number_value", ["resource_type", "param", "value"], unique=False
        )

    op.create_table(
        "fhir_search_reference",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=64), nullable=True),
        sa.Column("target_id", sa.String(length=256), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("fhir_search_reference", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_search_reference_resource",
            ["resource_type", "resource_id", "param", "target_id"],
            unique=False,
        )
        batch_op.create_index("ix_fhir_search_reference_reverse", ["target_type", "target_id"], unique=False)
        batch_op.create_index(
            "ix_fhir_search_reference_target",
            ["resource_type", "param", "target_type", "target_id", "resource_id"],
            unique=False,
        )

    op.create_table(
        "fhir_search_string",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("norm", sa.String(length=256), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("fhir_search_string", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_search_string_norm",
            ["resource_type", "param", "norm"],
            unique=False,
            postgresql_ops={"norm": "text_pattern_ops"},
        )
        batch_op.create_index(
            "ix_fhir_search_string_resource", ["resource_type", "resource_id", "param", "norm"], unique=False
        )

    op.create_table(
        "fhir_search_token",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=256), nullable=True),
        sa.Column("code", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("fhir_search_token", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_search_token_code",
            ["resource_type", "param", "code", "system", "resource_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_fhir_search_token_resource", ["resource_type", "resource_id", "param", "code"], unique=False
        )
        batch_op.create_index(
            "ix_fhir_search_token_system", ["resource_type", "param", "system", "resource_id"], unique=False
        )

    op.create_table(
        "outbox_event",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", AutoString(length=64), nullable=False),
        sa.Column("topic", AutoString(length=255), nullable=False),
        sa.Column("key", AutoString(length=255), nullable=False),
        sa.Column("type", AutoString(length=255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", AutoString(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_id"),
    )
    with op.batch_alter_table("outbox_event", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_event_unpublished", ["published_at", "seq"], unique=False)

    op.create_table(
        "processed_event",
        sa.Column("consumer", AutoString(length=128), nullable=False),
        sa.Column("event_id", AutoString(length=64), nullable=False),
        sa.Column("event_type", AutoString(length=255), nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )


def drop_plumbing_tables_v1() -> None:
    op.drop_table("processed_event")
    with op.batch_alter_table("outbox_event", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_event_unpublished")

    op.drop_table("outbox_event")
    with op.batch_alter_table("fhir_search_token", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_search_token_system")
        batch_op.drop_index("ix_fhir_search_token_resource")
        batch_op.drop_index("ix_fhir_search_token_code")

    op.drop_table("fhir_search_token")
    with op.batch_alter_table("fhir_search_string", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_search_string_resource")
        batch_op.drop_index("ix_fhir_search_string_norm", postgresql_ops={"norm": "text_pattern_ops"})

    op.drop_table("fhir_search_string")
    with op.batch_alter_table("fhir_search_reference", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_search_reference_target")
        batch_op.drop_index("ix_fhir_search_reference_reverse")
        batch_op.drop_index("ix_fhir_search_reference_resource")

    op.drop_table("fhir_search_reference")
    with op.batch_alter_table("fhir_search_number", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_search_number_value")
        batch_op.drop_index("ix_fhir_search_number_resource")

    op.drop_table("fhir_search_number")
    with op.batch_alter_table("fhir_search_date", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_search_date_resource")
        batch_op.drop_index("ix_fhir_search_date_low")
        batch_op.drop_index("ix_fhir_search_date_high")

    op.drop_table("fhir_search_date")
    with op.batch_alter_table("fhir_resource_version", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_resource_version_type_updated")

    op.drop_table("fhir_resource_version")
    with op.batch_alter_table("fhir_resource", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_resource_type_updated")

    op.drop_table("fhir_resource")


def create_plumbing_tables_v2() -> None:
    """v2 adds the answers stored for ``Idempotency-Key`` (relearn.shared.idempotency)."""
    op.create_table(
        "idempotency_key",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", "key"),
    )
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_key_created", ["created_at"], unique=False)


def drop_plumbing_tables_v2() -> None:
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_key_created")
    op.drop_table("idempotency_key")


def create_plumbing_tables_v3() -> None:
    """v3 adds the outbox's dead letters: rows that can never be published, with the reason."""
    op.create_table(
        "outbox_dead_letter",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("event_id", AutoString(length=64), nullable=False),
        sa.Column("topic", AutoString(length=255), nullable=False),
        sa.Column("key", AutoString(length=255), nullable=False),
        sa.Column("type", AutoString(length=255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("failed_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", AutoString(length=1000), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("outbox_dead_letter", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_dead_letter_failed", ["failed_at"], unique=False)


def drop_plumbing_tables_v3() -> None:
    with op.batch_alter_table("outbox_dead_letter", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_dead_letter_failed")
    op.drop_table("outbox_dead_letter")
