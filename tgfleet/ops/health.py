"""Is everything all right? One snapshot of the fleet, and the problems in it.

``collect_snapshot(settings)`` gathers, without changing anything: per bot the listener's
heartbeat (``tgfleet:listener-heartbeats``) and lease (``tgfleet:lease:<bot>``), inbound and
send rates over the last minute, flood pauses, outbox backlog and dead letters; per queue
the depth and the oldest message's age; the poison messages set aside; partition coverage
and rows in DEFAULT; legacy migration progress. ``Snapshot.problems`` lists what needs
attention, each with a stable ``key`` so the health task (``tgfleet.ops.alerts``) can tell
an incident that goes on from a new one. ``tgfleet status`` renders the same snapshot.

``tgfleet status`` collects with ``tolerate_outages=True``: when PostgreSQL or Redis cannot
be reached it shows what the other one tells, with the outage as an ``unreachable:...``
problem. The health task does not: without its services it can alert no one, so its
run fails instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import text

from tgfleet.db.session import session_scope
from tgfleet.platform.lease import LeaseStore
from tgfleet.platform.metrics import endpoints
from tgfleet.platform.names import LISTENER_HEARTBEATS, ORPHAN_DEAD_LETTERS, POISON_MESSAGES
from tgfleet.platform.queues import QueueState, queue_states
from tgfleet.platform.reachability import Service, unreachable_service
from tgfleet.platform.redis import redis_client
from tgfleet.platform.settings import Settings
from tgfleet.sends.ratelimit import RateLimiter

#: Inbound updates and sends are counted over this window for the per-second rates.
RATE_WINDOW_S = 60


@dataclass
class Problem:
    key: str
    text: str
    bot_id: int | None = None


@dataclass
class BotState:
    id: int
    name: str
    status: str
    admin_chat_ids: list[int]
    listener_host: str | None = None
    listener_owner: str | None = None
    heartbeat_age_s: float | None = None
    lease_owner: str | None = None
    lease_age_s: float | None = None
    lease_ttl_s: float | None = None
    last_update_age_s: float | None = None
    updates_per_s: float = 0.0
    sends_per_s: float = 0.0
    flood_pause_s: float = 0.0
    outbox_backlog: int = 0
    outbox_dead_24h: int = 0
    dead_updates_24h: int = 0


@dataclass
class Snapshot:
    at: float
    bots: list[BotState] = field(default_factory=list)
    queues: list[QueueState] = field(default_factory=list)
    workers: list[str] | None = None
    task_events: dict[str, bool] = field(default_factory=dict)
    partitions: list[dict[str, Any]] = field(default_factory=list)
    migration: list[dict[str, Any]] = field(default_factory=list)
    orphan_dead_letters: int = 0
    #: Messages no worker could run, set aside (``platform/poison.py``).
    poison_messages: int = 0
    #: The /metrics endpoints live processes announced (``platform/metrics.py``).
    metrics_endpoints: list[dict[str, Any]] = field(default_factory=list)
    #: Service name (``Service``) -> why it could not be reached; its parts are empty.
    unreachable: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = not self.problems
        return data


_BOTS_SQL = f"""
SELECT b.id, b.name, b.status::text, b.admin_chat_ids,
  (SELECT count(*) FROM messages m WHERE m.bot_id = b.id AND m.direction = 'in'
      AND m.created_at > now() - interval '{RATE_WINDOW_S} seconds') AS recent_in,
  (SELECT count(*) FROM outbox o WHERE o.bot_id = b.id AND o.status = 'sent'
      AND o.sent_at > now() - interval '{RATE_WINDOW_S} seconds') AS recent_sent,
  (SELECT count(*) FROM outbox o WHERE o.bot_id = b.id
      AND o.status IN ('queued', 'retrying', 'sending')) AS backlog,
  (SELECT count(*) FROM outbox o WHERE o.bot_id = b.id AND o.status = 'dead'
      AND o.updated_at > now() - interval '1 day') AS outbox_dead,
  (SELECT count(*) FROM dead_updates d WHERE d.bot_id = b.id
      AND d.created_at > now() - interval '1 day') AS dead_updates
FROM bots b ORDER BY b.id
"""

_MIGRATION_SQL = """
SELECT bot_id, component, state::text, sum(records)::bigint AS records,
       bool_and(complete) AS complete, max(error) AS error,
       extract(epoch FROM now() - max(updated_at))::float AS idle_s
  FROM migration_checkpoints WHERE file <> ''
 GROUP BY bot_id, component, state ORDER BY bot_id, component
"""


def collect_snapshot(
    settings: Settings, *, now: float | None = None, tolerate_outages: bool = False
) -> Snapshot:
    """Everything ``tgfleet status`` shows (workers excepted: ``add_workers``).

    With ``tolerate_outages`` an unreachable PostgreSQL or Redis is not raised: the
    snapshot holds what the other service tells, and the outage as a problem."""
    snap = Snapshot(at=time.time() if now is None else now)
    with _outage(snap, settings, tolerate_outages):
        with session_scope(settings, role="admin") as session:
            rows = session.execute(text(_BOTS_SQL)).all()
            snap.partitions = [
                dict(r._mapping)
                for r in session.execute(text("SELECT * FROM partition_coverage()"))
            ]
            snap.migration = [dict(r._mapping) for r in session.execute(text(_MIGRATION_SQL))]
        for row in rows:
            bot = BotState(row.id, row.name, row.status, list(row.admin_chat_ids or []))
            bot.updates_per_s = row.recent_in / RATE_WINDOW_S
            bot.sends_per_s = row.recent_sent / RATE_WINDOW_S
            bot.outbox_backlog = int(row.backlog)
            bot.outbox_dead_24h = int(row.outbox_dead)
            bot.dead_updates_24h = int(row.dead_updates)
            snap.bots.append(bot)
    client = redis_client(settings.redis_url)
    with _outage(snap, settings, tolerate_outages):
        beats = client.hgetall(LISTENER_HEARTBEATS)
        leases = LeaseStore(client, owner="tgfleet-status")
        limiter = RateLimiter(client)
        for bot in snap.bots:
            _add_listener(bot, beats.get(str(bot.id).encode()), leases, settings, snap.at)
            bot.flood_pause_s = limiter.paused_for(bot.id)
        snap.queues = queue_states(client, now=snap.at)
        snap.orphan_dead_letters = int(client.llen(ORPHAN_DEAD_LETTERS))
        snap.poison_messages = int(client.llen(POISON_MESSAGES))
        snap.metrics_endpoints = [asdict(e) for e in endpoints(settings, now=snap.at)]
    snap.problems = find_problems(snap, settings)
    return snap


@contextmanager
def _outage(snap: Snapshot, settings: Settings, tolerate: bool) -> Iterator[None]:
    """Record an unreachable service in ``snap`` instead of raising (when tolerated)."""
    try:
        yield
    except Exception as exc:
        down = unreachable_service(exc, settings) if tolerate else None
        if down is None:
            raise
        snap.unreachable[down.service.value] = str(down)


def _add_listener(
    bot: BotState, raw: bytes | str | None, leases: LeaseStore, settings: Settings, now: float
) -> None:
    if raw is not None:
        beat = json.loads(raw)
        bot.listener_host = beat.get("host")
        bot.listener_owner = beat.get("owner")
        bot.heartbeat_age_s = max(0.0, now - float(beat.get("at", 0)))
        last = beat.get("last_update_at")
        if isinstance(last, int | float) and last > 0:
            bot.last_update_age_s = max(0.0, now - float(last))
    holder = leases.holder(bot.id)
    if holder is not None:
        bot.lease_owner, _token, bot.lease_ttl_s = holder
        if bot.heartbeat_age_s is not None and bot.listener_owner == bot.lease_owner:
            # The listener renews its lease each time it heartbeats.
            bot.lease_age_s = bot.heartbeat_age_s


def add_workers(snap: Snapshot, app: Any, timeout: float = 1.0) -> None:
    """Ask the workers (``celery inspect ping``) and whether they send task events."""
    from tgfleet.platform.queues import task_events_state

    replies = app.control.ping(timeout=timeout) or []
    snap.workers = sorted(name for reply in replies for name in reply)
    snap.task_events = task_events_state(app, timeout) if snap.workers else {}
    if not snap.workers:
        snap.problems.append(Problem("workers-offline", "no Celery worker answered a ping"))


def find_problems(snap: Snapshot, settings: Settings) -> list[Problem]:
    """What needs attention in ``snap``."""
    found = [
        Problem(f"unreachable:{service.lower()}", text)
        for service, text in snap.unreachable.items()
    ]
    listeners_known = Service.REDIS not in snap.unreachable
    for bot in snap.bots:
        if bot.status != "active":
            continue
        label = f"bot {bot.id} ({bot.name})"
        if listeners_known:
            found += _listener_problems(bot, label, settings.health_heartbeat_stale_s)
        dead = bot.dead_updates_24h + bot.outbox_dead_24h
        if dead:
            found.append(
                Problem(
                    f"dead-letters:{bot.id}",
                    f"{label}: {bot.dead_updates_24h} dead updates and "
                    f"{bot.outbox_dead_24h} dead sends in the last 24h",
                    bot.id,
                )
            )
    for queue in snap.queues:
        age = queue.oldest_age_s
        if queue.depth and age is not None and age > settings.health_queue_stuck_s:
            found.append(
                Problem(
                    f"queue-stuck:{queue.name}",
                    f"queue {queue.name}: {queue.depth} waiting, the oldest for {age:.0f}s",
                )
            )
    if snap.orphan_dead_letters:
        found.append(
            Problem(
                "dead-letters:orphans",
                f"{snap.orphan_dead_letters} dead updates for unknown bots "
                f"(Redis list {ORPHAN_DEAD_LETTERS})",
            )
        )
    if snap.poison_messages:
        found.append(
            Problem(
                "poison-messages",
                f"{snap.poison_messages} poison messages: messages no worker could run, "
                f"set aside with their reasons (`tgfleet poison` lists them)",
            )
        )
    for cov in snap.partitions:
        table = cov["table_name"]
        if cov["months_ahead"] < settings.partition_premake:
            found.append(
                Problem(
                    f"partitions-ahead:{table}",
                    f"{table}: partitions cover only {cov['months_ahead']} months ahead "
                    f"(want {settings.partition_premake}); is beat running?",
                )
            )
        if cov["default_rows"]:
            found.append(
                Problem(
                    f"default-rows:{table}",
                    f"{table}: {cov['default_rows']} rows in the DEFAULT partition",
                )
            )
    for mig in snap.migration:
        where = f"bot {mig['bot_id']} {mig['component']}"
        if mig["error"]:
            found.append(
                Problem(
                    f"migration-error:{mig['bot_id']}:{mig['component']}",
                    f"legacy migration of {where}: {mig['error']}",
                    mig["bot_id"],
                )
            )
        elif not mig["complete"] and mig["idle_s"] > settings.health_migration_stale_s:
            found.append(
                Problem(
                    f"migration-lag:{mig['bot_id']}:{mig['component']}",
                    f"legacy migration of {where} has not moved for {mig['idle_s']:.0f}s",
                    mig["bot_id"],
                )
            )
    return found


def _listener_problems(bot: BotState, label: str, stale_s: float) -> list[Problem]:
    found = []
    if bot.heartbeat_age_s is None:
        found.append(Problem(f"listener-missing:{bot.id}", f"{label}: no listener", bot.id))
    elif bot.heartbeat_age_s > stale_s:
        found.append(
            Problem(
                f"listener-stale:{bot.id}",
                f"{label}: listener on {bot.listener_host} silent for {bot.heartbeat_age_s:.0f}s",
                bot.id,
            )
        )
    if bot.heartbeat_age_s is not None and bot.lease_owner is None:
        found.append(
            Problem(f"lease-missing:{bot.id}", f"{label}: no listener holds the lease", bot.id)
        )
    return found
