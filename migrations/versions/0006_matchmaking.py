"""The matchmaking app's likes, and media on outbox rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

``likes`` is a tenant table like the others: hash-partitioned by bot_id with the
same modulus, row-level security, grants on the parent only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from tgfleet.db.migrate import migration_settings
from tgfleet.db.partitions import create_hash_partitions
from tgfleet.db.security import (
    RESET_ROLE_SQL,
    disable_rls_sql,
    enable_rls_sql,
    grant_sql,
    role,
    set_owner_role_sql,
)

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    settings = migration_settings(context.config)
    prefix = settings.db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    op.add_column("outbox", sa.Column("media", postgresql.JSONB(), nullable=True))
    op.create_table(
        "likes",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("target_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("verdict IN ('like', 'skip')", name=op.f("ck_likes_verdict_kind")),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_likes_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bot_id", "user_id", "target_id", name=op.f("pk_likes")),
        postgresql_partition_by="HASH (bot_id)",
    )
    op.create_index("ix_likes_bot_id_target_id", "likes", ["bot_id", "target_id"])
    create_hash_partitions(op.get_bind(), "likes", settings.hash_partitions)
    for stmt in enable_rls_sql(prefix, "likes"):
        op.execute(stmt)
    op.execute(grant_sql("SELECT, INSERT, UPDATE, DELETE", ["likes"], role(prefix, "app_base")))
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    prefix = migration_settings(context.config).db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    for stmt in disable_rls_sql("likes"):
        op.execute(stmt)
    op.drop_index("ix_likes_bot_id_target_id", table_name="likes")
    op.drop_table("likes")
    op.drop_column("outbox", "media")
    op.execute(RESET_ROLE_SQL)
