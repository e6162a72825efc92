"""Legacy JSON migration: checkpoint progress columns, profile photo file ids.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

* ``migration_checkpoints`` gains what the engine (tgfleet/legacy/engine.py) records per
  file: ``complete`` (the scan reached the end), ``error`` (why it stopped early, e.g. a
  truncated file), ``records`` (records read) and, on the component row (``file = ''``),
  ``details`` (where the store lives, the last verification report).
* ``profiles.photo_file_id``: the legacy bot kept a Bot API ``file_id`` string per
  profile photo, which the InputPhoto columns cannot hold.
* An index to find a file's quarantined records (re-scans replace them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.add_column(
        "migration_checkpoints",
        sa.Column("complete", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("migration_checkpoints", sa.Column("error", sa.Text(), nullable=True))
    op.add_column(
        "migration_checkpoints",
        sa.Column("records", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "migration_checkpoints",
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column("profiles", sa.Column("photo_file_id", sa.Text(), nullable=True))
    op.create_index(
        "ix_migration_quarantine_bot_id_component_file",
        "migration_quarantine",
        ["bot_id", "component", "file"],
        unique=False,
    )
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.drop_index("ix_migration_quarantine_bot_id_component_file", "migration_quarantine")
    op.drop_column("profiles", "photo_file_id")
    for column in ("details", "records", "error", "complete"):
        op.drop_column("migration_checkpoints", column)
    op.execute(RESET_ROLE_SQL)
