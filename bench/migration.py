"""Benchmark: legacy JSON -> PostgreSQL migration throughput and memory.

    .venv/bin/python bench/migration.py [--quick] [--keep]

Starts its own PostgreSQL + Redis (DevServices in a temporary folder) and migrates the
schema, then:

1. generates ~1M message records (10 bots; --quick: 100k) and times the conversations
   migration (validate, COPY to staging, insert, checkpoint per batch): rows/s;
2. exports the same rows, in the order the store holds them (bot, chat, message id), and
   times ``psql \\copy`` of them into the same ``messages`` table in the same run: the
   baseline; ``copy_ratio`` = migration rows/s / copy rows/s. The same rows sorted by date
   (one partition after the other, the easiest order for PostgreSQL) are timed too and
   reported as ``copy_sorted_rows_per_s``;
3. migrates one conversation file of >= 1 GB (--quick: 100 MB) in a child process and
   reports its peak RSS (goal: flat, <= 300 MB).

The last line is one JSON object:
{"bench": "migration", "rows_per_s": ..., "copy_ratio": ..., "peak_rss_mb": ...}
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, text  # noqa: E402

from tgfleet.db.migrate import upgrade_database  # noqa: E402
from tgfleet.db.session import dispose_engines, sqlalchemy_url  # noqa: E402
from tgfleet.dev.services import DevServices  # noqa: E402
from tgfleet.legacy.engine import DEFAULT_BATCH_SIZE  # noqa: E402
from tgfleet.legacy.format import Component  # noqa: E402
from tgfleet.legacy.generate import generate_store, write_big_conversation  # noqa: E402
from tgfleet.legacy.lifecycle import run_until_idle, start  # noqa: E402
from tgfleet.platform.settings import Settings, load_settings  # noqa: E402

COLUMNS = "bot_id, created_at, direction, chat_id, sender_id, tg_message_id, text, processed_at"
SOURCE_ORDER = "bot_id, chat_id, tg_message_id"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def migrate(settings: Settings, root: Path, batch_size: int) -> tuple[int, float]:
    start(settings, root, Component.CONVERSATIONS)
    began = time.perf_counter()
    total = run_until_idle(settings, root, Component.CONVERSATIONS, batch_size=batch_size)
    return total.inserted, time.perf_counter() - began


def psql_copy(services: DevServices, workdir: Path, order: str) -> tuple[int, float]:
    """Export the migrated rows ``ORDER BY order``, empty the table, and time ``\\copy``
    of them back in."""
    state = services.load_state()
    psql = [f"{state.pg_bin}/psql", "-h", "127.0.0.1", "-p", str(state.pg_port),
            "-U", "postgres", "-d", "tgfleet", "-v", "ON_ERROR_STOP=1", "-qAt"]  # fmt: skip
    dump = workdir / "messages.copy"
    query = f"SELECT {COLUMNS} FROM messages ORDER BY {order}"
    subprocess.run([*psql, "-c", f"\\copy ({query}) TO '{dump}'"], check=True)
    rows = sum(1 for _ in dump.open("rb"))
    subprocess.run([*psql, "-c", "TRUNCATE messages"], check=True)
    began = time.perf_counter()
    subprocess.run([*psql, "-c", f"\\copy messages ({COLUMNS}) FROM '{dump}'"], check=True)
    return rows, time.perf_counter() - began


def peak_rss_child(env: dict[str, str], root: Path) -> tuple[float, int, float]:
    """Migrate ``root`` in a child process; (peak RSS MB, rows, seconds)."""
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(root)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    seconds = time.perf_counter() - began
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak_kb / 1024, int(json.loads(out.strip().splitlines()[-1])["rows"]), seconds


def big_file_run(root: Path, env: dict[str, str], messages: int) -> dict[str, float]:
    """Write one conversation file of ``messages`` 1 KB messages and migrate it in a child
    process: its size, rows/s and the child's peak RSS."""
    bot_id, user_id = 7_100_000_001, 123_456_789
    path = root / str(bot_id) / "conversations" / f"{user_id}.json"
    path.parent.mkdir(parents=True)
    log(f"writing one conversation file of {messages:,} messages ...")
    size = write_big_conversation(
        path, bot_id=bot_id, user_id=user_id, messages=messages, text_chars=1_050
    )
    log(f"  {size / 2**30:.2f} GiB; migrating it in a child process ...")
    peak_mb, rows, seconds = peak_rss_child(env, root)
    log(f"  {rows:,} rows in {seconds:.1f} s, peak RSS {peak_mb:.0f} MB")
    return {
        "peak_rss_mb": round(peak_mb, 1),
        "gib": round(size / 2**30, 2),
        "rows_per_s": round(rows / seconds),
    }


def child(root: Path) -> None:
    settings = load_settings()
    start(settings, root, Component.CONVERSATIONS)
    total = run_until_idle(settings, root, Component.CONVERSATIONS, batch_size=DEFAULT_BATCH_SIZE)
    print(json.dumps({"rows": total.inserted}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows and a 100 MB file")
    parser.add_argument("--keep", action="store_true", help="leave the services running")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--skip-rss", action="store_true", help="skip the big-file part (3.)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0

    users_per_bot = 200 if args.quick else 2_000
    big_messages = 90_000 if args.quick else 950_000
    with tempfile.TemporaryDirectory(prefix="tgfleet-bench-") as tmp:
        work = Path(tmp)
        services = DevServices(work / "services")
        services.up()
        try:
            env = services.env()
            settings = load_settings(**env)
            upgrade_database(settings)

            log(f"generating 10 bots x {users_per_bot} users x ~50 messages ...")
            store = work / "store"
            report = generate_store(store, bots=10, users=users_per_bot, messages=50, seed=3)
            records = report.tally[Component.CONVERSATIONS].records
            log(f"  {records:,} message records, {report.bytes_written / 1e6:.0f} MB")
            rows, seconds = migrate(settings, store, args.batch_size)
            rows_per_s = rows / seconds
            log(f"migrate-json run: {rows:,} rows in {seconds:.1f} s = {rows_per_s:,.0f} rows/s")

            # The baseline loads the same rows in the same order as the store has them
            # (chat by chat); table order (partition by partition) is reported beside it.
            copy_rows, copy_seconds = psql_copy(services, work, SOURCE_ORDER)
            copy_per_s = copy_rows / copy_seconds
            log(
                f"psql \\copy:        {copy_rows:,} rows in {copy_seconds:.1f} s = "
                f"{copy_per_s:,.0f} rows/s (store order)"
            )
            sorted_rows, sorted_seconds = psql_copy(services, work, "created_at")
            sorted_per_s = sorted_rows / sorted_seconds
            log(
                f"psql \\copy:        {sorted_rows:,} rows in {sorted_seconds:.1f} s = "
                f"{sorted_per_s:,.0f} rows/s (sorted by month)"
            )

            owner = create_engine(sqlalchemy_url(settings.owner_database_url))
            with owner.begin() as conn:
                conn.execute(text("TRUNCATE messages, conversations, migration_checkpoints"))
            owner.dispose()
            dispose_engines()

            big: dict[str, float] = {}
            if not args.skip_rss:
                big = big_file_run(work / "big", {**os.environ, **env}, big_messages)
        finally:
            if not args.keep:
                services.down()
    print(
        json.dumps(
            {
                "bench": "migration",
                "rows_per_s": round(rows_per_s),
                "copy_ratio": round(rows_per_s / copy_per_s, 3),
                "peak_rss_mb": big.get("peak_rss_mb"),
                "copy_rows_per_s": round(copy_per_s),
                "copy_sorted_rows_per_s": round(sorted_per_s),
                "rows": rows,
                "big_file_gib": big.get("gib"),
                "big_file_rows_per_s": big.get("rows_per_s"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
