"""bot_metrics: profile updates, likes, matches, flood waits, handling latency.

Revision ID: 0100
Revises: 0007
Create Date: 2026-11-30

Columns the analytics roll-up (``tgfleet.analytics.rollup``) fills; see
docs/operations.md for what each one counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0100"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = ("profile_updates", "likes", "matches", "flood_waits")
LATENCIES = ("latency_p50_ms", "latency_p95_ms")


def upgrade() -> None:
    prefix = migration_settings(context.config).db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    for name in COUNTERS:
        op.add_column(
            "bot_metrics", sa.Column(name, sa.Integer(), server_default="0", nullable=False)
        )
    for name in LATENCIES:
        op.add_column("bot_metrics", sa.Column(name, sa.Integer(), nullable=True))
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    prefix = migration_settings(context.config).db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    for name in (*LATENCIES, *COUNTERS):
        op.drop_column("bot_metrics", name)
    op.execute(RESET_ROLE_SQL)
