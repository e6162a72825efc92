"""Row-level security on every tenant table; grants on partitioned parents only.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Policies (tgfleet/db/security.py): ``tenant_isolation`` for the bot role keys every row
on ``app.bot_id``; ``fleet_wide`` lets admin and the owner see every bot. ENABLE + FORCE,
so the owner is subject to them too. No grant is ever made on a partition: direct
access to a partition would skip the parent's policies.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import (
    RESET_ROLE_SQL,
    disable_rls_sql,
    enable_rls_sql,
    grant_sql,
    revoke_all_sql,
    role,
    set_owner_role_sql,
)

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Tables the app reads and writes (row-level security decides which rows).
APP_DML_TABLES = (
    "bot_sessions",
    "update_state",
    "tg_users",
    "profiles",
    "conversations",
    "entities",
    "outbox",
    "processed_updates",
    "dead_updates",
    "messages",
    "events",
    "bot_metrics",
    "migration_quarantine",
    "migration_checkpoints",
)
#: Read-only for the app: bots are created by admins; audit rows only by the trigger.
APP_READ_TABLES = ("bots", "audit_log")
TENANT_TABLES = APP_DML_TABLES + APP_READ_TABLES


def _tenant_column(table: str) -> str:
    return "id" if table == "bots" else "bot_id"


def upgrade() -> None:
    prefix = migration_settings(context.config).db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    for table in TENANT_TABLES:
        for stmt in enable_rls_sql(prefix, table, _tenant_column(table)):
            op.execute(stmt)
    base = role(prefix, "app_base")
    op.execute(grant_sql("SELECT, INSERT, UPDATE, DELETE", APP_DML_TABLES, base))
    op.execute(grant_sql("SELECT", APP_READ_TABLES, base))
    op.execute(grant_sql("UPDATE", ["bots"], role(prefix, "bot")))
    op.execute(grant_sql("INSERT, UPDATE, DELETE", ["bots"], role(prefix, "admin")))
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    prefix = migration_settings(context.config).db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    grantees = [role(prefix, name) for name in ("app_base", "admin", "bot")]
    op.execute(revoke_all_sql(TENANT_TABLES, grantees))
    for table in TENANT_TABLES:
        for stmt in disable_rls_sql(table):
            op.execute(stmt)
    op.execute(RESET_ROLE_SQL)
