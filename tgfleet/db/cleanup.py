"""Clean-up of rows past their retention, in short committed batches.

* ``processed_updates`` older than ``TGFLEET_RETENTION_DAYS_PROCESSED_UPDATES``: an update
  redelivered after that would be handled again, so keep it well above any replay window
  (listener catch-up, redelivery of unacked messages).
* ``outbox`` rows ``sent`` longer ago than ``TGFLEET_RETENTION_DAYS_SENT_OUTBOX`` (failed
  and dead rows stay for inspection).
* ``entities`` not refreshed by any update for ``TGFLEET_RETENTION_DAYS_ENTITIES``, except
  the bots' admin chats (the sender must always be able to reach them).

Each batch is one transaction acting as the admin role (every bot), so row-level
security and the audit trigger apply as to any other write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text

from tgfleet.db.session import session_scope
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Expiry:
    """A batch delete: ``key`` columns of rows matching ``condition`` (``:cutoff`` bound)."""

    table: str
    key: str
    condition: str


EXPIRIES = {
    "processed_updates": Expiry(
        "processed_updates", "bot_id, dedupe_key", "processed_at < now() - :age"
    ),
    "outbox": Expiry("outbox", "bot_id, id", "status = 'sent' AND sent_at < now() - :age"),
    "entities": Expiry(
        "entities",
        "bot_id, peer_type, peer_id",
        "updated_at < now() - :age AND NOT EXISTS (SELECT 1 FROM bots b "
        "WHERE b.id = t.bot_id AND t.peer_id = ANY(b.admin_chat_ids))",
    ),
}


def retention_ages(settings: Settings) -> dict[str, timedelta]:
    return {
        "processed_updates": timedelta(days=settings.retention_days_processed_updates),
        "outbox": timedelta(days=settings.retention_days_sent_outbox),
        "entities": timedelta(days=settings.retention_days_entities),
    }


def expire_rows(
    settings: Settings, *, ages: dict[str, timedelta] | None = None, batch: int | None = None
) -> dict[str, int]:
    """Delete what is past retention; returns rows deleted per table."""
    ages = ages or retention_ages(settings)
    batch = batch or settings.maintenance_batch_rows
    deleted: dict[str, int] = {}
    for name, age in ages.items():
        spec = EXPIRIES[name]
        statement = text(
            f"DELETE FROM {spec.table} WHERE ({spec.key}) IN ("
            f"SELECT {spec.key} FROM {spec.table} t WHERE {spec.condition} LIMIT :batch)"
        )
        total = 0
        while True:
            with session_scope(settings, role="admin") as session:
                count = session.execute(statement, {"age": age, "batch": batch}).rowcount  # type: ignore[attr-defined]
            total += int(count)
            if count < batch:
                break
        deleted[name] = total
        if total:
            log.info("clean-up: %d %s rows past %s deleted", total, name, age)
    return deleted
