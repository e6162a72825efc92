"""Ping: is a worker consuming, and how long does a task take to come back?

``tgfleet.maintenance.ping`` records its answer in Redis under ``PING_PREFIX + token``;
``ping_round_trip`` enqueues one and polls for the answer, so it works without a result
backend.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from celery import Celery

from tgfleet.platform.names import MAINTENANCE_QUEUE, PING, PING_PREFIX
from tgfleet.platform.redis import redis_client
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)

#: How long an answer waits in Redis for its caller.
ANSWER_TTL_S = 300


def answer_ping(settings: Settings, token: str) -> str:
    """A worker's side: record that it ran, where and when, under ``token``."""
    answer = f"pong from {socket.gethostname()} pid {os.getpid()} at {time.time():.3f}"
    redis_client(settings.redis_url).set(PING_PREFIX + token, answer, ex=ANSWER_TTL_S)
    log.info("ping %s answered", token)
    return answer


def ping_round_trip(app: Celery, timeout: float = 30.0) -> tuple[float, str]:
    """Enqueue a ping and wait for a worker's answer; returns (seconds, answer)."""
    token = uuid.uuid4().hex
    client = redis_client(str(app.conf.broker_url))
    started = time.monotonic()
    app.send_task(PING, args=[token], queue=MAINTENANCE_QUEUE)
    key = PING_PREFIX + token
    while time.monotonic() - started < timeout:
        answer = client.get(key)
        if answer is not None:
            client.delete(key)
            text = answer.decode() if isinstance(answer, bytes) else str(answer)
            return time.monotonic() - started, text
        time.sleep(0.02)
    raise TimeoutError(
        f"no worker answered {PING} within {timeout:.0f}s: is a worker consuming the "
        f"'{MAINTENANCE_QUEUE}' queue? (celery -A tgfleet worker -Q {MAINTENANCE_QUEUE})"
    )
