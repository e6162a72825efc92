"""Schema: tenant tables hash-partitioned by bot_id, monthly time-series tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The hash modulus (TGFLEET_HASH_PARTITIONS) is fixed here: changing it later is a
migration that re-creates the tables and copies the rows (docs/database.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from tgfleet.db.migrate import migration_settings
from tgfleet.db.partitions import create_hash_partitions, ensure_partitions
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HASH_PARTITIONED = (
    "bots",
    "tg_users",
    "profiles",
    "conversations",
    "entities",
    "outbox",
    "processed_updates",
    "dead_updates",
)
RANGE_PARTITIONED = ("messages", "events", "audit_log")
ENUM_TYPES = (
    "bot_kind",
    "bot_status",
    "peer_type",
    "profile_visibility",
    "outbox_status",
    "message_direction",
    "metric_bucket",
    "migration_state",
)


def upgrade() -> None:
    settings = migration_settings(context.config)
    op.execute(set_owner_role_sql(settings.db_role_prefix))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("op", sa.Text(), nullable=False),
        sa.Column("row_key", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("old_values", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("new_values", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("actor_role", sa.Text(), nullable=False),
        sa.Column("login_role", sa.Text(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("correlation_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", "at", name=op.f("pk_audit_log")),
        postgresql_partition_by="RANGE (at)",
    )
    op.create_index("ix_audit_log_bot_id_at", "audit_log", ["bot_id", "at"], unique=False)
    op.create_index("ix_audit_log_correlation_id", "audit_log", ["correlation_id"], unique=False)
    op.create_table(
        "bots",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "kind", sa.Enum("bot", "user", name="bot_kind"), server_default="bot", nullable=False
        ),
        sa.Column(
            "status",
            sa.Enum("active", "disabled", "revoked", name="bot_status"),
            server_default="active",
            nullable=False,
        ),
        sa.Column(
            "admin_chat_ids",
            sa.ARRAY(sa.BigInteger()),
            server_default=sa.text("'{}'::bigint[]"),
            nullable=False,
        ),
        sa.Column(
            "settings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("token_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("token_fingerprint", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bots")),
        postgresql_partition_by="HASH (id)",
    )
    op.create_table(
        "events",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("bot_id", "at", "id", name=op.f("pk_events")),
        postgresql_partition_by="RANGE (at)",
    )
    op.create_index("ix_events_bot_id_kind_at", "events", ["bot_id", "kind", "at"], unique=False)
    op.create_table(
        "messages",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("direction", sa.Enum("in", "out", name="message_direction"), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.BigInteger(), nullable=True),
        sa.Column("tg_message_id", sa.BigInteger(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("bot_id", "created_at", "id", name=op.f("pk_messages")),
        postgresql_partition_by="RANGE (created_at)",
    )
    op.create_index(
        "ix_messages_bot_id_chat_id_tg_message_id",
        "messages",
        ["bot_id", "chat_id", "tg_message_id"],
        unique=False,
    )
    op.create_index(
        "ix_messages_unprocessed",
        "messages",
        ["bot_id", "chat_id", "id"],
        unique=False,
        postgresql_where=sa.text("processed_at IS NULL AND direction = 'in'"),
    )
    op.create_table(
        "bot_metrics",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("bucket", sa.Enum("hour", "day", name="metric_bucket"), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("messages_in", sa.Integer(), server_default="0", nullable=False),
        sa.Column("messages_out", sa.Integer(), server_default="0", nullable=False),
        sa.Column("new_users", sa.Integer(), server_default="0", nullable=False),
        sa.Column("active_users", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sends_ok", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sends_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_bot_metrics_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bot_id", "bucket", "bucket_start", name=op.f("pk_bot_metrics")),
    )
    op.create_table(
        "bot_sessions",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("session_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_bot_sessions_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bot_id", "node", name=op.f("pk_bot_sessions")),
    )
    op.create_table(
        "conversations",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("state", sa.Text(), server_default="start", nullable=False),
        sa.Column(
            "state_data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("messages_in", sa.Integer(), server_default="0", nullable=False),
        sa.Column("messages_out", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_processed_message_id", sa.BigInteger(), nullable=True),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_conversations_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bot_id", "chat_id", name=op.f("pk_conversations")),
        postgresql_partition_by="HASH (bot_id)",
    )
    op.create_table(
        "dead_updates",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_dead_updates_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bot_id", "id", name=op.f("pk_dead_updates")),
        postgresql_partition_by="HASH (bot_id)",
    )
    op.create_table(
        "entities",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "peer_type", sa.Enum("user", "chat", "channel", name="peer_type"), nullable=False
        ),
        sa.Column("peer_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("access_hash", sa.BigInteger(), nullable=True),
        sa.Column("username", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_entities_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bot_id", "peer_type", "peer_id", name=op.f("pk_entities")),
        postgresql_partition_by="HASH (bot_id)",
    )
    op.create_index(
        "ix_entities_bot_id_username",
        "entities",
        ["bot_id", sa.literal_column("lower(username)")],
        unique=False,
    )
    op.create_table(
        "migration_checkpoints",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("component", sa.Text(), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=True),
        sa.Column("position", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "state",
            sa.Enum("json", "dual", "verify", "postgres", name="migration_state"),
            server_default="json",
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"],
            ["bots.id"],
            name=op.f("fk_migration_checkpoints_bot_id_bots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "bot_id", "component", "file", name=op.f("pk_migration_checkpoints")
        ),
    )
    op.create_table(
        "migration_quarantine",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("component", sa.Text(), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"],
            ["bots.id"],
            name=op.f("fk_migration_quarantine_bot_id_bots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bot_id", "id", name=op.f("pk_migration_quarantine")),
    )
    op.create_table(
        "outbox",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("parse_mode", sa.Text(), nullable=True),
        sa.Column("reply_to", sa.BigInteger(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "queued", "sending", "sent", "retrying", "failed", "dead", name="outbox_status"
            ),
            server_default="queued",
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("random_id", sa.BigInteger(), nullable=True),
        sa.Column("tg_message_id", sa.BigInteger(), nullable=True),
        sa.Column("broadcast_id", sa.BigInteger(), nullable=True),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_outbox_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bot_id", "id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("bot_id", "dedupe_key", name=op.f("uq_outbox_bot_id_dedupe_key")),
        postgresql_partition_by="HASH (bot_id)",
    )
    op.create_index(
        "ix_outbox_bot_id_broadcast_id", "outbox", ["bot_id", "broadcast_id"], unique=False
    )
    op.create_index(
        "ix_outbox_due",
        "outbox",
        ["bot_id", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'retrying')"),
    )
    op.create_table(
        "processed_updates",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"],
            ["bots.id"],
            name=op.f("fk_processed_updates_bot_id_bots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bot_id", "dedupe_key", name=op.f("pk_processed_updates")),
        postgresql_partition_by="HASH (bot_id)",
    )
    op.create_index(
        "ix_processed_updates_bot_id_processed_at",
        "processed_updates",
        ["bot_id", "processed_at"],
        unique=False,
    )
    op.create_table(
        "profiles",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("age", sa.SmallInteger(), nullable=True),
        sa.Column("city", sa.Text(), nullable=True),
        sa.Column("bio", sa.Text(), nullable=True),
        sa.Column("looking_for", sa.Text(), nullable=True),
        sa.Column(
            "visibility",
            sa.Enum("visible", "hidden", "paused", name="profile_visibility"),
            server_default="visible",
            nullable=False,
        ),
        sa.Column("photo_id", sa.BigInteger(), nullable=True),
        sa.Column("photo_access_hash", sa.BigInteger(), nullable=True),
        sa.Column("photo_file_reference", sa.LargeBinary(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "age IS NULL OR age BETWEEN 13 AND 120", name=op.f("ck_profiles_age_range")
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_profiles_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bot_id", "user_id", name=op.f("pk_profiles")),
        postgresql_partition_by="HASH (bot_id)",
    )
    op.create_table(
        "tg_users",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column("username", sa.Text(), nullable=True),
        sa.Column("language_code", sa.Text(), nullable=True),
        sa.Column("is_blocked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_tg_users_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bot_id", "user_id", name=op.f("pk_tg_users")),
        postgresql_partition_by="HASH (bot_id)",
    )
    op.create_table(
        "update_state",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("pts", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("qts", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_update_state_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bot_id", name=op.f("pk_update_state")),
    )

    conn = op.get_bind()
    for table in HASH_PARTITIONED:
        create_hash_partitions(conn, table, settings.hash_partitions)
    ensure_partitions(conn, settings.partition_premake, tables=RANGE_PARTITIONED)
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    settings = migration_settings(context.config)
    op.execute(set_owner_role_sql(settings.db_role_prefix))
    op.drop_table("update_state")
    op.drop_table("tg_users")
    op.drop_table("profiles")
    op.drop_index("ix_processed_updates_bot_id_processed_at", table_name="processed_updates")
    op.drop_table("processed_updates")
    op.drop_index(
        "ix_outbox_due",
        table_name="outbox",
        postgresql_where=sa.text("status IN ('queued', 'retrying')"),
    )
    op.drop_index("ix_outbox_bot_id_broadcast_id", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("migration_quarantine")
    op.drop_table("migration_checkpoints")
    op.drop_index("ix_entities_bot_id_username", table_name="entities")
    op.drop_table("entities")
    op.drop_table("dead_updates")
    op.drop_table("conversations")
    op.drop_table("bot_sessions")
    op.drop_table("bot_metrics")
    op.drop_index(
        "ix_messages_unprocessed",
        table_name="messages",
        postgresql_where=sa.text("processed_at IS NULL AND direction = 'in'"),
    )
    op.drop_index("ix_messages_bot_id_chat_id_tg_message_id", table_name="messages")
    op.drop_table("messages")
    op.drop_index("ix_events_bot_id_kind_at", table_name="events")
    op.drop_table("events")
    op.drop_table("bots")
    op.drop_index("ix_audit_log_correlation_id", table_name="audit_log")
    op.drop_index("ix_audit_log_bot_id_at", table_name="audit_log")
    op.drop_table("audit_log")
    for name in ENUM_TYPES:
        op.execute(f"DROP TYPE IF EXISTS {name}")
    op.execute(RESET_ROLE_SQL)
