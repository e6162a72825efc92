"""``tgfleet status`` reads at 80 columns and shows every column at 120.

The snapshot is built by hand with the widest values a fleet really has (10-digit bot
ids, long names and host names, a long migration error) and rendered into a recording
rich Console of that width, as the command renders it into the terminal.
"""

from __future__ import annotations

import io

from rich.console import Console

from tgfleet.ops.cli import BOT_COLUMNS, render_status
from tgfleet.ops.health import BotState, Problem, Snapshot
from tgfleet.platform.queues import QueueState

BOT_IDS = (7123456789, 6012345678, 5999999999)
QUEUES = ("updates", "sends", "maintenance", "analytics", "migration")
MIGRATION_ERROR = (
    'psycopg2.errors.UniqueViolation: duplicate key value violates unique constraint "pkey" '
    "(bot 7123456789, file users/42.json, record 17)"
)
PROBLEMS = (
    "bot 7123456789 (Matchmaking bot for the Berlin community): listener on "
    "sender-1.fleet.example.org silent for 600s",
    "queue updates: 1 waiting, the oldest for 700s",
    f"legacy migration of bot 7123456789 profiles: {MIGRATION_ERROR}",
)


def busy_snapshot() -> Snapshot:
    first = BotState(
        BOT_IDS[0],
        "Matchmaking bot for the Berlin community",
        "active",
        [1],
        listener_host="sender-1.fleet.example.org",
        listener_owner="l-1",
        heartbeat_age_s=3,
        lease_owner="l-1",
        lease_age_s=3,
        lease_ttl_s=27,
        last_update_age_s=5,
        updates_per_s=12.35,
        sends_per_s=29.98,
        flood_pause_s=17,
        outbox_backlog=12345,
        outbox_dead_24h=3,
        dead_updates_24h=2,
    )
    return Snapshot(
        at=0,
        bots=[
            first,
            BotState(BOT_IDS[1], "echo", "active", []),
            BotState(BOT_IDS[2], "old", "disabled", []),
        ],
        queues=[QueueState(name, i, 700.0 if i else None, None) for i, name in enumerate(QUEUES)],
        workers=["celery@worker-a.fleet.example.org", "celery@worker-b.fleet.example.org"],
        partitions=[
            {
                "table_name": name,
                "months_ahead": 3,
                "oldest_month": "2025-01-01",
                "newest_month": "2026-04-01",
                "default_rows": 42,
            }
            for name in ("messages", "events", "audit_log")
        ],
        migration=[
            {
                "bot_id": BOT_IDS[0],
                "component": "profiles",
                "state": "migrating",
                "records": 1234567,
                "complete": False,
                "idle_s": 4000.0,
                "error": MIGRATION_ERROR,
            }
        ],
        problems=[Problem(f"p{i}", text) for i, text in enumerate(PROBLEMS)],
    )


def rendered(width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    render_status(busy_snapshot(), console)
    return console.export_text()


def words(text: str) -> str:
    return " ".join(text.split())


def assert_readable(text: str, width: int) -> None:
    assert "…" not in text, text
    too_wide = [line for line in text.splitlines() if len(line.rstrip()) > width]
    assert not too_wide, text
    for bot_id in BOT_IDS:
        assert str(bot_id) in text
    for queue in QUEUES:
        assert f"\n{queue} " in text
    for problem in PROBLEMS:
        assert words(problem) in words(text), problem
    assert "celery@worker-b.fleet.example.org" in text
    assert "sender-1.fleet.example.org" in text


def test_at_80_columns_every_value_is_whole_and_what_is_left_out_is_named() -> None:
    # Given a busy fleet; When status renders at 80 columns
    text = rendered(80)
    # Then nothing is cut, the essentials are there, and the least important columns
    # are left out by name (the migration error wraps in its own column)
    assert_readable(text, 80)
    assert words(MIGRATION_ERROR) in words(text)
    assert "not shown at 80 columns: lease, last update, upd/s, send/s" in words(text)
    header = next(line for line in text.splitlines() if line.startswith("bot "))
    assert header.split()[:4] == ["bot", "status", "listener", "heartbeat"]


def test_at_120_columns_every_column_is_shown() -> None:
    # Given a busy fleet; When status renders at 120 columns
    text = rendered(120)
    # Then nothing is cut and no column is left out
    assert_readable(text, 120)
    assert "not shown" not in text
    for value in ("3s (27s left)", "12.35", "29.98", "17s", "12345", "1234567", "67m"):
        assert value in text, value
    bots_header = words(text.split("Bots", 1)[1].split("───", 1)[0])
    for column in BOT_COLUMNS:
        for word in column.header.split():
            assert word in bots_header, column.header


def test_when_redis_is_down_the_bots_show_what_postgresql_knows() -> None:
    # Given a snapshot taken while Redis was unreachable
    snap = busy_snapshot()
    snap.queues, snap.workers = [], None
    snap.unreachable = {"Redis": "cannot reach Redis at 127.0.0.1:6379/0 (connection refused)"}
    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    # When it is rendered
    render_status(snap, console)
    text = console.export_text()
    # Then the bots are listed with their listener unknown, the queues are said unknown
    assert all(str(bot_id) in text for bot_id in BOT_IDS)
    first_row = next(line for line in text.splitlines() if line.startswith(str(BOT_IDS[0])))
    assert "sender-1" not in first_row and " ? " in first_row
    assert "Queues and workers: not known, Redis cannot be reached" in words(text)
    assert "Partitions" in text
