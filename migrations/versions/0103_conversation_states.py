"""Conversation state per (bot, chat, user): the bots' finite-state machines.

Revision ID: 0103
Revises: 0102
Create Date: 2026-12-06

``conversation_states`` is a tenant table like ``likes``: hash-partitioned by bot_id
with the same modulus, row-level security, grants on the parent only. A row holds one
user's state in one chat (``state`` NULL: none), the data collected on the way, and an
optional expiry (``tgfleet.bots.fsm``). The drain's hot-path statements read it by
primary key together with the next waiting message.
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

revision: str = "0103"
down_revision: str | Sequence[str] | None = "0102"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "conversation_states"


def upgrade() -> None:
    settings = migration_settings(context.config)
    prefix = settings.db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    op.create_table(
        TABLE,
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"],
            ["bots.id"],
            name=op.f("fk_conversation_states_bot_id_bots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "bot_id", "chat_id", "user_id", name=op.f("pk_conversation_states")
        ),
        postgresql_partition_by="HASH (bot_id)",
    )
    create_hash_partitions(op.get_bind(), TABLE, settings.hash_partitions)
    for stmt in enable_rls_sql(prefix, TABLE):
        op.execute(stmt)
    op.execute(grant_sql("SELECT, INSERT, UPDATE, DELETE", [TABLE], role(prefix, "app_base")))
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    prefix = migration_settings(context.config).db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    for stmt in disable_rls_sql(TABLE):
        op.execute(stmt)
    op.drop_table(TABLE)
    op.execute(RESET_ROLE_SQL)
