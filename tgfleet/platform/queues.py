"""What is waiting in the broker: queue depths, the oldest message's age, workers' events.

Celery's Redis transport keeps each queue as a Redis list (``LPUSH`` to publish, ``BRPOP``
to consume, so the oldest message is at the right end), one list per priority step. A
message carries no publish time of its own, so every tgfleet process stamps one into the
task headers (``tgfleet_published_at``, set by a ``before_task_publish`` hook this module
connects when it is imported; ``make_celery`` imports it).

Flower switches workers' task events on (``enable_events``), which costs throughput; the
``tgfleet_task_events`` inspect command lets ``tgfleet status`` and benchmarks say whether
they were on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import redis
from celery import Celery
from celery.signals import before_task_publish
from celery.worker.control import inspect_command

import celeryconfig

PUBLISHED_AT_HEADER = "tgfleet_published_at"
#: kombu's Redis transport: priority steps and the separator of per-priority list names.
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"


@before_task_publish.connect
def _stamp_publish_time(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers.setdefault(PUBLISHED_AT_HEADER, time.time())


@dataclass(frozen=True)
class QueueState:
    """One queue: messages waiting, and how long the next one to be consumed has been due."""

    name: str
    depth: int
    oldest_age_s: float | None
    oldest_task: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _list_keys(queue: str) -> list[str]:
    return [queue if pri == 0 else f"{queue}{PRIORITY_SEP}{pri}" for pri in PRIORITY_STEPS]


def message_due_at(raw: bytes | str) -> tuple[float | None, str | None]:
    """(publish time or ETA, whichever is later; task name) of one raw broker message."""
    try:
        message = json.loads(raw)
        headers = message.get("headers") or {}
    except (ValueError, AttributeError):
        return None, None
    published = headers.get(PUBLISHED_AT_HEADER)
    due = float(published) if isinstance(published, int | float) else None
    eta = headers.get("eta")
    if isinstance(eta, str):
        try:
            eta_ts = datetime.fromisoformat(eta).timestamp()
        except ValueError:
            eta_ts = None
        if eta_ts is not None:
            due = eta_ts if due is None else max(due, eta_ts)
    task = headers.get("task")
    return due, task if isinstance(task, str) else None


def queue_states(
    client: redis.Redis,
    queues: Iterable[str] = celeryconfig.QUEUES,
    *,
    now: float | None = None,
) -> list[QueueState]:
    """Depth and oldest-message age of each queue (age None: empty, or unstamped message)."""
    now = time.time() if now is None else now
    states = []
    for queue in queues:
        keys = _list_keys(queue)
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(key)
                pipe.lindex(key, -1)
            replies = pipe.execute()
        depth = sum(int(n) for n in replies[0::2])
        age: float | None = None
        task: str | None = None
        for raw in replies[1::2]:
            if raw is None:
                continue
            due, name = message_due_at(raw)
            if due is not None and (age is None or now - due > age):
                age, task = max(0.0, now - due), name
            elif task is None:
                task = name
        states.append(QueueState(queue, depth, age, task))
    return states


@inspect_command()
def tgfleet_task_events(state: Any, **_: Any) -> dict[str, Any]:
    """Whether this worker sends task events (Flower turns them on)."""
    dispatcher = state.consumer.event_dispatcher
    enabled = bool(dispatcher is not None and dispatcher.enabled and "task" in dispatcher.groups)
    return {"task_events": enabled}


def task_events_state(app: Celery, timeout: float = 1.0) -> dict[str, bool]:
    """Worker name -> whether it sends task events, for the workers that answered."""
    replies = app.control.inspect(timeout=timeout)._request("tgfleet_task_events") or {}
    return {name: bool(reply.get("task_events")) for name, reply in replies.items()}
