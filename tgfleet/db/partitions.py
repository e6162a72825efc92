"""Partition management for the monthly range-partitioned tables (and hash set-up).

Why raw SQL: SQLAlchemy models the partitioned parents (``postgresql_partition_by``)
but has no notion of individual partitions, ``ATTACH``/``DETACH PARTITION`` or
partition bounds, so this module speaks DDL directly.

All functions take a ``Connection`` inside a transaction in which the current role owns
the tables (``tgfleet.db.session.owner_scope`` or a migration). Creating a month:

1. ``CREATE TABLE <t>_yYYYYmMM (LIKE <t> INCLUDING DEFAULTS/CONSTRAINTS/INDEXES/STORAGE)``
2. ``ADD CONSTRAINT ... CHECK`` matching the bounds, so ``ATTACH`` can prove the
   partition constraint from it and skips the validation scan;
3. move rows for that month out of the DEFAULT partition (they would block ``ATTACH``);
4. ``ATTACH PARTITION ... FOR VALUES FROM (...) TO (...)``, then drop the CHECK.

A trigger cannot create a partition during an insert, so partitions are made ahead of
time (``ensure_partitions``); rows for a month without a partition land in DEFAULT and
``coverage`` reports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Connection, text

from tgfleet.db.security import quote_ident
from tgfleet.platform.settings import Settings

#: Range-partitioned tables and their partition key column.
RANGE_TABLES: dict[str, str] = {"messages": "created_at", "events": "at", "audit_log": "at"}

_LOCK_KEY = "tgfleet.partitions"
_BOUND_RE = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class MonthPartition:
    table: str
    name: str
    start: date
    end: date


@dataclass(frozen=True)
class Coverage:
    """How far ahead a range-partitioned table is covered, and rows sitting in DEFAULT."""

    table: str
    partitions: int
    oldest_month: date | None
    newest_month: date | None
    months_ahead: int
    default_rows: int


def month_start(day: date | datetime) -> date:
    return date(day.year, day.month, 1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def current_month() -> date:
    return month_start(datetime.now(UTC))


def partition_name(table: str, month: date) -> str:
    return f"{table}_y{month.year:04d}m{month.month:02d}"


def default_partition_name(table: str) -> str:
    return f"{table}_default"


def _bound(month: date) -> str:
    return f"'{month.isoformat()} 00:00:00+00'"


def _lock(conn: Connection) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": _LOCK_KEY})


def _column(table: str) -> str:
    try:
        return RANGE_TABLES[table]
    except KeyError:
        raise ValueError(f"{table!r} is not a range-partitioned table") from None


def _attached_partitions(conn: Connection, table: str) -> dict[str, str]:
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": f"public.{table}"},
    )
    return {name: bound for name, bound in rows}


def _default_partition(conn: Connection, table: str) -> str | None:
    return conn.execute(
        text(
            "SELECT d.relname FROM pg_partitioned_table p JOIN pg_class d ON d.oid = p.partdefid "
            "WHERE p.partrelid = to_regclass(:t)"
        ),
        {"t": f"public.{table}"},
    ).scalar_one_or_none()


def create_default_partition(conn: Connection, table: str) -> bool:
    """Create ``<table>_default`` if the table has no DEFAULT partition yet."""
    _column(table)
    if _default_partition(conn, table) is not None:
        return False
    name = quote_ident(default_partition_name(table))
    conn.execute(text(f"CREATE TABLE {name} PARTITION OF {quote_ident(table)} DEFAULT"))
    return True


def create_month_partition(conn: Connection, table: str, month: date) -> bool:
    """Create and attach ``table``'s partition for ``month``; False if it exists already.

    No scan of existing data: the bounds CHECK added before ``ATTACH`` proves the
    partition constraint, and only rows of that month are moved out of DEFAULT.
    """
    column = quote_ident(_column(table))
    month = month_start(month)
    name = partition_name(table, month)
    if name in _attached_partitions(conn, table):
        return False
    lo, hi = _bound(month), _bound(add_months(month, 1))
    qname, qtable = quote_ident(name), quote_ident(table)
    check = quote_ident(f"{name}_bounds")
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {qname} (LIKE {qtable} INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE INCLUDING COMMENTS)"
        )
    )
    conn.execute(text(f"ALTER TABLE {qname} DROP CONSTRAINT IF EXISTS {check}"))
    conn.execute(
        text(
            f"ALTER TABLE {qname} ADD CONSTRAINT {check} CHECK "
            f"({column} IS NOT NULL AND {column} >= {lo} AND {column} < {hi})"
        )
    )
    default = _default_partition(conn, table)
    if default is not None:
        conn.execute(
            text(
                f"WITH moved AS (DELETE FROM {quote_ident(default)} "
                f"WHERE {column} >= {lo} AND {column} < {hi} RETURNING *) "
                f"INSERT INTO {qname} SELECT * FROM moved"
            )
        )
    conn.execute(
        text(f"ALTER TABLE {qtable} ATTACH PARTITION {qname} FOR VALUES FROM ({lo}) TO ({hi})")
    )
    conn.execute(text(f"ALTER TABLE {qname} DROP CONSTRAINT {check}"))
    return True


def ensure_partitions(
    conn: Connection,
    premake: int,
    *,
    today: date | None = None,
    tables: Iterable[str] = RANGE_TABLES,
) -> list[str]:
    """DEFAULT plus the current month and the next ``premake`` months for each table.

    Idempotent and safe to run concurrently (an advisory lock serialises callers).
    Returns the names of partitions created.
    """
    _lock(conn)
    first = month_start(today or current_month())
    created: list[str] = []
    for table in tables:
        if create_default_partition(conn, table):
            created.append(default_partition_name(table))
        for offset in range(premake + 1):
            month = add_months(first, offset)
            if create_month_partition(conn, table, month):
                created.append(partition_name(table, month))
    return created


def list_month_partitions(conn: Connection, table: str) -> list[MonthPartition]:
    """``table``'s attached monthly partitions, oldest first."""
    found = []
    for name, bound in _attached_partitions(conn, table).items():
        match = _BOUND_RE.search(bound)
        if match:
            start = datetime.fromisoformat(match.group(1)).astimezone(UTC).date()
            end = datetime.fromisoformat(match.group(2)).astimezone(UTC).date()
            found.append(MonthPartition(table, name, start, end))
    return sorted(found, key=lambda p: p.start)


def coverage(conn: Connection, *, today: date | None = None) -> list[Coverage]:
    """Months covered ahead of the current one, and rows in DEFAULT, per table."""
    now = month_start(today or current_month())
    report = []
    for table in RANGE_TABLES:
        months = list_month_partitions(conn, table)
        default = _default_partition(conn, table)
        default_rows = 0
        if default is not None:
            default_rows = conn.execute(
                text(f"SELECT count(*) FROM {quote_ident(default)}")
            ).scalar_one()
        newest = months[-1].start if months else None
        ahead = (
            (newest.year - now.year) * 12 + newest.month - now.month if newest is not None else -1
        )
        report.append(
            Coverage(
                table=table,
                partitions=len(months),
                oldest_month=months[0].start if months else None,
                newest_month=newest,
                months_ahead=ahead,
                default_rows=int(default_rows),
            )
        )
    return report


def detach_month_partition(conn: Connection, table: str, month: date) -> bool:
    """Detach ``table``'s partition for ``month`` (kept as a standalone table)."""
    name = partition_name(table, month_start(month))
    if name not in _attached_partitions(conn, table):
        return False
    conn.execute(text(f"ALTER TABLE {quote_ident(table)} DETACH PARTITION {quote_ident(name)}"))
    return True


def drop_month_partition(conn: Connection, table: str, month: date) -> bool:
    """Detach (if attached) and drop ``table``'s partition for ``month``."""
    name = partition_name(table, month_start(month))
    detach_month_partition(conn, table, month)
    exists = conn.execute(text("SELECT to_regclass(:n)"), {"n": f"public.{name}"}).scalar()
    if exists is None:
        return False
    conn.execute(text(f"DROP TABLE {quote_ident(name)}"))
    return True


def retention_months(settings: Settings) -> dict[str, int]:
    return {
        "messages": settings.retention_months_messages,
        "events": settings.retention_months_events,
        "audit_log": settings.retention_months_audit,
    }


def apply_retention(
    conn: Connection,
    keep_months: Mapping[str, int],
    *,
    today: date | None = None,
    drop: bool = True,
) -> list[str]:
    """Detach (and drop unless ``drop=False``) partitions wholly older than the window.

    ``keep_months[table] = 12`` keeps the current month and the 11 before it.
    Returns the names of the partitions removed.
    """
    _lock(conn)
    now = month_start(today or current_month())
    removed = []
    for table, keep in keep_months.items():
        cutoff = add_months(now, -(keep - 1))
        for part in list_month_partitions(conn, table):
            if part.end <= cutoff:
                if drop:
                    drop_month_partition(conn, table, part.start)
                else:
                    detach_month_partition(conn, table, part.start)
                removed.append(part.name)
    return removed


def create_hash_partitions(conn: Connection, table: str, modulus: int) -> list[str]:
    """``table_p0 .. table_p{modulus-1}`` for a ``PARTITION BY HASH`` parent."""
    names = []
    for remainder in range(modulus):
        name = f"{table}_p{remainder}"
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {quote_ident(name)} PARTITION OF "
                f"{quote_ident(table)} FOR VALUES WITH (MODULUS {int(modulus)}, "
                f"REMAINDER {remainder})"
            )
        )
        names.append(name)
    return names
