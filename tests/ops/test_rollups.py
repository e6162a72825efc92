"""Analytics roll-ups: known facts give exact metrics; rolling a bucket up again changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from tgfleet.db import MetricBucket
from tgfleet.db.rollups import METRICS, rollup_range
from tgfleet.platform.settings import Settings

HOUR = datetime(2026, 3, 14, 9, tzinfo=UTC)


def seed(owner: Engine, bot: int) -> None:
    """One hour of a bot's life at HOUR (written as the superuser, with exact timestamps)."""
    at = HOUR + timedelta(minutes=10)
    with owner.begin() as conn:
        for n, (sender, latency_ms) in enumerate([(1, 100), (2, 200), (2, 300)]):
            conn.execute(
                text(
                    "INSERT INTO messages (bot_id, created_at, direction, chat_id, sender_id, "
                    "processed_at) VALUES (:b, :at, 'in', :s, :s, :at + :lat)"
                ),
                {
                    "b": bot,
                    "at": at + timedelta(seconds=n),
                    "s": sender,
                    "lat": timedelta(milliseconds=latency_ms),
                },
            )
        events = [
            ("new_user", 3),
            ("profile_updated", 1),
            ("profile_updated", 1),
            ("like", 2),
            ("like", 2),
            ("like", 2),
            ("match", 2),
            ("skip", 4),
        ]
        for kind, user in events:
            conn.execute(
                text("INSERT INTO events (bot_id, at, kind, user_id) VALUES (:b, :at, :k, :u)"),
                {"b": bot, "at": at, "k": kind, "u": user},
            )
        for status, when in [
            ("sent", at),
            ("sent", at),
            ("failed", at),
            ("dead", at),
            ("sent", HOUR + timedelta(hours=2)),
        ]:
            conn.execute(
                text(
                    "INSERT INTO outbox (bot_id, chat_id, text, status, sent_at, updated_at) "
                    "VALUES (:b, 1, 'x', CAST(:st AS outbox_status), "
                    "CASE WHEN :st = 'sent' THEN CAST(:w AS timestamptz) END, :w)"
                ),
                {"b": bot, "st": status, "w": when},
            )
        for error in ("FLOOD_WAIT_5", "FLOOD_WAIT_7", "RPCError: boom"):
            conn.execute(
                text(
                    "INSERT INTO audit_log (at, bot_id, table_name, op, row_key, new_values, "
                    "actor_role, login_role, txid) VALUES (:at, :b, 'outbox', 'UPDATE', '{}', "
                    "CAST(:nv AS jsonb), 'x', 'x', 1)"
                ),
                {"at": at, "b": bot, "nv": json.dumps({"last_error": error})},
            )


def metrics(owner: Engine, bot: int, bucket: str) -> list[dict[str, Any]]:
    with owner.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT bucket_start, {', '.join(METRICS)}, updated_at FROM bot_metrics "
                "WHERE bot_id = :b AND bucket = CAST(:k AS metric_bucket) ORDER BY bucket_start"
            ),
            {"b": bot, "k": bucket},
        )
        return [dict(r._mapping) for r in rows]


EXPECTED = {
    "messages_in": 3,
    "messages_out": 2,
    "new_users": 1,
    "active_users": 4,  # senders 1, 2 and event users 1, 2, 3, 4
    "profile_updates": 2,
    "likes": 3,
    "matches": 1,
    "sends_ok": 2,
    "sends_failed": 2,
    "flood_waits": 2,
    "latency_p50_ms": 200,
    "latency_p95_ms": 290,  # percentile_cont(0.95) of 100, 200, 300
}


def test_known_events_give_exact_metrics_and_a_rerun_changes_nothing(
    ops_db: Settings, ops_owner: Engine, make_ops_bot: Callable[..., int]
) -> None:
    # Given one hour of known facts for a bot, and a sent message two hours later
    bot = make_ops_bot()
    seed(ops_owner, bot)
    day = HOUR.replace(hour=0)
    # When the hours and the day are rolled up
    rollup_range(ops_db, MetricBucket.HOUR, day, day + timedelta(days=1))
    rollup_range(ops_db, MetricBucket.DAY, day, day + timedelta(days=1))
    # Then the hour holds exactly the expected values
    hours = metrics(ops_owner, bot, "hour")
    assert [h["bucket_start"] for h in hours] == [HOUR, HOUR + timedelta(hours=2)]
    assert {k: hours[0][k] for k in EXPECTED} == EXPECTED
    assert hours[1]["sends_ok"] == 1 and hours[1]["messages_in"] == 0
    # And the day adds both hours up (distinct users computed over the day)
    (daily,) = metrics(ops_owner, bot, "day")
    assert daily["bucket_start"] == day
    assert {k: daily[k] for k in EXPECTED} == EXPECTED | {"messages_out": 3, "sends_ok": 3}
    # When the same buckets are rolled up again
    again = rollup_range(ops_db, MetricBucket.HOUR, day, day + timedelta(days=1))
    # Then nothing is written: same rows, same updated_at
    assert again.written == 0
    assert metrics(ops_owner, bot, "hour") == hours
    assert metrics(ops_owner, bot, "day") == [daily]


def test_stats_cli_prints_the_days_and_plots_them(
    ops_db: Settings,
    ops_owner: Engine,
    make_ops_bot: Callable[..., int],
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> None:
    # Given a bot with rolled-up days
    bot = make_ops_bot()
    seed(ops_owner, bot)
    day = HOUR.replace(hour=0)
    for offset in (0, 1):
        with ops_owner.begin() as conn:  # a second, quieter day
            conn.execute(
                text("INSERT INTO events (bot_id, at, kind, user_id) VALUES (:b, :at, 'match', 9)"),
                {"b": bot, "at": HOUR + timedelta(days=1, minutes=offset)},
            )
    rollup_range(ops_db, MetricBucket.DAY, day, day + timedelta(days=2))
    env = {
        **subprocess_env,
        "DATABASE_URL": ops_db.database_url,
        "MIGRATE_DATABASE_URL": ops_db.owner_database_url,
        "TGFLEET_DB_ROLE_PREFIX": ops_db.db_role_prefix,
    }
    days = str((datetime.now(UTC) - day).days + 2)
    png = tmp_path / "stats.png"
    # When stats is asked for JSON and a plot
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tgfleet",
            "stats",
            "--bot",
            str(bot),
            "--days",
            days,
            "--json",
            "--plot",
            str(png),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it lists both days with their values and writes a PNG
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout[: done.stdout.rindex("]") + 1])
    assert [(r["day"], r["matches"], r["messages_in"]) for r in rows] == [
        ("2026-03-14", 1, 3),
        ("2026-03-15", 2, 0),
    ]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
