"""Dead letters: a bad update is kept with its reason, never dropped, never retried.

An envelope that names a bot of this fleet goes to ``dead_updates`` (a tenant table);
one that names no known bot cannot, and lands in the Redis list
``ORPHAN_DEAD_LETTERS`` (the newest 100,000 are kept). ``tgfleet status`` counts both.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from tgfleet.db import Bot, DeadUpdate, session_scope
from tgfleet.platform.metrics import metrics
from tgfleet.platform.names import ORPHAN_DEAD_LETTERS
from tgfleet.platform.redis import redis_client
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)

#: The ``reason`` label of ``tgfleet_dead_letters``: a fixed list, whatever the text says.
DEAD_LETTER_KINDS = (
    "bad_envelope",
    "bad_entities",
    "app_unavailable",
    "database_rejected",
    "handler_failed",
    "chain_gap",
)
#: How many orphan dead letters Redis keeps.
ORPHANS_KEPT = 100_000


def dead_letter(
    settings: Settings, envelope: Any, reason: str, task_id: str | None, *, kind: str
) -> None:
    """Keep a bad envelope with its reason: in dead_updates, or Redis if it names no bot.
    ``kind`` is the reason's class for ``tgfleet_dead_letters`` (one of DEAD_LETTER_KINDS)."""
    if kind not in DEAD_LETTER_KINDS:  # a label outside the list would be unbounded
        raise ValueError(f"dead letter kind {kind!r} is not one of {DEAD_LETTER_KINDS}")
    log.warning("dead-lettering update: %s", reason)
    metrics().dead_letters.labels(kind).inc()
    payload = envelope if isinstance(envelope, dict) else {"raw": repr(envelope)[:10_000]}
    bot_id = payload.get("bot")
    if isinstance(bot_id, int) and not isinstance(bot_id, bool):
        try:
            with session_scope(settings, bot_id=bot_id, correlation_id=task_id) as session:
                if session.execute(select(Bot.id).where(Bot.id == bot_id)).first() is not None:
                    key = payload.get("key")
                    session.add(
                        DeadUpdate(
                            bot_id=bot_id,
                            dedupe_key=key if isinstance(key, str) else None,
                            reason=reason,
                            payload=payload,
                        )
                    )
                    return
        except DBAPIError:
            log.exception("could not store the dead letter in PostgreSQL; keeping it in Redis")
    client = redis_client(settings.redis_url)
    pipe = client.pipeline(transaction=False)
    pipe.lpush(
        ORPHAN_DEAD_LETTERS,
        json.dumps({"reason": reason, "task_id": task_id, "envelope": payload}, default=str),
    )
    pipe.ltrim(ORPHAN_DEAD_LETTERS, 0, ORPHANS_KEPT - 1)
    pipe.execute()
