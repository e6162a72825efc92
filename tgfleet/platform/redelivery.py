"""Give back messages a worker took but will never acknowledge.

With ``task_acks_late`` on Redis, a message a worker has taken sits in kombu's
``unacked`` hash until it is acknowledged. If the worker is killed (SIGKILL, OOM)
or loses its broker connection mid-task (Redis restarted), it can neither
acknowledge nor reject, and Redis redelivers only after the visibility timeout,
which has to be hours long because of countdowns. For queues whose tasks are short and idempotent
(``updates``), beat's ``restore_unacked`` job hands such messages back much sooner:
anything unacknowledged for longer than ``TGFLEET_REDELIVER_AFTER_S`` (more than
the longest countdown those tasks use) goes back to its queue. A message that a
live worker still holds is at worst delivered twice, which these tasks absorb.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from celery import Celery

from tgfleet.platform.handoff import reclaim_dead
from tgfleet.platform.names import UPDATES_QUEUE

log = logging.getLogger(__name__)

#: Queues whose tasks are short and idempotent enough for redelivery by age.
REDELIVERABLE_QUEUES = frozenset({UPDATES_QUEUE})


def restore_stale_unacked(
    app: Celery, older_than_s: float, queues: Iterable[str] = REDELIVERABLE_QUEUES
) -> int:
    """Put messages of ``queues`` unacknowledged for ``older_than_s`` back; returns how many."""
    wanted = set(queues)
    restored = 0
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        client = channel.client
        reclaim_dead(channel, client)  # dead consumers' messages, without waiting
        ceiling = time.time() - older_than_s
        for tag in client.zrangebyscore(channel.unacked_index_key, 0, ceiling):
            raw = client.hget(channel.unacked_key, tag)
            if raw is None:
                continue  # acknowledged meanwhile
            _message, _exchange, routing_key = json.loads(raw)
            if routing_key not in wanted:
                continue
            channel.qos.restore_by_tag(tag, client)  # atomic: WATCH + MULTI in kombu
            restored += 1
    if restored:
        log.warning(
            "gave back %d unacknowledged message(s) older than %.0fs", restored, older_than_s
        )
    return restored
