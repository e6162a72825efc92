"""Outbox operations: a row can send, edit or delete a message, or answer a button press.

Revision ID: 0102
Revises: 0101
Create Date: 2026-12-06

Every Telegram call a handler asks for goes through the outbox, so edits, deletes and
callback answers share the delivery path of sends (exactly once, rate limited, retried,
dead-lettered with a reason). ``op`` says which call; ``target_id`` is the message to
edit or the callback query to answer; ``reply_markup`` is the keyboard (the JSON form
``tgfleet.sends.markup`` turns into Telegram's); ``options`` holds what one operation
alone needs (the message ids to delete; an answer's alert and url).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0102"
down_revision: str | Sequence[str] | None = "0101"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPERATIONS = ("send", "edit", "delete", "answer")


def upgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.add_column("outbox", sa.Column("op", sa.Text(), server_default="send", nullable=False))
    op.add_column("outbox", sa.Column("target_id", sa.BigInteger(), nullable=True))
    op.add_column("outbox", sa.Column("reply_markup", postgresql.JSONB(), nullable=True))
    op.add_column("outbox", sa.Column("options", postgresql.JSONB(), nullable=True))
    op.create_check_constraint(
        op.f("ck_outbox_op"),
        "outbox",
        sa.text("op IN (" + ", ".join(f"'{o}'" for o in OPERATIONS) + ")"),
    )
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.drop_constraint(op.f("ck_outbox_op"), "outbox", type_="check")
    for name in ("options", "reply_markup", "target_id", "op"):
        op.drop_column("outbox", name)
    op.execute(RESET_ROLE_SQL)
