"""Every name that two places need: Celery queues and tasks, Redis keys.

Defined once here and imported everywhere, ``celeryconfig.py`` included: a task's name
is its wire format (a listener publishes it, a worker registers it, beat schedules it),
so two spellings of one name would be a bug that no test of either side sees.
Task names read ``tgfleet.<queue>.<verb>``; ``celeryconfig`` routes on that prefix.
"""

from __future__ import annotations

# Queues: one per concern, so each can get its own workers, pool and concurrency.
UPDATES_QUEUE = "updates"
SENDS_QUEUE = "sends"
ANALYTICS_QUEUE = "analytics"
MIGRATION_QUEUE = "migration"
MAINTENANCE_QUEUE = "maintenance"
QUEUES = (UPDATES_QUEUE, SENDS_QUEUE, ANALYTICS_QUEUE, MIGRATION_QUEUE, MAINTENANCE_QUEUE)

# Tasks, by queue.
HANDLE_UPDATE = "tgfleet.updates.handle"
#: Several consecutive envelopes a listener published together, as one task.
HANDLE_UPDATE_BATCH = "tgfleet.updates.handle_batch"
RECORD_ENTITIES = "tgfleet.updates.record_entities"
DELIVER = "tgfleet.sends.deliver"
#: Many plain sends of one bot, each to its own chat, as one task.
DELIVER_BATCH = "tgfleet.sends.deliver_batch"
#: A bot's ready replies, in rounds (``tgfleet.sends.ready``).
DELIVER_READY = "tgfleet.sends.deliver_ready"
ROLLUP = "tgfleet.analytics.rollup"
MIGRATION_BATCH = "tgfleet.migration.run_batch"
PING = "tgfleet.maintenance.ping"
RESTORE_UNACKED = "tgfleet.maintenance.restore_unacked"
PARTITIONS = "tgfleet.maintenance.partitions"
CLEANUP = "tgfleet.maintenance.cleanup"
HEALTH = "tgfleet.maintenance.health"

#: Every task tgfleet registers, and the queue it runs on.
TASK_QUEUES = {
    HANDLE_UPDATE: UPDATES_QUEUE,
    HANDLE_UPDATE_BATCH: UPDATES_QUEUE,
    RECORD_ENTITIES: UPDATES_QUEUE,
    DELIVER: SENDS_QUEUE,
    DELIVER_BATCH: SENDS_QUEUE,
    DELIVER_READY: SENDS_QUEUE,
    ROLLUP: ANALYTICS_QUEUE,
    MIGRATION_BATCH: MIGRATION_QUEUE,
    PING: MAINTENANCE_QUEUE,
    RESTORE_UNACKED: MAINTENANCE_QUEUE,
    PARTITIONS: MAINTENANCE_QUEUE,
    CLEANUP: MAINTENANCE_QUEUE,
    HEALTH: MAINTENANCE_QUEUE,
}

# Redis keys shared between processes (a key one module alone uses stays in it).
#: Hash: bot id -> JSON heartbeat of the listener holding it.
LISTENER_HEARTBEATS = "tgfleet:listener-heartbeats"
#: ``<prefix><bot id>``: the listener lease of one bot, and its fencing counter.
LEASE_PREFIX = "tgfleet:lease:"
LEASE_FENCE_PREFIX = "tgfleet:lease-fence:"
#: List of envelopes that named no known bot (dead_updates is a tenant table).
ORPHAN_DEAD_LETTERS = "tgfleet:dead-updates:orphans"
#: List of task messages no worker could run (not decodable, not a task, arguments the
#: task does not take), newest first, with their reasons and raw bytes (``poison.py``).
POISON_MESSAGES = "tgfleet:poison-messages"
#: Hashes of counters the sender keeps (sent, failed, ...; resolution sources).
SEND_METRICS = "tgfleet:metrics:sends"
RESOLVE_METRICS = "tgfleet:metrics:resolve"
#: Sorted set: the /metrics endpoints of live processes (JSON), scored by their last
#: announcement (``platform/metrics.py``).
METRICS_ENDPOINTS = "tgfleet:metrics:endpoints"
#: Hash: open health incidents (problem key -> JSON).
HEALTH_INCIDENTS = "tgfleet:health:incidents"
#: ``<prefix><token>``: a worker's answer to a ping.
PING_PREFIX = "tgfleet:ping:"
#: ``<prefix><bot id>:<name>:<user id>``: one user's token bucket of a bot's ``Throttle``
#: middleware (the update workers of every process share it).
THROTTLE_PREFIX = "tgfleet:throttle:"
