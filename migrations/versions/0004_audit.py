"""Audit: trigger-written rows in audit_log for writes to bots, profiles, outbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

Why raw SQL: triggers and PL/pgSQL functions have no SQLAlchemy/Alembic construct.

``audit_row_change`` is SECURITY DEFINER (owned by <prefix>_super_admin, fixed
search_path) so the app roles need no INSERT grant on audit_log and cannot write,
change or delete audit rows themselves. It records the root table
(``pg_partition_root``), the operation, the row key, the changed columns (old/new
jsonb; the token ciphertext is redacted), the active role (the ``role`` setting: under
SECURITY DEFINER ``current_user`` is the owner), the login role, ``txid_current()``
and ``app.correlation_id``. A no-op UPDATE writes nothing. The rows are part of the
writing transaction, so a rollback removes them too.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: table -> (tenant column, key columns...): the trigger's arguments.
AUDITED = {
    "bots": ("id", "id"),
    "profiles": ("bot_id", "bot_id", "user_id"),
    "outbox": ("bot_id", "bot_id", "id"),
}

AUDIT_FUNCTION = r"""
CREATE FUNCTION audit_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    cur jsonb := coalesce(new_row, old_row);
    old_values jsonb;
    new_values jsonb;
    row_key jsonb := '{}'::jsonb;
    secret text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        SELECT jsonb_object_agg(o.key, o.value), jsonb_object_agg(o.key, n.value)
          INTO old_values, new_values
          FROM jsonb_each(old_row) o JOIN jsonb_each(new_row) n ON n.key = o.key
         WHERE o.value IS DISTINCT FROM n.value;
        IF old_values IS NULL THEN
            RETURN NULL;  -- nothing changed
        END IF;
    ELSE
        old_values := old_row;
        new_values := new_row;
    END IF;
    FOREACH secret IN ARRAY ARRAY['token_encrypted'] LOOP
        IF old_values ? secret AND old_values ->> secret IS NOT NULL THEN
            old_values := jsonb_set(old_values, ARRAY[secret], '"[redacted]"');
        END IF;
        IF new_values ? secret AND new_values ->> secret IS NOT NULL THEN
            new_values := jsonb_set(new_values, ARRAY[secret], '"[redacted]"');
        END IF;
    END LOOP;
    FOR i IN 1 .. TG_NARGS - 1 LOOP
        row_key := row_key || jsonb_build_object(TG_ARGV[i], cur -> TG_ARGV[i]);
    END LOOP;
    INSERT INTO public.audit_log (bot_id, table_name, op, row_key, old_values, new_values,
                                  actor_role, login_role, txid, correlation_id)
    VALUES (
        (cur ->> TG_ARGV[0])::bigint,
        (SELECT c.relname FROM pg_class c
          WHERE c.oid = coalesce(pg_partition_root(TG_RELID), TG_RELID)),
        TG_OP,
        row_key,
        old_values,
        new_values,
        coalesce(nullif(current_setting('role', true), 'none'), session_user),
        session_user,
        txid_current(),
        nullif(current_setting('app.correlation_id', true), '')
    );
    RETURN NULL;
END
$fn$
"""


def upgrade() -> None:
    prefix = migration_settings(context.config).db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    op.execute(AUDIT_FUNCTION)
    op.execute("REVOKE ALL ON FUNCTION audit_row_change() FROM PUBLIC")
    for table, args in AUDITED.items():
        quoted = ", ".join(f"'{arg}'" for arg in args)
        op.execute(
            f"CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION audit_row_change({quoted})"
        )
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    prefix = migration_settings(context.config).db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    for table in AUDITED:
        op.execute(f"DROP TRIGGER IF EXISTS audit_row_change ON {table}")
    op.execute("DROP FUNCTION IF EXISTS audit_row_change()")
    op.execute(RESET_ROLE_SQL)
