"""Partition maintenance: premake, idempotence, retention, DEFAULT rows, concurrent ingest."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text

from tests.support.databases import superuser_engine
from tests.support.waiting import wait_until
from tgfleet.db import owner_scope
from tgfleet.db import partitions as parts
from tgfleet.db.maintenance import run_partition_maintenance
from tgfleet.db.session import session_scope
from tgfleet.ops.alerts import alert_default_rows
from tgfleet.platform.settings import Settings

TABLES = tuple(parts.RANGE_TABLES)
#: Ingest's inserts measured before maintenance starts, and again after it ends.
INSERTS_AROUND = 200


def months_of(settings: Settings, table: str) -> list[date]:
    with owner_scope(settings) as conn:
        return [p.start for p in parts.list_month_partitions(conn, table)]


def coverage(settings: Settings) -> dict[str, parts.Coverage]:
    with owner_scope(settings) as conn:
        return {c.table: c for c in parts.coverage(conn)}


def add_bot(settings: Settings, admins: list[int] | None = None) -> int:
    bot_id = int(time.time_ns() % 10**12) + 10**12
    with session_scope(settings, role="admin") as s:
        s.execute(
            text("INSERT INTO bots (id, name, admin_chat_ids) VALUES (:id, 'b', :a)"),
            {"id": bot_id, "a": admins or []},
        )
    return bot_id


def test_one_run_makes_exactly_premake_months_and_a_second_run_nothing(
    make_database: Callable[..., Settings],
) -> None:
    # Given a database whose migration made 2 months ahead, and premake raised to 4
    db = make_database(partition_premake=2).model_copy(update={"partition_premake": 4})
    this_month = parts.current_month()
    # When maintenance runs
    first = run_partition_maintenance(db)
    # Then each table is covered exactly 4 months ahead, months +3 and +4 were created
    expected = {
        parts.partition_name(t, parts.add_months(this_month, n)) for t in TABLES for n in (3, 4)
    }
    assert set(first.created) == expected
    assert all(c.months_ahead == 4 and c.default_rows == 0 for c in coverage(db).values())
    # And a second run creates, removes and moves nothing
    second = run_partition_maintenance(db)
    assert (second.created, second.removed, second.moved, second.deferred) == ([], [], {}, [])


def test_after_a_long_outage_it_catches_up_without_making_what_retention_drops(
    make_database: Callable[..., Settings],
) -> None:
    # Given a database last maintained 40 months ago (retention: 12, 24 and 36 months)
    db = make_database(partition_premake=2)
    old = {t: months_of(db, t) for t in TABLES}
    today = parts.add_months(parts.current_month(), 40)
    # When maintenance runs "today"
    report = run_partition_maintenance(db, today=today)
    # Then only today's month and the premake months exist: no gap month was created
    wanted = [parts.add_months(today, n) for n in range(3)]
    for table in TABLES:
        assert months_of(db, table) == wanted, table
    assert sorted(report.created) == sorted(
        parts.partition_name(t, m) for t in TABLES for m in wanted
    )
    # And every old month went (all are past retention), none was kept attached
    assert sorted(report.removed) == sorted(
        parts.partition_name(t, m) for t in TABLES for m in old[t]
    )


def test_retention_never_drops_the_last_partition(make_database: Callable[..., Settings]) -> None:
    # Given partitions that are all past retention and no premake step
    db = make_database(partition_premake=2)
    newest = months_of(db, "messages")[-1]
    # When only retention runs, far in the future
    report = run_partition_maintenance(
        db, today=parts.add_months(parts.current_month(), 60), steps=("retention",)
    )
    # Then every table keeps its newest month and lost the others
    for table in TABLES:
        assert months_of(db, table) == [newest], table
    assert len(report.removed) == len(TABLES) * 2


def test_retention_can_keep_detached_tables(make_database: Callable[..., Settings]) -> None:
    db = make_database(partition_premake=1).model_copy(update={"retention_keep_detached": True})
    first = months_of(db, "events")[0]
    run_partition_maintenance(db, today=parts.add_months(parts.current_month(), 30))
    with owner_scope(db) as conn:
        kept = conn.execute(
            text("SELECT to_regclass(:n)"), {"n": parts.partition_name("events", first)}
        ).scalar()
    assert first not in months_of(db, "events")
    assert kept is not None, "a detached month should stay as a plain table"


def test_rows_in_default_are_moved_out_in_batches_and_admins_told(
    make_database: Callable[..., Settings], ops_app_factory: Callable[[Settings], object]
) -> None:
    # Given rows of a month without a partition (in DEFAULT), some past retention
    db = make_database(partition_premake=1).model_copy(update={"maintenance_batch_rows": 7})
    ops_app_factory(db)
    bot = add_bot(db, admins=[4242])
    gap = parts.add_months(parts.current_month(), -2)
    ancient = parts.add_months(parts.current_month(), -14)  # messages keep 12 months
    gap_at = datetime(gap.year, gap.month, 3, tzinfo=UTC)
    ancient_at = datetime(ancient.year, ancient.month, 5, tzinfo=UTC)
    with session_scope(db, bot_id=bot) as s:
        for n in range(30):
            s.execute(
                text("INSERT INTO events (bot_id, at, kind, user_id) VALUES (:b, :at, 'like', :u)"),
                {"b": bot, "at": gap_at + timedelta(minutes=n), "u": n},
            )
        for n in range(10):
            s.execute(
                text(
                    "INSERT INTO messages (bot_id, created_at, direction, chat_id) "
                    "VALUES (:b, :at, 'in', 1)"
                ),
                {"b": bot, "at": ancient_at + timedelta(minutes=n)},
            )
    assert coverage(db)["events"].default_rows == 30
    # When maintenance runs
    report = run_partition_maintenance(db)
    # Then the DEFAULT partitions are empty, the gap month exists and holds the 30 rows
    cov = coverage(db)
    assert cov["events"].default_rows == 0 and cov["messages"].default_rows == 0
    gap_name = parts.partition_name("events", gap)
    assert report.moved == {gap_name: 30}
    with owner_scope(db) as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {gap_name}")).scalar() == 30
        # and no partition was made for the month retention does not keep
        assert (
            conn.execute(
                text("SELECT to_regclass(:n)"), {"n": parts.partition_name("messages", ancient)}
            ).scalar()
            is None
        )
    assert report.expired == {f"messages:{ancient.isoformat()}": 10}
    assert report.default_rows_by_bot == {("events", bot): 30, ("messages", bot): 10}
    # And the bot's admin chat gets one notice saying so
    alert_default_rows(db, report)
    with session_scope(db, bot_id=bot) as s:
        notices = s.execute(text("SELECT chat_id, text FROM outbox WHERE bot_id = :b"), {"b": bot})
        rows = notices.all()
    assert len(rows) == 1 and rows[0].chat_id == 4242 and "DEFAULT" in rows[0].text


def test_ingest_sees_no_errors_while_maintenance_runs(
    make_database: Callable[..., Settings],
) -> None:
    # Given an ingest-like load: single-row inserts of inbound messages, one per transaction
    db = make_database(partition_premake=2).model_copy(update={"maintenance_batch_rows": 500})
    bot = add_bot(db)
    gap = parts.add_months(parts.current_month(), -1)
    with superuser_engine(db) as engine, engine.begin() as conn:
        # 3000 rows in DEFAULT for maintenance to move
        conn.execute(
            text(
                "INSERT INTO messages (bot_id, created_at, direction, chat_id) "
                "SELECT :b, :at + n * interval '1 second', 'in', n FROM generate_series(1, 3000) n"
            ),
            {"b": bot, "at": datetime(gap.year, gap.month, 2, tzinfo=UTC)},
        )
    latencies: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def ingest() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()
            try:
                with session_scope(db, bot_id=bot) as s:
                    s.execute(
                        text(
                            "INSERT INTO messages (bot_id, direction, chat_id, text) "
                            "VALUES (:b, 'in', :c, 'hi')"
                        ),
                        {"b": bot, "c": n},
                    )
            except BaseException as exc:
                errors.append(exc)
            latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=ingest) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_until(
        lambda: len(latencies) >= INSERTS_AROUND,
        30,
        f"{INSERTS_AROUND} inserts before maintenance",
        poll=0.01,
        detail=lambda: f"errors: {errors[:3]}",
    )
    baseline = len(latencies)
    # When maintenance moves DEFAULT rows, premakes and applies retention meanwhile
    started = time.perf_counter()
    report = run_partition_maintenance(
        db.model_copy(update={"partition_premake": 4, "retention_months_audit": 1})
    )
    took = time.perf_counter() - started
    finished = len(latencies)
    wait_until(
        lambda: len(latencies) >= finished + INSERTS_AROUND,
        30,
        f"{INSERTS_AROUND} inserts after maintenance",
        poll=0.01,
        detail=lambda: f"errors: {errors[:3]}",
    )
    stop.set()
    for thread in threads:
        thread.join()
    # Then ingest saw no error, and maintenance did its work
    assert errors == []
    assert report.moved == {parts.partition_name("messages", gap): 3000}
    before = sorted(latencies[:baseline])
    during = sorted(latencies[baseline:])
    p99 = during[int(len(during) * 0.99) - 1] * 1000
    print(
        f"\ningest during maintenance ({took:.2f}s): {len(during)} inserts, "
        f"p50 {statistics.median(during) * 1000:.1f} ms, p99 {p99:.1f} ms, "
        f"max {during[-1] * 1000:.1f} ms; before it: p99 "
        f"{before[int(len(before) * 0.99) - 1] * 1000:.1f} ms"
    )
    assert p99 < db.maintenance_lock_timeout_ms * 2
