"""Analytics queue tasks: roll-ups into ``bot_metrics`` (logic in tgfleet.db.rollups)."""

from __future__ import annotations

import logging

from celery import shared_task

from tgfleet.db.rollups import rollup_recent
from tgfleet.platform.celery_app import TgfleetTask
from tgfleet.platform.names import ROLLUP

log = logging.getLogger(__name__)


@shared_task(name=ROLLUP, bind=True, ignore_result=True)
def rollup(self: TgfleetTask) -> dict[str, int]:
    """Recompute the recent hour and day buckets of every bot (idempotent per bucket)."""
    results = rollup_recent(self.app.settings)
    for result in results:
        log.info(
            "roll-up %s %s..%s: %d buckets written",
            result.bucket.value,
            result.start.isoformat(),
            result.end.isoformat(),
            result.written,
        )
    return {result.bucket.value: result.written for result in results}
