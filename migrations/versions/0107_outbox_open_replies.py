"""Replies in rounds: an index of each bot's open plain sends, by chat.

Revision ID: 0107
Revises: 0106
Create Date: 2026-12-07

``tgfleet.sends.ready`` finds, for one bot, the first open row (``queued``, ``retrying``
or ``sending``) of every chat it has replies for, on every round. ``ix_outbox_open_replies``
holds only those rows, so the look-up reads the few in flight and never the sent history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0107"
down_revision: str | Sequence[str] | None = "0106"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: As ``tgfleet.db.models.OPEN_REPLIES`` when this revision was written.
OPEN_REPLIES = (
    "status IN ('queued', 'retrying', 'sending') AND op = 'send' AND broadcast_id IS NULL"
)


def upgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.create_index(
        "ix_outbox_open_replies",
        "outbox",
        ["bot_id", "chat_id", "id"],
        postgresql_where=sa.text(OPEN_REPLIES),
    )
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.drop_index(
        "ix_outbox_open_replies", table_name="outbox", postgresql_where=sa.text(OPEN_REPLIES)
    )
    op.execute(RESET_ROLE_SQL)
