"""Maintenance queue tasks: thin adapters over ``tgfleet.ops`` and ``tgfleet.db``."""

from __future__ import annotations

from celery import shared_task

from tgfleet.db.cleanup import expire_rows
from tgfleet.db.maintenance import run_partition_maintenance
from tgfleet.ops.alerts import alert_default_rows, run_health_check
from tgfleet.ops.ping import answer_ping
from tgfleet.platform.celery_app import TgfleetTask
from tgfleet.platform.names import CLEANUP, HEALTH, PARTITIONS, PING, RESTORE_UNACKED
from tgfleet.platform.redelivery import restore_stale_unacked


@shared_task(name=PING, bind=True, ignore_result=True)
def ping(self: TgfleetTask, token: str) -> str:
    """Round-trip check: record that a worker ran, where and when, under ``token``."""
    return answer_ping(self.app.settings, token)


@shared_task(name=RESTORE_UNACKED, bind=True, ignore_result=True)
def restore_unacked(self: TgfleetTask) -> int:
    """Give back ``updates`` messages stuck unacknowledged (see tgfleet.platform.redelivery)."""
    return restore_stale_unacked(self.app, self.app.settings.redeliver_after_s)


@shared_task(name=PARTITIONS, bind=True, ignore_result=True)
def partitions(self: TgfleetTask) -> dict[str, object]:
    """Premake monthly partitions, apply retention, move rows out of DEFAULT (and alert)."""
    report = run_partition_maintenance(self.app.settings)
    if report.default_rows_by_bot:
        alert_default_rows(self.app.settings, report)
    return report.as_dict()


@shared_task(name=CLEANUP, bind=True, ignore_result=True)
def cleanup(self: TgfleetTask) -> dict[str, int]:
    """Delete processed_updates, sent outbox rows and stale entities past retention."""
    return expire_rows(self.app.settings)


@shared_task(name=HEALTH, bind=True, ignore_result=True)
def health(self: TgfleetTask) -> dict[str, list[str]]:
    """Check listeners, queues, dead letters, partitions, migration; tell admins of changes."""
    return run_health_check(self.app.settings)
