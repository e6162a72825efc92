"""Traces: the outbox row carries the traceparent of the handling that wrote it.

Revision ID: 0106
Revises: 0105
Create Date: 2026-12-07

``outbox.trace_parent`` (W3C traceparent, NULL when traces are off) lets a sender's
``tgfleet.send`` span join the trace of the update whose handler queued the row, however
long the row waited (``tgfleet.platform.tracing``). A nullable column without a default:
adding it rewrites nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0106"
down_revision: str | Sequence[str] | None = "0105"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.add_column("outbox", sa.Column("trace_parent", sa.Text(), nullable=True))
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.drop_column("outbox", "trace_parent")
    op.execute(RESET_ROLE_SQL)
