"""``tgfleet stats``: a bot's rolled-up days as JSON, and a plot of them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from tests.support.rollups import HOUR, seed
from tgfleet.db import MetricBucket
from tgfleet.db.rollups import rollup_range
from tgfleet.platform.settings import Settings


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
