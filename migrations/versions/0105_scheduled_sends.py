"""Scheduled sends, and broadcasts an operator pauses or cancels.

Revision ID: 0105
Revises: 0104
Create Date: 2026-12-07

``outbox_status`` gains ``scheduled`` (the row waits until ``next_attempt_at``; the
sender's scheduler makes it ``queued`` and enqueues it on time), ``cancelled`` (taken
back before it went out) and ``paused`` (a paused broadcast's rows, until resumed).
``ix_outbox_scheduled`` finds the rows coming due across every bot.

PostgreSQL cannot drop an enum value short of making the type again, which the
``bot_activity_summary`` view's use of ``outbox.status`` forbids: the downgrade moves the
rows out of the three values (scheduled and paused rows become ``queued``, cancelled ones
``failed``) and leaves the values unused; upgrading again adds nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0105"
down_revision: str | Sequence[str] | None = "0104"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    owner = set_owner_role_sql(migration_settings(context.config).db_role_prefix)
    with op.get_context().autocommit_block():  # a new value is usable once committed
        op.execute(owner)
        op.execute("ALTER TYPE outbox_status ADD VALUE IF NOT EXISTS 'scheduled'")
        op.execute("ALTER TYPE outbox_status ADD VALUE IF NOT EXISTS 'cancelled'")
        op.execute("ALTER TYPE outbox_status ADD VALUE IF NOT EXISTS 'paused'")
    op.execute(owner)
    op.create_index(
        "ix_outbox_scheduled",
        "outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.drop_index(
        "ix_outbox_scheduled", table_name="outbox", postgresql_where=sa.text("status = 'scheduled'")
    )
    op.execute("UPDATE outbox SET status = 'queued' WHERE status IN ('scheduled', 'paused')")
    op.execute("UPDATE outbox SET status = 'failed' WHERE status = 'cancelled'")
    op.execute(RESET_ROLE_SQL)
