"""From a queue to a worker with nothing lost on the way: in-flight lists, a consumer
registry, and reclaiming what a dead consumer held.

kombu's Redis transport takes a message with ``BRPOP`` and only then records it as
unacknowledged (the ``unacked`` hash). A worker killed in between has the message in its
memory only, and it is gone (celery/celery#7950). A worker killed later holds its
messages in ``unacked``, where only the visibility timeout (hours) or beat's
``restore_unacked`` (``TGFLEET_REDELIVER_AFTER_S``, minutes) would give them back.

tgfleet's transport (``platform/transport.py``) consumes differently:

- **Taken in one step.** A consumer takes a message with ``TAKE``, a Lua script that pops
  it off its queue's list and pushes it onto the consumer's own in-flight list
  (``tgfleet:inflight:<consumer>``) atomically. When every queue it consumes is empty it
  waits with ``BLMOVE key key RIGHT RIGHT``: a blocking look at a queue that moves
  nothing (the popped element goes back where it was), then takes again.
- **Recorded, then released.** The ``MULTI`` that records the message in ``unacked``
  also removes it from the in-flight list. At every instant a message is in exactly one
  of: its queue, one consumer's in-flight list, ``unacked``.
- **A registry of consumers.** Each consuming channel writes its heartbeat into the
  sorted set ``tgfleet:consumers`` every ``HEARTBEAT_S``. The messages of reclaimable
  queues it holds unacknowledged are listed in its set ``tgfleet:held:<consumer>``,
  added in the same ``MULTI`` and removed with the acknowledgement.
- **Reclaim.** Every consuming channel (every ``RECLAIM_EVERY_S``) and beat's
  ``restore_unacked`` job look for consumers silent for ``DEAD_AFTER_S``: their in-flight
  messages go back to their queues, the ``unacked`` messages they held go back too, and
  their keys are deleted. A consumer that was only slow, not dead, gets its messages
  delivered a second time, which the reclaimable queues' tasks absorb.

Cost: the take is one round trip like ``BRPOP``; the in-flight removal and the held set
ride in kombu's existing pipelines; a waiting consumer sends one more command per wake.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from kombu.utils.encoding import bytes_to_str

from tgfleet.platform.names import SENDS_QUEUE, UPDATES_QUEUE

log = logging.getLogger(__name__)

#: Sorted set: consumer id -> time of its last heartbeat.
CONSUMERS_KEY = "tgfleet:consumers"
HEARTBEAT_S = 1.0
#: A consumer silent this long is dead: what it held is given back.
DEAD_AFTER_S = 6.0
RECLAIM_EVERY_S = 2.0
#: Queues whose held messages go back as soon as their consumer is dead: their tasks
#: absorb a second delivery (updates: the dedupe key; sends: the outbox row's claim).
RECLAIMABLE_QUEUES = frozenset({UPDATES_QUEUE, SENDS_QUEUE})
#: Queues a consumer of several waits on first (looked at at once when a message comes);
#: its other queues are looked at when the wait ends (``brpop_timeout``, 1 s).
WAIT_FIRST = (UPDATES_QUEUE, SENDS_QUEUE)

#: KEYS[1]: the consumer's in-flight list; KEYS[2..]: the queues' lists, in the order to
#: take from. Returns {list, message} or nil.
TAKE = """
for i = 2, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    redis.call('LPUSH', KEYS[1], item)
    return {KEYS[i], item}
  end
end
return false
"""


def new_consumer_id() -> str:
    """A consumer id no other channel anywhere has: host, pid, random."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def inflight_key(consumer: str) -> str:
    return f"tgfleet:inflight:{consumer}"


def held_key(consumer: str) -> str:
    return f"tgfleet:held:{consumer}"


def wait_key(queues: list[str]) -> str:
    """The queue a consumer of ``queues`` waits on when all are empty."""
    return next((q for q in WAIT_FIRST if q in queues), queues[0])


class RestoringChannel(Protocol):
    """What reclaiming needs of a kombu Redis channel (``platform/transport.Channel``)."""

    @property
    def qos(self) -> Any: ...

    def _do_restore_message(
        self, payload: Any, exchange: str, routing_key: str, pipe: Any, leftmost: bool = False
    ) -> None: ...

    def _decoded(self, raw: bytes, queue: str, client: Any = None) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Reclaimed:
    """What one reclaim gave back: dead consumers, in-flight and held messages."""

    consumers: int = 0
    inflight: int = 0
    held: int = 0


def heartbeat(client: Any, consumer: str, now: float | None = None) -> None:
    client.zadd(CONSUMERS_KEY, {consumer: time.time() if now is None else now})


def reclaim_dead(channel: RestoringChannel, client: Any, now: float | None = None) -> Reclaimed:
    """Give back what consumers silent for ``DEAD_AFTER_S`` held; safe to run anywhere,
    any number of times at once (each dead consumer is reclaimed under a lock)."""
    now = time.time() if now is None else now
    consumers = inflight = held = 0
    for raw_id in client.zrangebyscore(CONSUMERS_KEY, "-inf", now - DEAD_AFTER_S):
        consumer = bytes_to_str(raw_id)
        if not client.set(f"tgfleet:reclaiming:{consumer}", 1, nx=True, ex=30):
            continue  # another process is on it
        inflight += _requeue_inflight(channel, client, consumer)
        tags = [bytes_to_str(t) for t in client.smembers(held_key(consumer))]
        for tag in tags:
            channel.qos.restore_by_tag(tag, client)  # no-op for one acknowledged since
        client.pipeline().delete(held_key(consumer)).zrem(CONSUMERS_KEY, consumer).execute()
        consumers += 1
        held += len(tags)
    if consumers:
        log.warning(
            "reclaimed %d dead consumer(s): %d message(s) in flight, %d held unacknowledged "
            "went back to their queues",
            consumers,
            inflight,
            held,
        )
    return Reclaimed(consumers, inflight, held)


def leave(channel: RestoringChannel, client: Any, consumer: str) -> None:
    """A consumer closing: its in-flight messages (normally none) go back, and it leaves
    the registry; kombu gives back what it holds unacknowledged as it closes."""
    _requeue_inflight(channel, client, consumer)
    client.pipeline().delete(held_key(consumer)).zrem(CONSUMERS_KEY, consumer).execute()


def _requeue_inflight(channel: RestoringChannel, client: Any, consumer: str) -> int:
    """Put the messages on ``consumer``'s in-flight list back on their queues, in one
    transaction (WATCH: a consumer that is alive after all and releases one meanwhile
    makes it start over)."""
    key = inflight_key(consumer)
    moved = 0

    def move(pipe: Any) -> None:
        nonlocal moved
        # oldest first; one that is no message is set aside with its reason by _decoded
        decoded = [channel._decoded(raw, key, client) for raw in reversed(pipe.lrange(key, 0, -1))]
        payloads = [payload for payload in decoded if payload is not None]
        pipe.multi()
        for payload in payloads:
            info = payload["properties"]["delivery_info"]
            channel._do_restore_message(
                payload, info["exchange"], info["routing_key"], pipe, leftmost=False
            )
        pipe.delete(key)
        moved = len(payloads)

    client.transaction(move, key)
    return moved
