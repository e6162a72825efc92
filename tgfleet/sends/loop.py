"""The sender process's Telethon host: one asyncio loop thread, one client per bot.

Celery's thread pool runs ``deliver`` tasks in worker threads; they hand their Telegram
calls to this process's single event loop with :meth:`SenderLoop.run` and wait for the
answer. Clients are created lazily on the loop through ``make_client`` (so the
simulator/test-DC override applies) with ``receive_updates=False`` and
``flood_sleep_threshold=0``: FloodWait is the task queue's business, never a sleep.

Sessions: a node logs in with the bot token once and keeps its own session, encrypted,
in ``bot_sessions`` (``tgfleet.db.fleet.load_session``/``save_session``); a restart
reuses it. An auth key is never shared between machines (Telegram answers
AUTH_KEY_DUPLICATED when one is).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from telethon import TelegramClient
from telethon.errors import AuthKeyNotFound

from tgfleet.db import fleet
from tgfleet.platform.errors import TgfleetError
from tgfleet.platform.settings import Settings
from tgfleet.platform.telegram import make_client

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT_S = 30.0


class SenderUnavailable(TgfleetError):
    """The bot's client could not be connected or authorised (transient unless said)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class BotCredentials:
    """What a node needs to connect a bot: its stored session, else its token."""

    session: str | None
    token: str | None


class SessionStore(Protocol):
    """Loads and saves a bot's per-node session (see ``tgfleet.sends.sender``)."""

    def load(self, bot_id: int) -> BotCredentials: ...

    def save(self, bot_id: int, session: str) -> None: ...


class SenderLoop:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="tgfleet-sender-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait for it; ``TimeoutError`` after ``timeout``."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"Telegram call did not finish within {timeout:.0f}s") from None

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


class BotClients:
    """One connected Telethon client per bot on one :class:`SenderLoop`."""

    def __init__(self, settings: Settings, loop: SenderLoop, store: SessionStore) -> None:
        self.settings = settings
        self.loop = loop
        self.store = store
        self._clients: dict[int, TelegramClient] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, bot_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(bot_id, threading.Lock())

    def cached(self, bot_id: int) -> TelegramClient | None:
        return self._clients.get(bot_id)

    def get(self, bot_id: int) -> TelegramClient:
        """The bot's connected client, logging in (once per node) if needed. Thread-safe."""
        client = self._clients.get(bot_id)
        if client is not None and client.is_connected():
            return client
        with self._lock(bot_id):
            client = self._clients.get(bot_id)
            if client is not None and client.is_connected():
                return client
            if client is not None:
                log.info("bot %s: client disconnected, reconnecting", bot_id)
                self.loop.run(_reconnect(client), CONNECT_TIMEOUT_S)
                return client
            credentials = self.store.load(bot_id)
            client, fresh = self.loop.run(
                self._connect(bot_id, credentials), CONNECT_TIMEOUT_S + 10
            )
            if fresh is not None:
                self.store.save(bot_id, fresh)
            self._clients[bot_id] = client
            return client

    async def _connect(
        self, bot_id: int, credentials: BotCredentials
    ) -> tuple[TelegramClient, str | None]:
        """Connect; log in with the token when the stored session is missing or revoked.

        Returns the client and, after a new login, the session string to store.
        """
        client = make_client(
            self.settings,
            credentials.session,
            receive_updates=False,
            flood_sleep_threshold=0,
            request_retries=2,
            connection_retries=3,
            retry_delay=1,
            auto_reconnect=True,
        )
        _ignore_own_updates(client)
        try:
            try:
                await asyncio.wait_for(client.connect(), CONNECT_TIMEOUT_S)
            except AuthKeyNotFound:
                if credentials.session is None:
                    raise
                # Telegram forgot the stored session's auth key (transport error -404):
                # the only way on is a new key, which means logging in again.
                log.warning(
                    "bot %s: Telegram does not know the stored session's auth key; "
                    "logging in again",
                    bot_id,
                )
                await client.disconnect()
                return await self._connect(bot_id, BotCredentials(None, credentials.token))
            if credentials.session is not None and await client.is_user_authorized():
                return client, None
            if credentials.token is None:
                raise SenderUnavailable(
                    f"bot {bot_id} has no stored session for this node and no token: "
                    "add the token with `tgfleet bots add` (or the db CLI)",
                    permanent=True,
                )
            await client.sign_in(bot_token=credentials.token)
            log.info("bot %s: logged in on node %s (new session)", bot_id, self.settings.node_name)
            return client, _session_string(client)
        except BaseException:
            await client.disconnect()
            raise

    def forget(self, bot_id: int) -> None:
        """Drop a client (e.g. after AUTH_KEY_UNREGISTERED); the next use logs in again."""
        client = self._clients.pop(bot_id, None)
        if client is not None:
            try:
                self.loop.run(client.disconnect(), 10)
            except Exception:
                log.debug("bot %s: disconnect failed", bot_id, exc_info=True)

    def close(self) -> None:
        """Disconnect every client (worker shutdown)."""
        clients, self._clients = list(self._clients.values()), {}
        if not clients:
            return

        async def disconnect_all() -> None:
            await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)

        try:
            self.loop.run(disconnect_all(), 15)
        except Exception:
            log.warning("sender: clean disconnect did not finish", exc_info=True)


async def _reconnect(client: TelegramClient) -> None:
    await asyncio.wait_for(client.connect(), CONNECT_TIMEOUT_S)


def _session_string(client: TelegramClient) -> str:
    saved = client.session.save()
    if not isinstance(saved, str) or not saved:
        raise SenderUnavailable("the Telethon session could not be serialised")
    return saved


class DbSessionStore:
    """Per-node bot sessions in ``bot_sessions`` (``tgfleet.db.fleet``), encrypted."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def load(self, bot_id: int) -> BotCredentials:
        session = fleet.load_session(self.settings, bot_id, self.settings.node_name)
        try:
            token: str | None = fleet.bot_token(self.settings, bot_id)
        except fleet.FleetError:
            token = None
        return BotCredentials(session=session, token=token)

    def save(self, bot_id: int, session: str) -> None:
        fleet.save_session(self.settings, bot_id, self.settings.node_name, session)

    def forget(self, bot_id: int) -> None:
        fleet.delete_session(self.settings, bot_id, self.settings.node_name)


def _ignore_own_updates(client: TelegramClient) -> None:
    """Keep the pts of what the client sends out of its update state.

    Telethon feeds every sent message's pts (``UpdateShortSentMessage``) to the client's
    update state even with ``receive_updates=False``. A bot's messages are sent by
    several sender processes, so each one's state keeps finding gaps (the others'
    messages) and fills them with updates.getDifference: hundreds of calls a minute
    that fetch every message the others sent, only to drop them. A sender needs no
    update state at all (its listener has one), so its own updates are not stored."""
    client._sender._store_own_updates = lambda obj: None
