"""Partition maintenance, as Beat runs it: premake, retention, rows out of DEFAULT.

``run_partition_maintenance(settings)`` does, for every monthly table:

1. **DEFAULT rows**: rows that landed in ``<table>_default`` (a month had no partition)
   are moved, in committed batches of ``TGFLEET_MAINTENANCE_BATCH_ROWS``, into a
   standalone table for their month, which is then attached (the last few rows move in
   the attaching transaction). Rows of months retention no longer keeps are deleted
   in batches (or, with ``TGFLEET_RETENTION_KEEP_DETACHED``, moved into that month's
   detached table): no partition is created only for retention to drop it.
2. **Premake**: the current month and the next ``TGFLEET_PARTITION_PREMAKE`` months.
3. **Retention**: months wholly older than the table's window are detached, then dropped
   (or kept as plain tables). The newest partition is never removed.

The run holds a session advisory lock (a second run at the same time returns at once,
``skipped``), and every step is its own short transaction with ``lock_timeout``
(``TGFLEET_MAINTENANCE_LOCK_TIMEOUT_MS``): DDL that cannot get its table lock quickly gives
up instead of making ingest queue behind it, and the step is retried at the next run.

Why raw SQL: partition DDL and batch moves by ``ctid`` have no ORM form (see
``tgfleet.db.partitions``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from tgfleet.db import partitions as parts
from tgfleet.db.security import quote_ident
from tgfleet.db.session import get_engine
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

RUN_LOCK = "tgfleet.partitions.maintenance-run"
#: Serialises with every other partition DDL (``tgfleet.db.partitions``' own lock key).
DDL_LOCK = "tgfleet.partitions"
LOCK_NOT_AVAILABLE = "55P03"
STEP_ATTEMPTS = 3


@dataclass
class PartitionReport:
    """What one maintenance run did."""

    skipped: bool = False
    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: Rows moved out of DEFAULT, per destination table.
    moved: dict[str, int] = field(default_factory=dict)
    #: Rows found in DEFAULT past retention (deleted, or kept in a detached table).
    expired: dict[str, int] = field(default_factory=dict)
    #: (table, bot id) -> rows that were found in DEFAULT (for admin alerts).
    default_rows_by_bot: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Steps that could not get their locks within lock_timeout; retried next run.
    deferred: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "skipped": self.skipped,
            "created": self.created,
            "removed": self.removed,
            "moved": self.moved,
            "expired": self.expired,
            "deferred": self.deferred,
            "default_rows": sum(self.default_rows_by_bot.values()),
        }


STEPS = ("default", "premake", "retention")


def run_partition_maintenance(
    settings: Settings, *, today: date | None = None, steps: Sequence[str] = STEPS
) -> PartitionReport:
    """One maintenance pass over every monthly table (see the module docstring);
    ``steps`` picks a subset, in that order."""
    report = PartitionReport()
    engine = get_engine(settings, owner=True)
    with engine.connect() as conn:
        got = conn.execute(
            text("SELECT pg_try_advisory_lock(hashtext(:key))"), {"key": RUN_LOCK}
        ).scalar()
        conn.commit()
        if not got:
            log.info("partition maintenance already running elsewhere: skipped")
            report.skipped = True
            return report
        try:
            run = _Run(conn, settings, parts.month_start(today or parts.current_month()), report)
            actions = {
                "default": run.move_default_rows,
                "premake": run.premake,
                "retention": run.retention,
            }
            for table in parts.RANGE_TABLES:
                for name in STEPS:
                    if name in steps:
                        actions[name](table)
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": RUN_LOCK})
            conn.commit()
    log.info(
        "partition maintenance: created %d, removed %d, moved %d, expired %d, deferred %d",
        len(report.created),
        len(report.removed),
        sum(report.moved.values()),
        sum(report.expired.values()),
        len(report.deferred),
    )
    return report


class _Run:
    def __init__(
        self, conn: Connection, settings: Settings, month: date, report: PartitionReport
    ) -> None:
        self.conn = conn
        self.settings = settings
        self.month = month
        self.report = report
        self.keep = parts.retention_months(settings)
        self.batch = settings.maintenance_batch_rows

    # -- plumbing ----------------------------------------------------------------------
    def step(self, what: str, action: Callable[[Connection], T]) -> T | None:
        """``action`` in its own transaction as the owner, under lock_timeout; None if it
        could not get its locks after a few tries (recorded in ``deferred``)."""
        for attempt in range(1, STEP_ATTEMPTS + 1):
            try:
                with self.conn.begin():
                    self.conn.execute(
                        text(
                            "SELECT set_config('role', :role, true), "
                            "set_config('lock_timeout', :timeout, true), "
                            "pg_advisory_xact_lock(hashtext(:ddl))"
                        ),
                        {
                            "role": self.settings.role("super_admin"),
                            "timeout": f"{self.settings.maintenance_lock_timeout_ms}ms",
                            "ddl": DDL_LOCK,
                        },
                    )
                    return action(self.conn)
            except OperationalError as exc:
                if getattr(exc.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
                    raise
                log.warning("%s: lock not available (attempt %d)", what, attempt)
                time.sleep(0.1 * attempt)
        self.report.deferred.append(what)
        return None

    def cutoff(self, table: str) -> date:
        """The oldest month ``table`` keeps."""
        return parts.add_months(self.month, -(self.keep[table] - 1))

    # -- 1. rows in DEFAULT --------------------------------------------------------------
    def move_default_rows(self, table: str) -> None:
        default = parts.default_partition_name(table)
        found = self.step(f"inspect {default}", partial(_default_contents, table=table))
        months: dict[date, int] = {}
        for month, bot_id, count in found or []:
            months[month] = months.get(month, 0) + int(count)
            key = (table, int(bot_id))
            self.report.default_rows_by_bot[key] = (
                self.report.default_rows_by_bot.get(key, 0) + count
            )
        for month, count in sorted(months.items()):
            log.warning("%d rows of %s for %s sit in %s", count, table, month, default)
            if month < self.cutoff(table):
                self._expire_default_month(table, month)
            else:
                self._move_default_month(table, month)

    def _batch_statement(self, table: str, month: date, target: str | None) -> str:
        column = quote_ident(parts.RANGE_TABLES[table])
        lo = f"'{month.isoformat()} 00:00:00+00'"
        hi = f"'{parts.add_months(month, 1).isoformat()} 00:00:00+00'"
        default = quote_ident(parts.default_partition_name(table))
        picked = (
            f"DELETE FROM {default} WHERE ctid IN (SELECT ctid FROM {default} "
            f"WHERE {column} >= {lo} AND {column} < {hi} LIMIT {int(self.batch)})"
        )
        if target is None:
            return picked
        return (
            f"WITH moved AS ({picked} RETURNING *) INSERT INTO {quote_ident(target)} "
            "SELECT * FROM moved"
        )

    def _drain(self, what: str, statement: str) -> int:
        """Run ``statement`` in committed batches until it moves fewer than a batch."""
        total = 0
        while True:
            moved = self.step(what, lambda c: c.execute(text(statement)).rowcount)
            if moved is None:
                return total
            total += int(moved)
            if moved < self.batch:
                return total

    def _standalone(self, table: str, month: date) -> str:
        name = parts.partition_name(table, month)
        self.step(
            f"create {name}",
            lambda c: c.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {quote_ident(name)} (LIKE {quote_ident(table)} "
                    "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES "
                    "INCLUDING STORAGE INCLUDING COMMENTS)"
                )
            ),
        )
        return name

    def _move_default_month(self, table: str, month: date) -> None:
        name = self._standalone(table, month)
        moved = self._drain(f"move rows into {name}", self._batch_statement(table, month, name))
        # Attaching moves whatever arrived meanwhile, in the same short transaction.
        attach = partial(parts.create_month_partition, table=table, month=month)
        if self.step(f"attach {name}", attach):
            self.report.created.append(name)
        self.report.moved[name] = self.report.moved.get(name, 0) + moved
        log.warning("moved %d rows of %s out of DEFAULT into %s", moved, table, name)

    def _expire_default_month(self, table: str, month: date) -> None:
        target = None
        if self.settings.retention_keep_detached:
            target = self._standalone(table, month)
        done = self._drain(
            f"expire {table} rows of {month} in DEFAULT",
            self._batch_statement(table, month, target),
        )
        key = f"{table}:{month.isoformat()}"
        self.report.expired[key] = self.report.expired.get(key, 0) + done

    # -- 2. premake ------------------------------------------------------------------------
    def premake(self, table: str) -> None:
        if self.step(f"default of {table}", lambda c: parts.create_default_partition(c, table)):
            self.report.created.append(parts.default_partition_name(table))
        existing = {p.start for p in parts.list_month_partitions(self.conn, table)}
        self.conn.rollback()
        for offset in range(self.settings.partition_premake + 1):
            month = parts.add_months(self.month, offset)
            if month in existing:
                continue
            name = parts.partition_name(table, month)
            create = partial(parts.create_month_partition, table=table, month=month)
            if self.step(f"create {name}", create):
                self.report.created.append(name)

    # -- 3. retention ----------------------------------------------------------------------
    def retention(self, table: str) -> None:
        months = parts.list_month_partitions(self.conn, table)
        self.conn.rollback()
        cutoff = self.cutoff(table)
        old = [p for p in months if p.end <= cutoff]
        if old and len(old) == len(months):
            old = old[:-1]  # never the last partition: the table would only have DEFAULT
        drop = not self.settings.retention_keep_detached
        for part in old:
            remove = parts.drop_month_partition if drop else parts.detach_month_partition
            if self.step(f"remove {part.name}", partial(remove, table=table, month=part.start)):
                self.report.removed.append(part.name)


def _default_contents(conn: Connection, table: str) -> list[tuple[date, int, int]]:
    """(month, bot id, rows) found in ``table``'s DEFAULT partition."""
    default = parts.default_partition_name(table)
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": f"public.{default}"}).scalar() is None:
        return []
    column = quote_ident(parts.RANGE_TABLES[table])
    rows = conn.execute(
        text(
            f"SELECT (date_trunc('month', {column} AT TIME ZONE 'UTC'))::date, bot_id, count(*) "
            f"FROM {quote_ident(default)} GROUP BY 1, 2"
        )
    )
    return [(month, int(bot_id), int(count)) for month, bot_id, count in rows]
