"""Index unprocessed inbound messages in message-id order (the order handlers run in).

Revision ID: 0101
Revises: 0100
Create Date: 2026-11-23

The drain takes "the chat's first unprocessed inbound message by Telegram message id";
an index in that order answers it without sorting the chat's backlog each time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0101"
down_revision: str | Sequence[str] | None = "0100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE = sa.text("processed_at IS NULL AND direction = 'in'")


def upgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.drop_index("ix_messages_unprocessed", table_name="messages")
    op.create_index(
        "ix_messages_unprocessed",
        "messages",
        ["bot_id", "chat_id", "tg_message_id"],
        postgresql_where=_WHERE,
    )
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.drop_index("ix_messages_unprocessed", table_name="messages")
    op.create_index(
        "ix_messages_unprocessed", "messages", ["bot_id", "chat_id", "id"], postgresql_where=_WHERE
    )
    op.execute(RESET_ROLE_SQL)
