"""Analytics roll-ups: ``messages``, ``events``, ``outbox`` and ``audit_log`` -> ``bot_metrics``.

A bucket (one bot, one UTC hour or day) is always recomputed from the source rows as a
whole, never incremented, so rolling a bucket up again changes nothing (the upsert skips
rows whose values are identical, ``updated_at`` included). Day buckets are computed
from the raw rows too: distinct users and percentiles do not add up from hours.

What each column counts, for rows whose time falls in the bucket:

| column | source |
|---|---|
| messages_in | ``messages`` with direction ``in`` (``created_at``) |
| messages_out | ``outbox`` rows sent (``sent_at``) plus ``messages`` with direction ``out`` |
| new_users | ``events`` of kind ``new_user`` |
| profile_updates, likes, matches | ``events`` of kind ``profile_updated``, ``like``, ``match`` |
| active_users | distinct senders of inbound messages and users of events |
| sends_ok | ``outbox`` rows ``sent`` (``sent_at``) |
| sends_failed | ``outbox`` rows ``failed`` or ``dead`` (``updated_at``) |
| flood_waits | ``audit_log`` updates of ``outbox`` that recorded a ``FLOOD_WAIT_*`` error |
| latency_p50_ms, latency_p95_ms | inbound messages: stored -> handled (``processed_at``) |

Why raw SQL: one set-based statement per bucket size (CTEs, FILTER, ordered-set
aggregates, an upsert with ``IS DISTINCT FROM``) is what makes it cheap and idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tgfleet.db.enums import MetricBucket
from tgfleet.db.session import session_scope
from tgfleet.platform.settings import Settings

METRICS = (
    "messages_in",
    "messages_out",
    "new_users",
    "active_users",
    "profile_updates",
    "likes",
    "matches",
    "sends_ok",
    "sends_failed",
    "flood_waits",
    "latency_p50_ms",
    "latency_p95_ms",
)

_ROLLUP = f"""
WITH
msg AS (
  SELECT bot_id, date_trunc(:unit, created_at, 'UTC') AS b,
         count(*) FILTER (WHERE direction = 'in') AS messages_in,
         count(*) FILTER (WHERE direction = 'out') AS messages_out,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY processed_at - created_at)
           FILTER (WHERE direction = 'in' AND processed_at IS NOT NULL) AS p50,
         percentile_cont(0.95) WITHIN GROUP (ORDER BY processed_at - created_at)
           FILTER (WHERE direction = 'in' AND processed_at IS NOT NULL) AS p95
    FROM messages WHERE created_at >= :lo AND created_at < :hi
   GROUP BY 1, 2),
ev AS (
  SELECT bot_id, date_trunc(:unit, at, 'UTC') AS b,
         count(*) FILTER (WHERE kind = 'new_user') AS new_users,
         count(*) FILTER (WHERE kind = 'profile_updated') AS profile_updates,
         count(*) FILTER (WHERE kind = 'like') AS likes,
         count(*) FILTER (WHERE kind = 'match') AS matches
    FROM events WHERE at >= :lo AND at < :hi
   GROUP BY 1, 2),
act AS (
  SELECT bot_id, b, count(DISTINCT user_id) AS active_users FROM (
    SELECT bot_id, date_trunc(:unit, created_at, 'UTC') AS b, sender_id AS user_id
      FROM messages
     WHERE direction = 'in' AND sender_id IS NOT NULL AND created_at >= :lo AND created_at < :hi
    UNION ALL
    SELECT bot_id, date_trunc(:unit, at, 'UTC'), user_id
      FROM events WHERE user_id IS NOT NULL AND at >= :lo AND at < :hi
  ) users GROUP BY 1, 2),
sent AS (
  SELECT bot_id, date_trunc(:unit, sent_at, 'UTC') AS b, count(*) AS sends_ok
    FROM outbox WHERE status = 'sent' AND sent_at >= :lo AND sent_at < :hi
   GROUP BY 1, 2),
failed AS (
  SELECT bot_id, date_trunc(:unit, updated_at, 'UTC') AS b, count(*) AS sends_failed
    FROM outbox
   WHERE status IN ('failed', 'dead') AND updated_at >= :lo AND updated_at < :hi
   GROUP BY 1, 2),
flood AS (
  SELECT bot_id, date_trunc(:unit, at, 'UTC') AS b, count(*) AS flood_waits
    FROM audit_log
   WHERE table_name = 'outbox' AND op = 'UPDATE' AND at >= :lo AND at < :hi
     AND new_values ->> 'last_error' LIKE 'FLOOD_WAIT%'
   GROUP BY 1, 2),
keys AS (
  SELECT bot_id, b FROM msg UNION SELECT bot_id, b FROM ev UNION SELECT bot_id, b FROM sent
  UNION SELECT bot_id, b FROM failed UNION SELECT bot_id, b FROM flood),
computed AS (
  SELECT k.bot_id, k.b,
         coalesce(msg.messages_in, 0) AS messages_in,
         coalesce(msg.messages_out, 0) + coalesce(sent.sends_ok, 0) AS messages_out,
         coalesce(ev.new_users, 0) AS new_users,
         coalesce(act.active_users, 0) AS active_users,
         coalesce(ev.profile_updates, 0) AS profile_updates,
         coalesce(ev.likes, 0) AS likes,
         coalesce(ev.matches, 0) AS matches,
         coalesce(sent.sends_ok, 0) AS sends_ok,
         coalesce(failed.sends_failed, 0) AS sends_failed,
         coalesce(flood.flood_waits, 0) AS flood_waits,
         round(extract(epoch FROM msg.p50) * 1000)::int AS latency_p50_ms,
         round(extract(epoch FROM msg.p95) * 1000)::int AS latency_p95_ms
    FROM keys k
    JOIN bots ON bots.id = k.bot_id
    LEFT JOIN msg USING (bot_id, b) LEFT JOIN ev USING (bot_id, b)
    LEFT JOIN act USING (bot_id, b) LEFT JOIN sent USING (bot_id, b)
    LEFT JOIN failed USING (bot_id, b) LEFT JOIN flood USING (bot_id, b)),
gone AS (
  DELETE FROM bot_metrics m
   WHERE m.bucket = CAST(:unit AS metric_bucket) AND m.bucket_start >= :lo AND m.bucket_start < :hi
     AND NOT EXISTS (SELECT 1 FROM computed c WHERE c.bot_id = m.bot_id AND c.b = m.bucket_start)
  RETURNING 1)
INSERT INTO bot_metrics (bot_id, bucket, bucket_start, {", ".join(METRICS)})
SELECT bot_id, CAST(:unit AS metric_bucket), b, {", ".join(METRICS)} FROM computed
ON CONFLICT (bot_id, bucket, bucket_start) DO UPDATE
   SET {", ".join(f"{m} = EXCLUDED.{m}" for m in METRICS)}, updated_at = now()
 WHERE ({", ".join(f"bot_metrics.{m}" for m in METRICS)})
       IS DISTINCT FROM ({", ".join(f"EXCLUDED.{m}" for m in METRICS)})
"""


@dataclass(frozen=True)
class RollupResult:
    bucket: MetricBucket
    start: datetime
    end: datetime
    #: Buckets inserted or changed (unchanged buckets are not written).
    written: int


def floor_to(moment: datetime, bucket: MetricBucket) -> datetime:
    moment = moment.astimezone(UTC)
    if bucket is MetricBucket.DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def step(bucket: MetricBucket) -> timedelta:
    return timedelta(days=1) if bucket is MetricBucket.DAY else timedelta(hours=1)


def rollup_range(
    settings: Settings, bucket: MetricBucket, start: datetime, end: datetime
) -> RollupResult:
    """Recompute every ``bucket`` starting in [floor(start), end) for every bot."""
    lo = floor_to(start, bucket)
    hi = floor_to(end, bucket)
    if hi < end.astimezone(UTC):
        hi += step(bucket)
    with session_scope(settings, role="admin") as session:
        result = session.execute(text(_ROLLUP), {"unit": bucket.value, "lo": lo, "hi": hi})
        written = int(result.rowcount)  # type: ignore[attr-defined]
    return RollupResult(bucket, lo, hi, written)


def rollup_recent(settings: Settings, now: datetime | None = None) -> list[RollupResult]:
    """What Beat runs: the last ``TGFLEET_ROLLUP_LOOKBACK_HOURS`` hours (the current one
    included) and the days they touch."""
    now = now or datetime.now(UTC)
    start = now - timedelta(hours=settings.rollup_lookback_hours)
    return [
        rollup_range(settings, MetricBucket.HOUR, start, now),
        rollup_range(settings, MetricBucket.DAY, start, now),
    ]
