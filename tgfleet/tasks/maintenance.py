"""Maintenance queue tasks."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

import redis
from celery import Celery, shared_task

from tgfleet.platform.celery_app import TgfleetTask

log = logging.getLogger(__name__)

PING_KEY = "tgfleet:ping:{token}"


@shared_task(name="tgfleet.maintenance.ping", bind=True, ignore_result=True)
def ping(self: TgfleetTask, token: str) -> str:
    """Round-trip check: record that a worker ran, where and when, under ``token``.

    Works without a result backend: the caller polls ``PING_KEY`` in Redis.
    """
    answer = f"pong from {socket.gethostname()} pid {os.getpid()} at {time.time():.3f}"
    client = redis.Redis.from_url(self.app.settings.redis_url)
    try:
        client.set(PING_KEY.format(token=token), answer, ex=300)
    finally:
        client.close()
    log.info("ping %s answered", token)
    return answer


@shared_task(name="tgfleet.maintenance.restore_unacked", bind=True, ignore_result=True)
def restore_unacked(self: TgfleetTask) -> int:
    """Give back ``updates`` messages stuck unacknowledged (see tgfleet.platform.redelivery)."""
    from tgfleet.platform.redelivery import restore_stale_unacked

    return restore_stale_unacked(self.app, self.app.settings.redeliver_after_s)


def ping_round_trip(app: Celery, timeout: float = 30.0) -> tuple[float, str]:
    """Enqueue ``ping`` and wait for a worker's answer; returns (seconds, answer)."""
    token = uuid.uuid4().hex
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        started = time.monotonic()
        app.send_task("tgfleet.maintenance.ping", args=[token])
        key = PING_KEY.format(token=token)
        while time.monotonic() - started < timeout:
            answer = client.get(key)
            if answer is not None:
                client.delete(key)
                text = answer.decode() if isinstance(answer, bytes) else str(answer)
                return time.monotonic() - started, text
            time.sleep(0.02)
    finally:
        client.close()
    raise TimeoutError(
        f"no worker answered tgfleet.maintenance.ping within {timeout:.0f}s: is a worker "
        "consuming the 'maintenance' queue? (celery -A tgfleet worker -Q maintenance)"
    )


@shared_task(name="tgfleet.maintenance.partitions", bind=True, ignore_result=True)
def partitions(self: TgfleetTask) -> dict[str, object]:
    """Premake monthly partitions, apply retention, move rows out of DEFAULT (and alert)."""
    from tgfleet.db.maintenance import run_partition_maintenance
    from tgfleet.ops.alerts import alert_default_rows

    report = run_partition_maintenance(self.app.settings)
    if report.default_rows_by_bot:
        alert_default_rows(self.app.settings, report)
    return report.as_dict()


@shared_task(name="tgfleet.maintenance.cleanup", bind=True, ignore_result=True)
def cleanup(self: TgfleetTask) -> dict[str, int]:
    """Delete processed_updates, sent outbox rows and stale entities past retention."""
    from tgfleet.db.cleanup import expire_rows

    return expire_rows(self.app.settings)


@shared_task(name="tgfleet.maintenance.health", bind=True, ignore_result=True)
def health(self: TgfleetTask) -> dict[str, list[str]]:
    """Check listeners, queues, dead letters, partitions, migration; tell admins of changes."""
    from tgfleet.ops.alerts import run_health_check

    return run_health_check(self.app.settings)
