"""Views (security_invoker) and the partition coverage report.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Why raw SQL: SQLAlchemy has no view or function DDL; autogenerate ignores both.

Both views are ``security_invoker``: they run with the caller's rights, so row-level
security on the underlying tables applies (a bot sees only its own row). The owner's
rights would otherwise bypass the policies' role targeting.

``partition_coverage(as_of)`` reports, per range-partitioned table, the monthly
partitions, how many months ahead of ``as_of`` are covered and how many rows sit in the
DEFAULT partition. SECURITY DEFINER (counting the DEFAULT partition needs the owner);
only the admin role may execute it.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

from tgfleet.db.migrate import migration_settings
from tgfleet.db.security import RESET_ROLE_SQL, quote_ident, role, set_owner_role_sql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BOT_ACTIVITY_SUMMARY = """
CREATE VIEW bot_activity_summary WITH (security_invoker = true) AS
SELECT b.id AS bot_id,
       b.name,
       b.kind,
       b.status,
       (SELECT count(*) FROM tg_users u WHERE u.bot_id = b.id) AS users,
       (SELECT count(*) FROM profiles p WHERE p.bot_id = b.id) AS profiles,
       (SELECT count(*) FROM messages m WHERE m.bot_id = b.id AND m.direction = 'in'
           AND m.created_at >= now() - interval '24 hours') AS messages_in_24h,
       (SELECT count(*) FROM messages m WHERE m.bot_id = b.id AND m.direction = 'out'
           AND m.created_at >= now() - interval '24 hours') AS messages_out_24h,
       (SELECT max(m.created_at) FROM messages m WHERE m.bot_id = b.id) AS last_message_at,
       (SELECT count(*) FROM outbox o WHERE o.bot_id = b.id
           AND o.status IN ('queued', 'sending', 'retrying')) AS outbox_pending,
       (SELECT count(*) FROM outbox o WHERE o.bot_id = b.id
           AND o.status IN ('failed', 'dead')) AS outbox_failed,
       (SELECT count(*) FROM dead_updates d WHERE d.bot_id = b.id) AS dead_updates
  FROM bots b
"""

# Day buckets win; days that only have hour buckets are summed from them
# (active_users takes the busiest hour: distinct users do not add up).
DAILY_METRICS_SUMMARY = """
CREATE VIEW daily_metrics_summary WITH (security_invoker = true) AS
SELECT bot_id, day,
       sum(messages_in)::bigint AS messages_in,
       sum(messages_out)::bigint AS messages_out,
       sum(new_users)::bigint AS new_users,
       max(active_users) AS active_users,
       sum(sends_ok)::bigint AS sends_ok,
       sum(sends_failed)::bigint AS sends_failed
  FROM (
    SELECT m.bot_id, (m.bucket_start AT TIME ZONE 'UTC')::date AS day, m.messages_in,
           m.messages_out, m.new_users, m.active_users, m.sends_ok, m.sends_failed
      FROM bot_metrics m
     WHERE m.bucket = 'day'
    UNION ALL
    SELECT h.bot_id, (h.bucket_start AT TIME ZONE 'UTC')::date, h.messages_in,
           h.messages_out, h.new_users, h.active_users, h.sends_ok, h.sends_failed
      FROM bot_metrics h
     WHERE h.bucket = 'hour'
       AND NOT EXISTS (
           SELECT 1 FROM bot_metrics d
            WHERE d.bot_id = h.bot_id AND d.bucket = 'day'
              AND (d.bucket_start AT TIME ZONE 'UTC')::date
                  = (h.bucket_start AT TIME ZONE 'UTC')::date)
  ) buckets
 GROUP BY bot_id, day
"""

PARTITION_COVERAGE = r"""
CREATE FUNCTION partition_coverage(as_of timestamptz DEFAULT now())
RETURNS TABLE (table_name text, partitions integer, oldest_month date,
               newest_month date, months_ahead integer, default_rows bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    parent record;
    this_month date := date_trunc('month', as_of AT TIME ZONE 'UTC')::date;
BEGIN
    FOR parent IN
        SELECT c.oid, c.relname, p.partdefid
          FROM pg_partitioned_table p
          JOIN pg_class c ON c.oid = p.partrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE p.partstrat = 'r' AND n.nspname = 'public' AND NOT c.relispartition
         ORDER BY c.relname
    LOOP
        table_name := parent.relname;
        SELECT count(*), min(b.lo), max(b.lo)
          INTO partitions, oldest_month, newest_month
          FROM (SELECT (substring(pg_get_expr(k.relpartbound, k.oid)
                                  FROM 'FROM \(''([^'']+)''\)')::timestamptz
                        AT TIME ZONE 'UTC')::date AS lo
                  FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid
                 WHERE i.inhparent = parent.oid AND k.oid <> parent.partdefid) b;
        months_ahead := CASE WHEN newest_month IS NULL THEN -1 ELSE
            (extract(year FROM newest_month) * 12 + extract(month FROM newest_month))::int
            - (extract(year FROM this_month) * 12 + extract(month FROM this_month))::int END;
        default_rows := 0;
        IF parent.partdefid <> 0 THEN
            EXECUTE format('SELECT count(*) FROM public.%I',
                           (SELECT relname FROM pg_class WHERE oid = parent.partdefid))
               INTO default_rows;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$
"""


def upgrade() -> None:
    prefix = migration_settings(context.config).db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    op.execute(BOT_ACTIVITY_SUMMARY)
    op.execute(DAILY_METRICS_SUMMARY)
    base = quote_ident(role(prefix, "app_base"))
    op.execute(f"GRANT SELECT ON bot_activity_summary, daily_metrics_summary TO {base}")
    op.execute(PARTITION_COVERAGE)
    op.execute("REVOKE ALL ON FUNCTION partition_coverage(timestamptz) FROM PUBLIC")
    admin = quote_ident(role(prefix, "admin"))
    op.execute(f"GRANT EXECUTE ON FUNCTION partition_coverage(timestamptz) TO {admin}")
    op.execute(RESET_ROLE_SQL)


def downgrade() -> None:
    prefix = migration_settings(context.config).db_role_prefix
    op.execute(set_owner_role_sql(prefix))
    op.execute("DROP FUNCTION IF EXISTS partition_coverage(timestamptz)")
    op.execute("DROP VIEW IF EXISTS daily_metrics_summary")
    op.execute("DROP VIEW IF EXISTS bot_activity_summary")
    op.execute(RESET_ROLE_SQL)
