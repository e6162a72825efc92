"""The button-driven matchmaking app: gender, moderation, a user's chosen language.

Revision ID: 0104
Revises: 0103
Create Date: 2026-12-06

``profiles.gender`` (``male`` / ``female``; NULL for profiles migrated from the legacy
JSON store, which never asked) pairs with ``looking_for`` (``male`` / ``female`` /
``any``). ``profiles.moderation`` is the admins' verdict: ``pending`` (new, changed or
reported), ``approved`` or ``banned`` (never shown). Rows that exist already were shown
before this revision, so they start ``approved``.

``tg_users.chosen_lang`` is the language a user picked in a bot (``ctx.set_language``);
the drain reads it before Telegram's ``language_code``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0104"
down_revision: str | Sequence[str] | None = "0103"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.add_column("profiles", sa.Column("gender", sa.Text(), nullable=True))
    op.add_column(
        "profiles",
        sa.Column("moderation", sa.Text(), server_default="approved", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_profiles_gender_kind"), "profiles", sa.text("gender IN ('male', 'female')")
    )
    op.create_check_constraint(
        op.f("ck_profiles_moderation_kind"),
        "profiles",
        sa.text("moderation IN ('pending', 'approved', 'banned')"),
    )
    op.add_column("tg_users", sa.Column("chosen_lang", sa.Text(), nullable=True))
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.drop_column("tg_users", "chosen_lang")
    op.drop_constraint(op.f("ck_profiles_moderation_kind"), "profiles", type_="check")
    op.drop_constraint(op.f("ck_profiles_gender_kind"), "profiles", type_="check")
    op.drop_column("profiles", "moderation")
    op.drop_column("profiles", "gender")
    op.execute(RESET_ROLE_SQL)
