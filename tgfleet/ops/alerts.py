"""Health alerts: each problem tells the bot's admin chats once when it starts, and once
when it clears.

Open incidents live in the Redis hash ``tgfleet:health:incidents`` (problem key -> JSON
``{since, text, bot_id, notified}``). A problem seen for the first time is recorded
there before anyone is told; the notices go through the outbox with a dedupe key made of
the incident's key and start time, so a health run that crashes halfway and runs again
never tells anyone twice. A problem without a bot (a stuck queue, rows in DEFAULT) goes
to the admin chats of every active bot.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sqlalchemy import select

from tgfleet.db import Bot, BotStatus, session_scope
from tgfleet.db.maintenance import PartitionReport
from tgfleet.ops.health import Problem, collect_snapshot
from tgfleet.platform.names import HEALTH_INCIDENTS
from tgfleet.platform.redis import redis_client
from tgfleet.platform.settings import Settings
from tgfleet.sends.outbox import queue_message

log = logging.getLogger(__name__)


def run_health_check(settings: Settings, *, now: float | None = None) -> dict[str, list[str]]:
    """One health pass: open and clear incidents, telling admins; returns their keys."""
    now = time.time() if now is None else now
    snap = collect_snapshot(settings, now=now)
    current = {p.key: p for p in snap.problems}
    client = redis_client(settings.redis_url)
    opened: list[str] = []
    cleared: list[str] = []
    known = {
        (k.decode() if isinstance(k, bytes) else k): json.loads(v)
        for k, v in client.hgetall(HEALTH_INCIDENTS).items()
    }
    for key, problem in current.items():
        incident = known.get(key)
        if incident is None:
            incident = {"since": now, "text": problem.text, "bot_id": problem.bot_id}
            incident["notified"] = False
            client.hset(HEALTH_INCIDENTS, key, json.dumps(incident))
            opened.append(key)
            log.warning("health: %s", problem.text)
        if not incident.get("notified"):
            _notify(settings, key, incident, f"⚠️ tgfleet: {problem.text}", "open")
            incident["notified"] = True
            client.hset(HEALTH_INCIDENTS, key, json.dumps(incident))
    for key, incident in known.items():
        if key in current:
            continue
        _notify(settings, key, incident, f"✅ tgfleet: resolved: {incident['text']}", "clear")
        client.hdel(HEALTH_INCIDENTS, key)
        cleared.append(key)
        log.info("health: resolved: %s", incident["text"])
    return {"open": sorted(current), "opened": opened, "cleared": cleared}


def _recipients(settings: Settings, bot_id: int | None) -> dict[int, list[int]]:
    """Bot id -> admin chats that should hear about a problem of ``bot_id`` (None: all)."""
    with session_scope(settings, role="admin") as session:
        query = select(Bot.id, Bot.admin_chat_ids).where(Bot.status == BotStatus.ACTIVE)
        if bot_id is not None:
            query = query.where(Bot.id == bot_id)
        return {row.id: list(row.admin_chat_ids or []) for row in session.execute(query)}


def _notify(settings: Settings, key: str, incident: dict[str, Any], text: str, phase: str) -> None:
    for bot_id, chats in _recipients(settings, incident.get("bot_id")).items():
        if not chats:
            continue
        with session_scope(settings, bot_id=bot_id) as session:
            for chat in chats:
                dedupe = f"health:{key}:{incident['since']:.3f}:{phase}:{chat}"
                queue_message(session, bot_id, chat, text, dedupe_key=dedupe)


def alert_default_rows(settings: Settings, report: PartitionReport) -> None:
    """Tell the admins of bots whose rows had landed in a DEFAULT partition (now moved)."""
    by_bot: dict[int, list[str]] = {}
    for (table, bot_id), count in sorted(report.default_rows_by_bot.items()):
        by_bot.setdefault(bot_id, []).append(f"{count} {table}")
    stamp = f"{time.time():.0f}"
    for bot_id, what in by_bot.items():
        problem = Problem(
            f"default-rows-moved:{bot_id}",
            f"rows had landed in DEFAULT partitions ({', '.join(what)}): a monthly partition "
            "was missing; partition maintenance moved them into place",
            bot_id,
        )
        log.warning("bot %s: %s", bot_id, problem.text)
        incident = {"since": float(stamp), "bot_id": bot_id}
        _notify(settings, problem.key, incident, f"⚠️ tgfleet: {problem.text}", "moved")
