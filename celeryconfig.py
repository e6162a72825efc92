"""Declarative Celery configuration for tgfleet.

Values that depend on the deployment (broker URL, result backend, visibility
timeout) come from ``Settings`` and are applied by ``make_celery(settings)``;
everything here is static policy: serialisation, queues, routes, acks, prefetch.
"""

from kombu import Queue

from tgfleet.platform.names import MAINTENANCE_QUEUE, QUEUES

# JSON only: task arguments are JSON primitives and ids, never pickles.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
event_serializer = "json"
timezone = "UTC"
enable_utc = True

# One queue per concern, so each can get its own workers, pool and concurrency.
task_queues = tuple(Queue(name, routing_key=name) for name in QUEUES)
task_default_queue = MAINTENANCE_QUEUE
task_routes = {f"tgfleet.{area}.*": {"queue": area} for area in QUEUES}
task_create_missing_queues = False
# The task adapters, one module per queue, that every worker registers.
include = (
    "tgfleet.tasks.maintenance",
    "tgfleet.tasks.updates",
    "tgfleet.tasks.sends",
    "tgfleet.tasks.analytics",
    "tgfleet.tasks.migration",
    "tgfleet.tasks.telemetry",
    "tgfleet.tasks.database",
)

# A message no worker can run (not decodable, not a task, arguments the task does not
# take) is set aside with its reason, never lost and never the end of a worker
# (tgfleet.platform.poison): kombu's Redis transport and Celery's consumer, each guarded.
broker_transport = "tgfleet.platform.transport:Transport"
worker_consumer = "tgfleet.platform.consumer:Consumer"

# At-least-once: a task is acknowledged after it ran; a worker that dies mid-task
# gives the message back. Every task is idempotent in effect (dedupe keys, row
# claims, random_id), so a redelivery is harmless.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_cancel_long_running_tasks_on_connection_loss = True
broker_connection_retry_on_startup = True
# A worker (and beat) whose Redis went away reconnects as long as it takes (waits of
# 2 s growing to 30 s), instead of exiting after Celery's default of 100 attempts.
broker_connection_retry = True
broker_connection_max_retries = None
task_track_started = False
task_ignore_result = True
result_expires = 3600

# Countdowns the code may schedule never exceed this (FloodWait, backoff caps);
# make_celery() checks it is below the Redis visibility timeout.
MAX_COUNTDOWN_S = 6 * 3600

worker_hijack_root_logger = False
worker_send_task_events = False
task_send_sent_event = False
