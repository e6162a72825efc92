"""Order chains across listeners: the update state carries each chat's chain tail.

Revision ID: 0108
Revises: 0107
Create Date: 2026-12-07

``update_state.chains`` maps a chat to the last inbound message id the listener published
for it (and when), for the chats of the last minute, saved in the same statement as
the state it belongs to. A listener that takes a bot over reads it, so the first message
it publishes for such a chat names its predecessor (``prev``) and waits for it, as the
old listener's next message would have. A nullable column without a default: adding it
rewrites nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0108"
down_revision: str | Sequence[str] | None = "0107"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.add_column("update_state", sa.Column("chains", JSONB(), nullable=True))
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    op.drop_column("update_state", "chains")
    op.execute(RESET_ROLE_SQL)
