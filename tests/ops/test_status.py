"""``tgfleet status`` exits non-zero when something needs attention; health alerts once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
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


def status(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "tgfleet", "status", "--json", "--timeout", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_status_exit_code_follows_heartbeats_and_stuck_queues(
    ops_db: Settings,
    ops_redis: redis.Redis,
    make_ops_bot: Callable[..., int],
    start_worker: Callable[..., Child],
    subprocess_env: dict[str, str],
) -> None:
    env = {
        **subprocess_env,
        "DATABASE_URL": ops_db.database_url,
        "MIGRATE_DATABASE_URL": ops_db.owner_database_url,
        "TGFLEET_DB_ROLE_PREFIX": ops_db.db_role_prefix,
        "REDIS_URL": ops_db.redis_url,
        "TGFLEET_HEALTH_QUEUE_STUCK_S": "60",
    }
    start_worker(queues="maintenance", extra_env=env)
    bot = make_ops_bot()
    # Given a bot whose listener heartbeats, and a worker
    beat_for(ops_redis, bot, age_s=1)
    code, report = status(env)
    # Then status is happy
    assert (code, report["problems"]) == (0, []), report["problems"]
    (row,) = [b for b in report["bots"] if b["id"] == bot]
    assert row["listener_host"] == "node-a" and row["lease_owner"] == "l-1"
    assert report["workers"]
    # When the heartbeat goes stale
    beat_for(ops_redis, bot, age_s=600)
    code, report = status(env)
    # Then status exits 1 and says which listener
    assert code == 1
    assert [p["key"] for p in report["problems"]] == [f"listener-stale:{bot}"]
    # When the heartbeat is fresh again but a queue holds a message due 10 minutes ago
    beat_for(ops_redis, bot, age_s=1)
    stuck = {"headers": {"task": "tgfleet.updates.handle", PUBLISHED_AT_HEADER: time.time() - 600}}
    ops_redis.lpush("updates", json.dumps(stuck))
    code, report = status(env)
    # Then status exits 1 for the stuck queue
    assert code == 1
    assert [p["key"] for p in report["problems"]] == ["queue-stuck:updates"]
    (updates,) = [q for q in report["queues"] if q["name"] == "updates"]
    assert updates["depth"] == 1 and updates["oldest_age_s"] >= 600


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
