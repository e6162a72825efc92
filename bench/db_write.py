"""Benchmark: message inserts through session_scope vs. a plain table, same run.

Measured: rows/s inserting ``messages`` through ``session_scope`` (role + tenant set per
transaction, row-level security WITH CHECK, monthly range partitions), against the same
rows into a plain unpartitioned copy of the table (same columns and indexes, no RLS, no
triggers) through the same login and pool. Both sides use SQLAlchemy Core ``insert()``
with a list of rows (insertmanyvalues batching) and alternate round by round; the
figures come from the median round of each side.

Run: ``.venv/bin/python bench/db_write.py`` (starts its own PostgreSQL + Redis under a
temporary folder and stops them at the end). The last line is one JSON object.
Goal: overhead <= 1.3x.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, Table, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from tgfleet.db import Bot, Message, dispose_engines, get_engine, session_scope, upgrade_database
from tgfleet.dev.services import DevServices
from tgfleet.platform.settings import Settings, load_settings

PLAIN_TABLE = "bench_plain_messages"
#: Core tables on both sides, so both take the same insertmanyvalues path.
MESSAGES: Table = Message.__table__  # type: ignore[assignment]


def _rows(bot_id: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "bot_id": bot_id,
            "created_at": now,
            "direction": "in" if rng.random() < 0.5 else "out",
            "chat_id": rng.randrange(1, 10_000),
            "sender_id": rng.randrange(1, 10_000),
            "tg_message_id": rng.randrange(1, 1_000_000),
            "text": "hello " * rng.randrange(1, 20),
            "payload": {"k": rng.randrange(1000)},
        }
        for _ in range(count)
    ]


def _setup(settings: Settings, bots: list[int]) -> Table:
    owner = get_engine(settings, owner=True)
    login = make_url(settings.database_url).username
    with owner.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {PLAIN_TABLE} (LIKE messages INCLUDING DEFAULTS "
                "INCLUDING IDENTITY INCLUDING INDEXES)"
            )
        )
        conn.execute(text(f'GRANT INSERT ON {PLAIN_TABLE} TO "{login}"'))
    with session_scope(settings, role="admin") as session:
        session.add_all([Bot(id=b, name=f"bench {b}") for b in bots])
    return MESSAGES.to_metadata(MetaData(), name=PLAIN_TABLE)


def _round_rls(settings: Settings, batches: list[tuple[int, list[dict[str, Any]]]]) -> float:
    start = time.perf_counter()
    for bot_id, rows in batches:
        with session_scope(settings, bot_id=bot_id, correlation_id="bench") as session:
            session.execute(insert(MESSAGES), rows)
    return time.perf_counter() - start


def _round_plain(
    engine: Engine, table: Table, batches: list[tuple[int, list[dict[str, Any]]]]
) -> float:
    start = time.perf_counter()
    for _bot_id, rows in batches:
        with Session(engine) as session, session.begin():
            session.execute(insert(table), rows)
    return time.perf_counter() - start


def run(settings: Settings, *, rounds: int, batches: int, batch_size: int) -> dict[str, Any]:
    rng = random.Random(7)
    bots = [1_000_000 + i for i in range(10)]
    plain = _setup(settings, bots)
    engine = get_engine(settings)

    def workload() -> list[tuple[int, list[dict[str, Any]]]]:
        return [(b := rng.choice(bots), _rows(b, batch_size, rng)) for _ in range(batches)]

    _round_rls(settings, workload())  # warm-up: connections, plans, caches
    _round_plain(engine, plain, workload())
    rls_times, plain_times = [], []
    for index in range(rounds):
        work = workload()
        # alternate who goes first, so neither side always meets a warmer cache
        if index % 2:
            rls_times.append(_round_rls(settings, work))
            plain_times.append(_round_plain(engine, plain, work))
        else:
            plain_times.append(_round_plain(engine, plain, work))
            rls_times.append(_round_rls(settings, work))
    # medians: one round slowed by another process on the machine does not decide it
    rows = batches * batch_size
    rows_per_s = rows / statistics.median(rls_times)
    plain_rows_per_s = rows / statistics.median(plain_times)
    return {
        "bench": "db_write",
        "rows_per_s": round(rows_per_s),
        "plain_rows_per_s": round(plain_rows_per_s),
        "overhead": round(plain_rows_per_s / rows_per_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batches", type=int, default=20, help="transactions per round")
    parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tgfleet-bench-") as home:
        services = DevServices(Path(home))
        try:
            services.up()
            settings = load_settings(**services.env())
            upgrade_database(settings)
            result = run(
                settings, rounds=args.rounds, batches=args.batches, batch_size=args.batch_size
            )
        finally:
            dispose_engines()
            services.down()
    rows = args.rounds * args.batches * args.batch_size
    print(f"rows per side:          {rows} ({args.rounds} rounds, median round counts)")
    print(f"session_scope (RLS):    {result['rows_per_s']:>10} rows/s")
    print(f"plain table:            {result['plain_rows_per_s']:>10} rows/s")
    print(f"overhead:               {result['overhead']:.3f}x (goal <= 1.3x)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
