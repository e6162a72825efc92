"""``tgfleet listen``: one asyncio process hosting many bots' listeners.

Every few seconds it reconciles: bots that are active in ``bots`` (and match
``--bots``) and whose lease it can take are started, up to ``--capacity``; bots it
no longer holds a lease for, or that were disabled or removed, are stopped. So a
second listener takes over a dead one's bots once their leases expire, and bots
added or disabled are picked up or dropped without a restart. It heartbeats each
bot into Redis and saves update state after publishes. SIGTERM finishes in-flight
publishes, saves state, releases leases and disconnects.

PostgreSQL or Redis going away does not end it: it keeps the bots it holds, keeps
publishing (holding updates while Redis is down), and retries reading the fleet, its
leases and saving update state every round until they are back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass

import redis
from sqlalchemy.exc import DBAPIError

from tgfleet.db import fleet
from tgfleet.listeners.bot_listener import BotListener
from tgfleet.listeners.publisher import Publisher
from tgfleet.platform import tracing
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.lease import LeaseStore
from tgfleet.platform.metrics import metrics, serve
from tgfleet.platform.metrics import stop as stop_metrics
from tgfleet.platform.names import LISTENER_HEARTBEATS
from tgfleet.platform.reachability import unreachable_service
from tgfleet.platform.settings import Settings
from tgfleet.platform.telegram import aes_backend

log = logging.getLogger(__name__)


@dataclass
class ListenOptions:
    bot_ids: list[int] | None = None
    capacity: int = 1000
    lease_ttl_s: float = 10.0
    reconcile_s: float = 2.0
    failure_backoff_s: float = 30.0


class ListenerProcess:
    def __init__(self, settings: Settings, options: ListenOptions) -> None:
        self.settings = settings
        self.options = options
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.leases = LeaseStore(self.redis, self.owner, ttl_s=options.lease_ttl_s)
        self.listeners: dict[int, BotListener] = {}
        self._failed_until: dict[int, float] = {}
        self._stopping = asyncio.Event()
        self.publisher: Publisher | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        backend = aes_backend()
        if backend != "cryptg":
            log.warning("Telethon uses the %s AES backend: install cryptg for speed", backend)
        self.publisher = Publisher(make_celery(self.settings), loop)
        self.publisher.start()
        log.info("listener %s started (capacity %d)", self.owner, self.options.capacity)
        serve(self.settings, "listener")
        tracing.configure(self.settings, "listener")
        try:
            while not self._stopping.is_set():
                await self._reconcile()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.options.reconcile_s)
        finally:
            await self._shutdown()

    async def _reconcile(self) -> None:
        try:
            wanted = {
                bot.id: bot
                for bot in await asyncio.to_thread(
                    fleet.active_bots, self.settings, self.options.bot_ids
                )
            }
        except Exception as exc:  # database down: keep listening with what we hold
            outage = unreachable_service(exc, self.settings)
            if outage is None:
                log.exception("cannot read the fleet; keeping current bots")
            else:  # one line each time, not a traceback every few seconds
                log.warning("cannot read the fleet (%s); keeping current bots", outage)
            wanted = {bot_id: listener.bot for bot_id, listener in self.listeners.items()}
        unsaved: list[int] = []  # bots whose update state the database did not take
        problem: Exception | None = None
        for bot_id, listener in list(self.listeners.items()):
            try:
                renewed = await asyncio.to_thread(self.leases.renew, listener.lease)
            except redis.RedisError as exc:
                # Nobody can take the lease while Redis is down; keep the bot, try later.
                log.warning("cannot renew leases (%s); keeping bots until Redis is back", exc)
                return
            if not renewed or bot_id not in wanted:
                reason = "lease lost" if not renewed else "disabled or removed"
                log.info("dropping bot %s (%s)", bot_id, reason)
                await self._stop_bot(bot_id, release=renewed)
            else:
                try:
                    await listener.save_state()
                except DBAPIError as exc:  # database down: keep the bot, save when it is back
                    unsaved.append(bot_id)
                    problem = unreachable_service(exc, self.settings) or exc
        if unsaved:
            log.warning("cannot save the update state of bots %s (%s); retrying", unsaved, problem)
        now = time.monotonic()
        for bot_id, bot in wanted.items():
            if bot_id in self.listeners or len(self.listeners) >= self.options.capacity:
                continue
            if self._failed_until.get(bot_id, 0) > now:
                continue
            try:
                lease = await asyncio.to_thread(self.leases.acquire, bot_id)
            except redis.RedisError as exc:
                log.warning("cannot take leases (%s); retrying", exc)
                return
            if lease is None:
                continue
            assert self.publisher is not None
            listener = BotListener(self.settings, bot, lease, self.publisher)
            self.listeners[bot_id] = listener
            self._count_from_zero(bot_id)
            try:
                await listener.start()
            except Exception as exc:
                exc = unreachable_service(exc, self.settings) or exc
                log.error(
                    "bot %s could not start: %s (retrying in %.0fs)",
                    bot_id,
                    exc,
                    self.options.failure_backoff_s,
                )
                self._failed_until[bot_id] = now + self.options.failure_backoff_s
                await self._stop_bot(bot_id, release=True)
        try:
            await asyncio.to_thread(self._heartbeat)
        except redis.RedisError as exc:
            log.warning("cannot write heartbeats (%s)", exc)

    @staticmethod
    def _count_from_zero(bot_id: int) -> None:
        """The bot's series exist from the lease on, at 0: an alert on a leased bot that
        receives nothing needs a counter that stays at 0, not one that is missing."""
        m, label = metrics(), str(bot_id)
        m.lease_held.labels(label).set(1)
        m.updates_received.labels(label).inc(0)
        m.updates_published.labels(label).inc(0)

    def _heartbeat(self) -> None:
        if not self.listeners:
            return
        now = time.time()
        beats = {
            str(bot_id): json.dumps(
                {
                    "owner": self.owner,
                    "host": socket.gethostname(),
                    "at": now,
                    "updates": listener.updates,
                    "last_update_at": listener.last_update_at,
                    "lease_token": listener.lease.token,
                    "pending_publishes": self.publisher.pending if self.publisher else 0,
                }
            )
            for bot_id, listener in self.listeners.items()
        }
        self.redis.hset(LISTENER_HEARTBEATS, mapping=beats)  # type: ignore[arg-type]

    async def _stop_bot(self, bot_id: int, *, release: bool) -> None:
        listener = self.listeners.pop(bot_id, None)
        if listener is None:
            return
        metrics().lease_held.labels(str(bot_id)).set(0)
        try:
            await listener.stop()
        except Exception:
            log.exception("error while stopping bot %s", bot_id)
        if release:
            try:
                await asyncio.to_thread(self.leases.release, listener.lease)
            except redis.RedisError as exc:  # it expires on its own
                log.warning("cannot release the lease of bot %s (%s)", bot_id, exc)

    async def _shutdown(self) -> None:
        log.info("listener %s stopping: finishing publishes", self.owner)
        for listener in self.listeners.values():
            if listener.client is not None:
                listener.client.remove_event_handler(listener._on_update)
        if self.publisher is not None:
            drained = await self.publisher.drain(timeout=30)
            if not drained:
                log.warning(
                    "%d updates unpublished at shutdown; they will be replayed",
                    self.publisher.pending,
                )
        for bot_id in list(self.listeners):
            await self._stop_bot(bot_id, release=True)
        if self.publisher is not None:
            self.publisher.stop()
        self.redis.close()
        stop_metrics()
        tracing.shutdown()
        log.info("listener %s stopped", self.owner)


def run_listener(settings: Settings, options: ListenOptions) -> int:
    asyncio.run(ListenerProcess(settings, options).run())
    return 0
