"""``tgfleet status`` exits non-zero when something needs attention, shows what it can
still reach when PostgreSQL or Redis cannot be reached, and fits the terminal's width;
health alerts once."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import Engine, text

from tgfleet.dev.processes import Child
from tgfleet.ops.alerts import run_health_check
from tgfleet.platform.names import LEASE_PREFIX, LISTENER_HEARTBEATS
from tgfleet.platform.queues import PUBLISHED_AT_HEADER
from tgfleet.platform.settings import Settings


def beat_for(client: redis.Redis, bot: int, age_s: float) -> None:
    """A listener heartbeat ``age_s`` old for ``bot``, holding its lease."""
    now = time.time()
    client.hset(
        LISTENER_HEARTBEATS,
        str(bot),
        json.dumps(
            {
                "owner": "l-1",
                "host": "node-a",
                "at": now - age_s,
                "updates": 5,
                "last_update_at": now - age_s - 1,
                "lease_token": 1,
                "pending_publishes": 0,
            }
        ),
    )
    client.set(f"{LEASE_PREFIX}{bot}", "l-1|1", px=30_000)


def ops_env(subprocess_env: dict[str, str], ops_db: Settings, **extra: str) -> dict[str, str]:
    """The CLI's environment for the ops database and Redis, with ``extra`` on top."""
    return {
        **subprocess_env,
        "DATABASE_URL": ops_db.database_url,
        "MIGRATE_DATABASE_URL": ops_db.owner_database_url,
        "TGFLEET_DB_ROLE_PREFIX": ops_db.db_role_prefix,
        "REDIS_URL": ops_db.redis_url,
        **extra,
    }


def run_status(
    env: dict[str, str], *args: str, wait: str = "0.3"
) -> subprocess.CompletedProcess[str]:
    """``tgfleet status``, waiting ``wait`` s for workers to answer (0.3: no test but the
    one that starts a worker has one, so the wait is all it would cost)."""
    return subprocess.run(
        [sys.executable, "-m", "tgfleet", "status", "--timeout", wait, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def status(env: dict[str, str], wait: str = "0.3") -> tuple[int, dict[str, Any]]:
    done = run_status(env, "--json", wait=wait)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def closed_port() -> int:
    """A local TCP port nothing listens on (bound once to get a free one, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def words(text: str) -> str:
    """``text`` with its line breaks and padding as single spaces, and ages in seconds as
    ``Ns`` (two runs of status see ages a second or two apart)."""
    return re.sub(r"\b\d+s\b", "Ns", " ".join(text.split()))


def test_status_exit_code_follows_heartbeats_and_stuck_queues(
    ops_db: Settings,
    ops_redis: redis.Redis,
    make_ops_bot: Callable[..., int],
    start_worker: Callable[..., Child],
    subprocess_env: dict[str, str],
) -> None:
    env = ops_env(subprocess_env, ops_db, TGFLEET_HEALTH_QUEUE_STUCK_S="60")
    start_worker(queues="maintenance", extra_env=env)
    bot = make_ops_bot()
    # Given a bot whose listener heartbeats, and a worker
    beat_for(ops_redis, bot, age_s=1)
    code, report = status(env, wait="1")
    # Then status is happy
    assert (code, report["problems"]) == (0, []), report["problems"]
    (row,) = [b for b in report["bots"] if b["id"] == bot]
    assert row["listener_host"] == "node-a" and row["lease_owner"] == "l-1"
    assert report["workers"]
    # When the heartbeat goes stale
    beat_for(ops_redis, bot, age_s=600)
    code, report = status(env, wait="1")
    # Then status exits 1 and says which listener
    assert code == 1
    assert [p["key"] for p in report["problems"]] == [f"listener-stale:{bot}"]
    # When the heartbeat is fresh again but a queue holds a message due 10 minutes ago
    beat_for(ops_redis, bot, age_s=1)
    stuck = {"headers": {"task": "tgfleet.updates.handle", PUBLISHED_AT_HEADER: time.time() - 600}}
    ops_redis.lpush("updates", json.dumps(stuck))
    code, report = status(env, wait="1")
    # Then status exits 1 for the stuck queue
    assert code == 1
    assert [p["key"] for p in report["problems"]] == ["queue-stuck:updates"]
    (updates,) = [q for q in report["queues"] if q["name"] == "updates"]
    assert updates["depth"] == 1 and updates["oldest_age_s"] >= 600


def test_without_postgresql_status_shows_the_queues(
    ops_db: Settings, ops_redis: redis.Redis, subprocess_env: dict[str, str]
) -> None:
    # Given PostgreSQL at a closed port, and a message waiting in the real Redis
    password = f"pw-{uuid.uuid4().hex}"
    address = f"127.0.0.1:{closed_port()}/tgfleet"
    env = ops_env(
        subprocess_env, ops_db, DATABASE_URL=f"postgresql://tgfleet_app:{password}@{address}"
    )
    waiting = {"headers": {"task": "tgfleet.updates.handle", PUBLISHED_AT_HEADER: time.time()}}
    ops_redis.lpush("updates", json.dumps(waiting))
    # When status runs
    code, report = status(env)
    table = run_status_at(env, 80)
    # Then it reports PostgreSQL as the problem and still shows the queues
    assert code == 1 and table.returncode == 1
    keys = [p["key"] for p in report["problems"]]
    assert keys == ["unreachable:postgresql", "workers-offline"], keys
    (updates,) = [q for q in report["queues"] if q["name"] == "updates"]
    assert updates["depth"] == 1 and report["bots"] == []
    expected = f"cannot reach PostgreSQL at {address} (connection refused)"
    assert report["problems"][0]["text"].startswith(expected)
    assert expected in words(table.stdout) and "updates" in table.stdout
    assert "Bots, partitions, legacy migration: not known" in words(table.stdout)
    assert table.stderr == "" and password not in table.stdout + json.dumps(report)


def test_without_redis_status_shows_bots_and_partitions(
    ops_db: Settings, make_ops_bot: Callable[..., int], subprocess_env: dict[str, str]
) -> None:
    # Given a bot in PostgreSQL and Redis at a closed port
    bot = make_ops_bot()
    password = f"pw-{uuid.uuid4().hex}"
    address = f"127.0.0.1:{closed_port()}/0"
    env = ops_env(subprocess_env, ops_db, REDIS_URL=f"redis://:{password}@{address}")
    # When status runs
    code, report = status(env)
    table = run_status_at(env, 80)
    # Then Redis is the one problem (listeners and workers are not known, not missing)
    assert code == 1 and table.returncode == 1
    assert [p["key"] for p in report["problems"]] == ["unreachable:redis"]
    assert report["problems"][0]["text"].startswith(
        f"cannot reach Redis at {address} (connection refused)"
    )
    # And the bots and partitions come from PostgreSQL
    assert bot in [b["id"] for b in report["bots"]] and report["partitions"]
    assert report["queues"] == [] and report["workers"] is None
    assert str(bot) in table.stdout and "messages" in table.stdout
    assert "Queues and workers: not known, Redis cannot be reached" in words(table.stdout)
    assert f"cannot reach Redis at {address}" in words(table.stdout)
    assert table.stderr == "" and password not in table.stdout + json.dumps(report)


def test_with_nothing_reachable_status_reports_both(
    ops_db: Settings, subprocess_env: dict[str, str]
) -> None:
    # Given neither PostgreSQL nor Redis can be reached
    env = ops_env(
        subprocess_env,
        ops_db,
        DATABASE_URL=f"postgresql://tgfleet_app:x@127.0.0.1:{closed_port()}/tgfleet",
        REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
    )
    # When status runs
    code, report = status(env)
    table = run_status_at(env, 80)
    # Then both are the problems, in the report and on the screen, without a traceback
    assert code == 1 and table.returncode == 1
    keys = [p["key"] for p in report["problems"]]
    assert keys == ["unreachable:postgresql", "unreachable:redis"]
    for problem in report["problems"]:
        assert words(problem["text"]) in words(table.stdout)
    assert table.stderr == ""


def run_status_at(env: dict[str, str], columns: int) -> subprocess.CompletedProcess[str]:
    """``tgfleet status`` (the tables) in a terminal ``columns`` wide."""
    return run_status({**env, "COLUMNS": str(columns)})


def test_status_reads_at_80_columns_and_shows_every_column_at_120(
    ops_db: Settings,
    ops_redis: redis.Redis,
    make_ops_bot: Callable[..., int],
    subprocess_env: dict[str, str],
) -> None:
    # Given two bots, one with a listener, and a queue whose oldest message is stuck
    env = ops_env(subprocess_env, ops_db, TGFLEET_HEALTH_QUEUE_STUCK_S="60")
    bots = [make_ops_bot(), make_ops_bot()]
    beat_for(ops_redis, bots[0], age_s=600)
    stuck = {"headers": {"task": "tgfleet.updates.handle", PUBLISHED_AT_HEADER: time.time() - 900}}
    ops_redis.lpush("updates", json.dumps(stuck))
    _, report = status(env)
    assert len(report["problems"]) == 4  # two listeners, the stuck queue, no worker
    for columns in (80, 120):
        # When status is shown in a terminal that wide
        text = run_status_at(env, columns).stdout
        # Then no value is cut and no line is wider than the terminal
        assert "…" not in text, text
        assert max(len(line.rstrip()) for line in text.splitlines()) <= columns, text
        # And the bot ids, the queues and every problem are there
        for bot in bots:
            assert str(bot) in text
        for queue in report["queues"]:
            assert f"\n{queue['name']} " in text
        for problem in report["problems"]:
            assert words(problem["text"]) in words(text), problem
    # And at 120 columns every column is shown, the lease and the rates too
    assert "not shown" not in text
    assert re.search(r"node-a +\d+m +\d+m \(\d+s left\) .* 0\.00 +0\.00 ", text), text


def test_health_tells_admins_once_per_incident_and_when_it_clears(
    ops_db: Settings,
    ops_redis: redis.Redis,
    ops_owner: Engine,
    make_ops_bot: Callable[..., int],
    ops_app_factory: Callable[[Settings], Any],
) -> None:
    ops_app_factory(ops_db)
    bot = make_ops_bot(admins=[777, 778])

    def notices() -> list[str]:
        with ops_owner.connect() as conn:
            rows = conn.execute(
                text("SELECT chat_id, text FROM outbox WHERE bot_id = :b ORDER BY id"), {"b": bot}
            )
            return [f"{r.chat_id}:{r.text}" for r in rows]

    # Given a stale listener heartbeat
    beat_for(ops_redis, bot, age_s=600)
    # When health runs twice
    first = run_health_check(ops_db)
    second = run_health_check(ops_db)
    # Then the incident opened once and each admin chat heard of it once
    assert first["opened"] == [f"listener-stale:{bot}"] and second["opened"] == []
    told = notices()
    assert len(told) == 2 and all("silent" in n for n in told)
    # When the listener is back
    beat_for(ops_redis, bot, age_s=1)
    third = run_health_check(ops_db)
    # Then the incident is cleared and each admin chat hears that once
    assert third["cleared"] == [f"listener-stale:{bot}"]
    assert [n for n in notices() if "resolved" in n] == [
        f"777:✅ tgfleet: resolved: {told[0].split('tgfleet: ', 1)[1]}",
        f"778:✅ tgfleet: resolved: {told[1].split('tgfleet: ', 1)[1]}",
    ]
    assert run_health_check(ops_db)["cleared"] == []
