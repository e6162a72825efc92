"""The fleet as beat serves it to Prometheus: the state no one process counts.

Queue depths, open outbox rows by status, leases and listener heartbeats, flood pauses,
dead letters of the last day, poison messages, legacy migration progress. They come from
the same snapshot as ``tgfleet status`` (``tgfleet.ops.health``), taken at most once every
CACHE_S however often Prometheus scrapes, plus one count of the open outbox rows. Beat
serves them (``tgfleet.tasks.telemetry``): one process per fleet, so each series exists
once. A scrape while PostgreSQL or Redis is down gives ``tgfleet_cluster_up 0`` and what
the other service still tells.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text

from tgfleet.db.session import session_scope
from tgfleet.ops.health import collect_snapshot
from tgfleet.platform.metrics import Metrics
from tgfleet.platform.reachability import Service
from tgfleet.platform.settings import Settings
from tgfleet.sends.ratelimit import Limits

#: A snapshot serves the scrapes of this many seconds.
CACHE_S = 10.0
#: Outbox statuses a row is in until it is done (``tgfleet_outbox_rows``).
OPEN_STATUSES = ("queued", "retrying", "sending", "scheduled", "paused")

_LIMITS_SQL = text("SELECT id, settings->'limits' AS limits FROM bots")
_OPEN_ROWS_SQL = text(
    "SELECT bot_id, status::text AS status, count(*) AS n FROM outbox "
    f"WHERE status IN ({', '.join(repr(s) for s in OPEN_STATUSES)}) GROUP BY 1, 2"
)

#: (name, help, labels) of every gauge the collector serves.
_GAUGES = (
    ("tgfleet_cluster_up", "1 when PostgreSQL and Redis answered.", ()),
    ("tgfleet_bot_active", "1 for a bot whose status is active.", ("bot",)),
    ("tgfleet_bot_leased", "1 while some listener holds the bot's lease.", ("bot",)),
    (
        "tgfleet_bot_send_limit_per_second",
        "The bot's sending limit (messages per second) the senders keep to.",
        ("bot",),
    ),
    (
        "tgfleet_listener_heartbeat_age_seconds",
        "Seconds since the bot's listener last reported (absent: never).",
        ("bot",),
    ),
    ("tgfleet_flood_pause_seconds", "Seconds left of the bot's FLOOD_WAIT pause.", ("bot",)),
    ("tgfleet_dead_updates_24h", "Updates dead-lettered in the last 24 hours.", ("bot",)),
    ("tgfleet_dead_sends_24h", "Outbox rows that died in the last 24 hours.", ("bot",)),
    ("tgfleet_outbox_rows", "Outbox rows not done yet, by status.", ("bot", "status")),
    ("tgfleet_queue_depth", "Messages waiting in a Celery queue.", ("queue",)),
    (
        "tgfleet_queue_oldest_age_seconds",
        "How long the next message of a queue has been due (0: none).",
        ("queue",),
    ),
    ("tgfleet_poison_messages", "Task messages set aside (tgfleet poison).", ()),
    ("tgfleet_orphan_dead_letters", "Dead letters that named no known bot.", ()),
    (
        "tgfleet_migration_checkpoint_records",
        "Legacy records in the migration's checkpoints, by bot, component and state.",
        ("bot", "component", "state"),
    ),
    ("tgfleet_problems", "Problems tgfleet status shows now.", ()),
)


class ClusterCollector(Collector):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> list[Metric]:
        return list(_families().values())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > CACHE_S:
                self._cached = (time.monotonic(), self._measure())
            yield from self._cached[1]

    def _measure(self) -> list[Metric]:
        snap = collect_snapshot(self.settings, tolerate_outages=True)
        f = _families()
        f["tgfleet_cluster_up"].add_metric([], 0.0 if snap.unreachable else 1.0)
        for bot in snap.bots:
            label = [str(bot.id)]
            f["tgfleet_bot_active"].add_metric(label, 1.0 if bot.status == "active" else 0.0)
            f["tgfleet_bot_leased"].add_metric(label, 0.0 if bot.lease_owner is None else 1.0)
            if bot.heartbeat_age_s is not None:
                f["tgfleet_listener_heartbeat_age_seconds"].add_metric(label, bot.heartbeat_age_s)
            f["tgfleet_flood_pause_seconds"].add_metric(label, bot.flood_pause_s)
            f["tgfleet_dead_updates_24h"].add_metric(label, float(bot.dead_updates_24h))
            f["tgfleet_dead_sends_24h"].add_metric(label, float(bot.outbox_dead_24h))
        if Service.POSTGRESQL not in snap.unreachable:
            with session_scope(self.settings, role="admin") as session:
                for row in session.execute(_OPEN_ROWS_SQL):
                    labels = [str(row.bot_id), row.status]
                    f["tgfleet_outbox_rows"].add_metric(labels, float(row.n))
                for row in session.execute(_LIMITS_SQL):
                    own = row.limits if isinstance(row.limits, dict) else None
                    limit = Limits.from_settings(self.settings, own).bot_per_s
                    f["tgfleet_bot_send_limit_per_second"].add_metric([str(row.id)], limit)
        for queue in snap.queues:
            f["tgfleet_queue_depth"].add_metric([queue.name], float(queue.depth))
            age = float(queue.oldest_age_s or 0.0)
            f["tgfleet_queue_oldest_age_seconds"].add_metric([queue.name], age)
        f["tgfleet_poison_messages"].add_metric([], float(snap.poison_messages))
        f["tgfleet_orphan_dead_letters"].add_metric([], float(snap.orphan_dead_letters))
        for item in snap.migration:
            labels = [str(item["bot_id"]), str(item["component"]), str(item["state"])]
            records = float(item["records"] or 0)
            f["tgfleet_migration_checkpoint_records"].add_metric(labels, records)
        f["tgfleet_problems"].add_metric([], float(len(snap.problems)))
        return list(f.values())


#: What Prometheus adds to a family's name in its samples.
SAMPLE_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def unserved(exprs: Iterable[str], served: set[str]) -> set[str]:
    """The ``tgfleet_*`` names in PromQL ``exprs`` (a dashboard's, alert rules') whose
    family is not in ``served``."""
    unknown = set()
    for expr in exprs:
        for name in re.findall(r"\btgfleet_[a-z0-9_]+", expr):
            family = next(
                (
                    name.removesuffix(suffix)
                    for suffix in SAMPLE_SUFFIXES
                    if name.endswith(suffix) and name.removesuffix(suffix) in served
                ),
                name,
            )
            if family not in served:
                unknown.add(name)
    return unknown


def family_names() -> set[str]:
    """Every metric family a tgfleet process serves (the processes' and beat's)."""
    registry = CollectorRegistry()
    Metrics(registry)
    return {family.name for family in registry.collect()} | set(_families())


def _families() -> dict[str, GaugeMetricFamily]:
    return {
        name: GaugeMetricFamily(name, documentation, labels=list(labels))
        for name, documentation, labels in _GAUGES
    }
