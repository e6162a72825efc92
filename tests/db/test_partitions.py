"""Partitions: per-bot pruning, idempotent scan-free monthly creation, DEFAULT, retention."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from tgfleet.db import owner_scope, session_scope
from tgfleet.db.partitions import (
    add_months,
    apply_retention,
    coverage,
    create_month_partition,
    ensure_partitions,
    list_month_partitions,
    month_start,
    partition_name,
)
from tgfleet.platform.settings import Settings


def _plan(session_or_conn: object, sql: str) -> str:
    rows = session_or_conn.execute(text(sql))  # type: ignore[attr-defined]
    return "\n".join(r[0] for r in rows)


def test_per_bot_query_scans_one_hash_partition(
    db_settings: Settings, make_bots: Callable[[int], list[int]]
) -> None:
    # Given a bot; When it plans a query filtered on its bot_id
    (bot_id,) = make_bots(1)
    with session_scope(db_settings, bot_id=bot_id) as session:
        plan = _plan(session, f"EXPLAIN SELECT * FROM conversations WHERE bot_id = {bot_id}")
        # and a query with no filter but row-level security's tenant
        runtime = _plan(
            session,
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM profiles",
        )
    # Then the planner keeps a single partition
    assert len(set(re.findall(r"on (conversations_p\d+)", plan))) == 1, plan
    # and the policy prunes at run time: one partition executed, the others never
    executed = {
        match.group(1)
        for line in runtime.splitlines()
        if "never executed" not in line and (match := re.search(r"on (profiles_p\d+)", line))
    }
    assert len(executed) == 1, runtime


def test_month_creation_is_idempotent_and_skips_the_validation_scan(
    db_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    month = date(2031, 5, 1)
    # Given no partition for May 2031; When it is created with DEBUG messages on
    # (SQLAlchemy's psycopg2 dialect logs server notices on this logger)
    caplog.set_level(logging.INFO, logger="sqlalchemy.dialects.postgresql")
    with owner_scope(db_settings) as conn:
        conn.execute(text("SET LOCAL client_min_messages = debug1"))
        first = create_month_partition(conn, "messages", month)
        conn.execute(text("SET LOCAL client_min_messages = notice"))
        notices = [r.getMessage() for r in caplog.records]
        second = create_month_partition(conn, "messages", month)
    # Then the first call creates it, the second does nothing
    assert (first, second) == (True, False)
    # and ATTACH proved the bounds from the CHECK instead of scanning the table
    name = partition_name("messages", month)
    assert any(f'partition constraint for table "{name}" is implied' in n for n in notices), notices
    # (the only check of the new table ran while it was still empty: ADD CONSTRAINT)
    assert sum(f'verifying table "{name}"' in n for n in notices) == 1, notices
    with owner_scope(db_settings) as conn:
        (part,) = [p for p in list_month_partitions(conn, "messages") if p.name == name]
        assert (part.start, part.end) == (month, date(2031, 6, 1))
        # and the temporary CHECK is gone
        checks = conn.execute(
            text("SELECT count(*) FROM pg_constraint WHERE conname = :c"), {"c": f"{name}_bounds"}
        ).scalar()
        assert checks == 0


def test_rows_in_default_are_reported_then_moved_into_the_new_month(
    db_settings: Settings, make_bots: Callable[[int], list[int]], owner_engine: Engine
) -> None:
    # Given a message dated in a month with no partition (lands in DEFAULT)
    (bot_id,) = make_bots(1)
    with session_scope(db_settings, bot_id=bot_id) as session:
        session.execute(
            text(
                "INSERT INTO messages (bot_id, direction, chat_id, text, created_at) "
                "VALUES (:b, 'in', 1, 'future', '2033-03-15T12:00:00Z')"
            ),
            {"b": bot_id},
        )
    with owner_scope(db_settings) as conn:
        before = {c.table: c for c in coverage(conn)}
    assert before["messages"].default_rows == 1

    # When the month's partition is created
    with owner_scope(db_settings) as conn:
        assert create_month_partition(conn, "messages", date(2033, 3, 1))
        after = {c.table: c for c in coverage(conn)}

    # Then DEFAULT is empty again and the row lives in the new partition
    assert after["messages"].default_rows == 0
    with owner_engine.connect() as conn:
        moved = conn.execute(text("SELECT count(*) FROM messages_y2033m03")).scalar()
    assert moved == 1


def test_ensure_partitions_covers_premake_months_and_is_idempotent(
    db_settings: Settings,
) -> None:
    today = date(2029, 12, 10)
    with owner_scope(db_settings) as conn:
        created = ensure_partitions(conn, 2, today=today)
        again = ensure_partitions(conn, 2, today=today)
        report = {c.table: c for c in coverage(conn, today=today)}
    assert "events_y2030m02" in created and "audit_log_y2029m12" in created
    assert again == []
    assert all(report[t].months_ahead >= 2 for t in ("messages", "events", "audit_log"))


def test_retention_drops_months_wholly_outside_the_window(db_settings: Settings) -> None:
    # Given event partitions for Jan..Apr 2020
    with owner_scope(db_settings) as conn:
        for offset in range(4):
            create_month_partition(conn, "events", add_months(date(2020, 1, 1), offset))
        # When keeping 2 months as of April 2020
        removed = apply_retention(conn, {"events": 2}, today=date(2020, 4, 20))
        left = [p.start for p in list_month_partitions(conn, "events") if p.start.year == 2020]
    # Then Jan and Feb are gone, Mar and Apr stay
    assert removed == ["events_y2020m01", "events_y2020m02"]
    assert left == [date(2020, 3, 1), date(2020, 4, 1)]


def test_admin_reads_coverage_function_bot_cannot(
    db_settings: Settings, make_bots: Callable[[int], list[int]]
) -> None:
    (bot_id,) = make_bots(1)
    with session_scope(db_settings, role="admin") as session:
        reported = session.execute(text("SELECT * FROM partition_coverage()")).all()
    with owner_scope(db_settings) as conn:
        computed = coverage(conn)
    # the SQL function (for `tgfleet status`) and the Python report agree
    assert sorted(tuple(row) for row in reported) == sorted(
        (c.table, c.partitions, c.oldest_month, c.newest_month, c.months_ahead, c.default_rows)
        for c in computed
    )
    assert {row[0] for row in reported} == {"messages", "events", "audit_log"}
    try:
        with session_scope(db_settings, bot_id=bot_id) as session:
            session.execute(text("SELECT * FROM partition_coverage()"))
    except Exception as exc:
        assert "permission denied" in str(exc)
    else:
        raise AssertionError("the bot role could run partition_coverage()")


@given(st.dates(min_value=date(1971, 1, 1), max_value=date(2400, 1, 1)), st.integers(-600, 600))
def test_add_months_lands_on_a_month_start(day: date, count: int) -> None:
    month = add_months(month_start(day), count)
    assert month.day == 1
    assert (month.year * 12 + month.month) - (day.year * 12 + day.month) == count
