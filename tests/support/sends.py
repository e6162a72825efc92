"""Fixtures for the send path's tests.

* ``send_world`` (tests/tasks): a simulator, bots and users in it and in PostgreSQL, and
  real sender workers (``celery -A tgfleet worker -Q sends -P threads``) pointed at it;
* ``bot_id`` (tests/sends): a bot in the database and an empty ``sends`` queue, for the
  code that never talks to Telegram; ``queued_tasks`` reads that queue.
"""

from __future__ import annotations

import base64
import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import delete, func, select

from tests.support.waiting import log_tail, wait_for_log, wait_until
from tgfleet.db import (
    Bot,
    Entity,
    Outbox,
    OutboxStatus,
    PeerType,
    encrypt_secret,
    session_scope,
)
from tgfleet.dev.processes import Child, ProcessGroup
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.settings import Settings
from tgfleet.sends.outbox import queue_message
from tgfleet.simulator import SimulatorThread

TERMINAL = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.DEAD)
#: Fast failure handling for tests (production defaults are minutes).
FAST_ENV = {
    "TGFLEET_SEND_MAX_ATTEMPTS": "3",
    "TGFLEET_SEND_BACKOFF_BASE_S": "0.3",
    "TGFLEET_SEND_BACKOFF_CAP_S": "1",
    "TGFLEET_SEND_LEASE_S": "5",
    "TGFLEET_SEND_SWEEP_INTERVAL_S": "2",
}
_REDIS_PATTERNS = ("tgfleet:rl:*", "tgfleet:pace:*", "tgfleet:metrics:*", "tgfleet:sends:*")


@dataclass
class SendWorld:
    """A simulator, bots/users in it and in the database, and sender workers."""

    sim: SimulatorThread
    settings: Settings
    env: dict[str, str]
    group: ProcessGroup
    bots: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    workers: list[Child] = field(default_factory=list)

    # -- set-up ------------------------------------------------------------------------
    def add_bot(self, admins: list[int] | None = None) -> dict[str, Any]:
        bot = self.sim.create_bot()
        with session_scope(self.settings, role="admin") as s:
            s.execute(delete(Bot).where(Bot.id == bot["id"]))
            s.add(
                Bot(
                    id=bot["id"],
                    name=bot["username"],
                    admin_chat_ids=admins or [],
                    token_encrypted=encrypt_secret(self.settings, bot["token"]),
                )
            )
        self.bots.append(bot)
        return bot

    def add_user(self, name: str = "user", *, username: str | None = None) -> dict[str, Any]:
        user = self.sim.create_user(name, username=username)
        self.users.append(user)
        return user

    def bot_with_users(self, count: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A bot and ``count`` users its listener has seen."""
        bot = self.add_bot()
        users = [self.add_user(f"u{i}") for i in range(count)]
        self.listener_saw(bot["id"], [u["id"] for u in users])
        return bot, users

    def access_hash(self, bot_id: int, user_id: int) -> int:
        return int(self.sim.call(lambda: self.sim.sim.world.access_hash(bot_id, user_id)))

    def listener_saw(self, bot_id: int, user_ids: list[int]) -> None:
        """Put the users in the entity store, as a listener would after their updates."""
        with session_scope(self.settings, bot_id=bot_id) as s:
            for user_id in user_ids:
                s.merge(
                    Entity(
                        bot_id=bot_id,
                        peer_type=PeerType.USER,
                        peer_id=user_id,
                        access_hash=self.access_hash(bot_id, user_id),
                    )
                )

    def queue(self, items: list[tuple[int, int, str]], **options: Any) -> list[int]:
        """Queue (bot_id, chat_id, text) items; returns the outbox ids."""
        ids: list[int] = []
        for bot_id in sorted({b for b, _, _ in items}):
            with session_scope(self.settings, bot_id=bot_id) as s:
                for b, chat_id, text in items:
                    if b == bot_id:
                        ids.append(queue_message(s, bot_id, chat_id, text, **options).id)
        return ids

    def start_senders(self, count: int, threads: int = 8, **env: str) -> list[Child]:
        started = []
        for _ in range(count):
            n = len(self.workers) + 1
            child = self.group.celery(
                f"sender{n}",
                "worker",
                "-Q",
                "sends",
                "-P",
                "threads",
                "-c",
                str(threads),
                "-n",
                f"sender{n}-{os.getpid()}@%h",
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "INFO",
                extra_env={**FAST_ENV, **env},
            )
            self.workers.append(child)
            started.append(child)
        for child in started:
            wait_for_log(child, "ready.", 60)
        return started

    # -- observations --------------------------------------------------------------------
    def statuses(self, bot_ids: list[int] | None = None) -> Counter[str]:
        ids = bot_ids or [b["id"] for b in self.bots]
        with session_scope(self.settings, role="admin") as s:
            rows = s.execute(
                select(Outbox.status, func.count())
                .where(Outbox.bot_id.in_(ids))
                .group_by(Outbox.status)
            ).all()
        return Counter({status.value: n for status, n in rows})

    def rows(self, bot_id: int) -> list[Outbox]:
        with session_scope(self.settings, bot_id=bot_id) as s:
            return list(s.scalars(select(Outbox).where(Outbox.bot_id == bot_id)))

    def wait_settled(self, total: int, timeout: float, bot_ids: list[int] | None = None) -> None:
        """Wait until ``total`` outbox rows are sent, failed or dead."""
        wait_until(
            lambda: sum(self.statuses(bot_ids)[s.value] for s in TERMINAL) >= total,
            timeout,
            f"{total} outbox rows to settle",
            poll=0.25,
            detail=lambda: f"outbox: {dict(self.statuses(bot_ids))}",
        )

    def received(self, user_id: int, bot_id: int | None = None) -> list[str]:
        return [m["text"] for m in self.sim.received(user_id, bot_id)]

    def log_tail(self) -> str:
        return "\n".join(f"--- {c.name}\n{log_tail(c)}" for c in self.workers)


@pytest.fixture
def send_world(
    migrated: Settings, subprocess_env: dict[str, str], tmp_path: Path
) -> Iterator[SendWorld]:
    """Given a simulator with Telegram's limits on, and a clean slate in Redis."""
    client = redis.Redis.from_url(migrated.redis_url)
    for pattern in _REDIS_PATTERNS:
        for key in client.scan_iter(pattern):
            client.delete(key)
    client.delete("sends")
    client.close()
    make_celery(migrated)  # the current app, for queue_message's enqueue
    with SimulatorThread() as sim:
        env = {
            **subprocess_env,
            **sim.env(tmp_path / "sim.pem"),
            "TGFLEET_NODE_NAME": f"node-{os.getpid()}",
        }
        group = ProcessGroup(tmp_path / "logs", env)
        world = SendWorld(sim, migrated, env, group)
        try:
            yield world
        finally:
            group.stop()
            with session_scope(migrated, role="admin") as s:
                s.execute(delete(Bot).where(Bot.id.in_([b["id"] for b in world.bots])))


@pytest.fixture
def bot_id(migrated: Settings) -> Iterator[int]:
    """Given a bot in the database (a random id far from the simulator's) and an empty queue."""
    bot = random.randint(10**12, 2 * 10**12)
    with session_scope(migrated, role="admin") as s:
        s.add(Bot(id=bot, name="outbox-test", admin_chat_ids=[]))
    make_celery(migrated)
    redis.Redis.from_url(migrated.redis_url).delete("sends")
    yield bot
    with session_scope(migrated, role="admin") as s:
        s.execute(delete(Bot).where(Bot.id == bot))
    redis.Redis.from_url(migrated.redis_url).delete("sends")


def queued_tasks(settings: Settings) -> list[dict[str, object]]:
    """The tasks waiting in the ``sends`` queue: their headers, and their kwargs."""
    client = redis.Redis.from_url(settings.redis_url)
    bodies = [json.loads(raw) for raw in client.lrange("sends", 0, -1)]
    return [b["headers"] | {"kwargs": _kwargs(b)} for b in bodies]


def _kwargs(body: dict[str, object]) -> object:
    raw = body["body"]
    assert isinstance(raw, str)
    return json.loads(base64.b64decode(raw))[1]
