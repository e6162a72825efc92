"""Views run with the caller's rights: row-level security applies through them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from sqlalchemy import Engine, text

from tgfleet.db import BotMetric, MetricBucket, session_scope
from tgfleet.platform.settings import Settings


def test_bot_activity_summary_shows_a_bot_only_itself(
    db_settings: Settings, make_bots: Callable[[int], list[int]], owner_engine: Engine
) -> None:
    # Given two bots, A with one inbound message and one failed send
    a, b = make_bots(2)
    with owner_engine.begin() as conn:
        conn.execute(
            text("INSERT INTO messages (bot_id, direction, chat_id) VALUES (:a, 'in', 1)"),
            {"a": a},
        )
        conn.execute(
            text("INSERT INTO outbox (bot_id, chat_id, text, status) VALUES (:a, 1, 'x', 'dead')"),
            {"a": a},
        )
    # When A and an admin read the summary
    with session_scope(db_settings, bot_id=a) as session:
        mine = session.execute(text("SELECT * FROM bot_activity_summary")).mappings().all()
    with session_scope(db_settings, role="admin") as session:
        fleet = session.execute(
            text("SELECT bot_id FROM bot_activity_summary WHERE bot_id = ANY(:ids)"),
            {"ids": [a, b]},
        ).scalars()
        fleet_ids = set(fleet)
    # Then A sees exactly its own row with its counts; the admin sees both
    assert [(r["bot_id"], r["messages_in_24h"], r["outbox_failed"]) for r in mine] == [(a, 1, 1)]
    assert fleet_ids == {a, b}


def test_daily_metrics_prefers_day_buckets_and_sums_hours_otherwise(
    db_settings: Settings, make_bots: Callable[[int], list[int]]
) -> None:
    # Given hour buckets on two days, and a day bucket for the first day
    (bot_id,) = make_bots(1)
    day1, day2 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    with session_scope(db_settings, bot_id=bot_id) as session:
        for start, bucket, messages_in in [
            (day1.replace(hour=1), MetricBucket.HOUR, 2),
            (day1.replace(hour=2), MetricBucket.HOUR, 3),
            (day1, MetricBucket.DAY, 10),
            (day2.replace(hour=1), MetricBucket.HOUR, 4),
            (day2.replace(hour=5), MetricBucket.HOUR, 6),
        ]:
            session.add(
                BotMetric(bot_id=bot_id, bucket=bucket, bucket_start=start, messages_in=messages_in)
            )
    # When the bot reads its daily summary
    with session_scope(db_settings, bot_id=bot_id) as session:
        rows = session.execute(
            text("SELECT day, messages_in FROM daily_metrics_summary ORDER BY day")
        ).all()
    # Then day 1 comes from its day bucket and day 2 is the sum of its hours
    assert [tuple(r) for r in rows] == [(date(2026, 3, 1), 10), (date(2026, 3, 2), 10)]
