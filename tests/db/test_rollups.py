"""Analytics roll-ups: known facts give exact metrics; rolling a bucket up again changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, text

from tests.support.rollups import HOUR, seed
from tgfleet.db import MetricBucket
from tgfleet.db.rollups import METRICS, rollup_range
from tgfleet.platform.settings import Settings


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
