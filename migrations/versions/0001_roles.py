"""Roles: <prefix>_super_admin, _app_base, _admin, _bot; the app login joins admin+bot.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Roles are cluster-wide: they are created only if missing, and the downgrade keeps a
role another database still uses. Needs a superuser (or CREATEROLE) connection.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import (
    create_roles_sql,
    drop_roles_sql,
    grant_login_sql,
    login_role_name,
)

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    settings = migration_settings(context.config)
    for stmt in create_roles_sql(settings.db_role_prefix):
        op.execute(stmt)
    login = login_role_name(settings.database_url)
    if login != login_role_name(settings.owner_database_url):
        for stmt in grant_login_sql(settings.db_role_prefix, login):
            op.execute(stmt)


def downgrade() -> None:
    settings = migration_settings(context.config)
    for stmt in drop_roles_sql(settings.db_role_prefix):
        op.execute(stmt)
