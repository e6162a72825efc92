"""Audit: a trigger function of its own for each audited table, made from its columns.

Revision ID: 0110
Revises: 0109
Create Date: 2026-12-08

``audit_row_change()`` (0109) is generic: for an UPDATE it turns both rows into jsonb
(``to_jsonb(OLD)``, ``to_jsonb(NEW)``, the message's text and all) and runs a query over
their keys to find the changed columns, once per row. On the send path every message is
two audited updates of its outbox row. Each table now gets ``audit_<table>_change()``,
written here from the table's columns as they are at this revision: one
``IS DISTINCT FROM`` per column, and only the changed ones are made into jsonb. It
writes the same audit rows (same columns, same values, tokens redacted the same way).
An UPDATE of 50 outbox rows (median of 6 rounds of 150): 1.6 ms without a trigger,
8.5 ms with ``audit_row_change()``, 5.0 ms with ``audit_outbox_change()``.

A migration that adds a column to an audited table makes that table's function again
(``audit_function_sql`` below, reached through ``context.script.get_revision("0110")``);
``tests/db/test_audit.py`` fails while a function misses a column of its table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op
from sqlalchemy import text

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, set_owner_role_sql

revision: str = "0110"
down_revision: str | Sequence[str] | None = "0109"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Table: (tenant column, key columns...), as in 0004 and 0109.
AUDITED: dict[str, tuple[str, ...]] = {
    "bots": ("id", "id"),
    "profiles": ("bot_id", "bot_id", "user_id"),
    "outbox": ("bot_id", "bot_id", "id"),
}
#: Columns whose values never reach the audit log (non-null becomes "[redacted]").
REDACTED = ("token_encrypted",)


def function_name(table: str) -> str:
    return f"audit_{table}_change"


def _value(row: str, column: str) -> str:
    if column in REDACTED:
        return f"CASE WHEN {row}.{column} IS NULL THEN NULL ELSE '[redacted]' END"
    return f"{row}.{column}"


def _redact_whole(variable: str, columns: Sequence[str]) -> str:
    return "".join(
        f"""
        IF {variable} ->> '{column}' IS NOT NULL THEN
            {variable} := jsonb_set({variable}, '{{{column}}}', '"[redacted]"');
        END IF;"""
        for column in columns
        if column in REDACTED
    )


def audit_function_sql(table: str, columns: Sequence[str]) -> str:
    """``CREATE OR REPLACE FUNCTION audit_<table>_change()`` for ``table`` with exactly
    ``columns`` (all of them, in any order)."""
    tenant, *keys = AUDITED[table]
    diffs = "".join(
        f"""
        IF OLD.{column} IS DISTINCT FROM NEW.{column} THEN
            old_values := old_values || jsonb_build_object('{column}', {_value("OLD", column)});
            new_values := new_values || jsonb_build_object('{column}', {_value("NEW", column)});
        END IF;"""
        for column in columns
    )
    row_key = ", ".join(f"'{key}', coalesce(NEW.{key}, OLD.{key})" for key in keys)
    return f"""
CREATE OR REPLACE FUNCTION {function_name(table)}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    old_values jsonb;
    new_values jsonb;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        old_values := '{{}}';
        new_values := '{{}}';{diffs}
        IF old_values = '{{}}' THEN
            RETURN NULL;  -- nothing changed
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        new_values := to_jsonb(NEW);{_redact_whole("new_values", columns)}
    ELSE
        old_values := to_jsonb(OLD);{_redact_whole("old_values", columns)}
    END IF;
    INSERT INTO public.audit_log (bot_id, table_name, op, row_key, old_values, new_values,
                                  actor_role, login_role, txid, correlation_id)
    VALUES (
        coalesce(NEW.{tenant}, OLD.{tenant}),
        '{table}',
        TG_OP,
        jsonb_build_object({row_key}),
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


def table_columns(table: str) -> list[str]:
    """The table's columns now, in order."""
    rows = op.get_bind().execute(
        text(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:table) "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
        {"table": table},
    )
    return [row[0] for row in rows]


def _trigger(table: str, call: str) -> None:
    op.execute(f"DROP TRIGGER audit_row_change ON {table}")
    op.execute(
        f"CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {call}"
    )


def upgrade() -> None:
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    for table in AUDITED:
        op.execute(audit_function_sql(table, table_columns(table)))
        op.execute(f"REVOKE ALL ON FUNCTION {function_name(table)}() FROM PUBLIC")
        _trigger(table, f"{function_name(table)}()")
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    # The function and the triggers as 0109 left them: its upgrade makes both again.
    previous = context.script.get_revision("0109")
    if previous is None:
        raise RuntimeError("migration 0109 is missing: going back from 0110 needs it")
    previous.module.upgrade()
    op.execute(set_owner_role_sql(migration_settings(context.config).db_role_prefix))
    for table in AUDITED:
        op.execute(f"DROP FUNCTION {function_name(table)}()")
    op.execute(RESET_ROLE_SQL)
