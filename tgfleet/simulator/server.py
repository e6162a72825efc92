"""The simulator: an MTProto server on loopback plus the world it serves, faults and stats."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

from telethon.crypto import aes as telethon_aes

# (importing these registers their RPC handlers)
from tgfleet.simulator import callbacks, difference, editing, messaging  # noqa: F401
from tgfleet.simulator.callbacks import CallbackQueries
from tgfleet.simulator.config import SimulatorConfig
from tgfleet.simulator.connection import ClientConnection
from tgfleet.simulator.handshake import ServerKey
from tgfleet.simulator.limits import PAID_FEE_TENTHS, FloodControl, FloodLimits
from tgfleet.simulator.media import Uploads
from tgfleet.simulator.membership import set_blocked
from tgfleet.simulator.methods import Methods
from tgfleet.simulator.pushes import PushFaults
from tgfleet.simulator.render import PushBatch, message_push
from tgfleet.simulator.sessions import SessionStore
from tgfleet.simulator.state import dump_state, load_state, read_state_file, write_state_file
from tgfleet.simulator.world import (
    Bot,
    Document,
    Group,
    Received,
    StoredMessage,
    User,
    World,
    WorldError,
)

log = logging.getLogger(__name__)


def aes_backend() -> str:
    """Which AES implementation Telethon (and so the simulator) uses."""
    if telethon_aes.cryptg is not None:
        return "cryptg"
    if telethon_aes.libssl.encrypt_ige:
        return "libssl"
    return "pyaes"


class Simulator:
    """``async with Simulator() as sim:`` runs a server on a random loopback port."""

    def __init__(self, config: SimulatorConfig | None = None, **overrides: Any) -> None:
        self.config = config or SimulatorConfig(**overrides)
        self.world = World(
            history_limit=self.config.history_limit, inbox_limit=self.config.inbox_limit
        )
        self.sessions = SessionStore()
        self.flood = FloodControl(self.config.limits)
        self.rpc = Methods(self)
        self.stats: Counter[str] = Counter()
        self.uploads = Uploads()
        self.callbacks = CallbackQueries()
        self.server_key: ServerKey
        self.stalled_until = 0.0
        self._refuse_until = 0.0
        self._connections: set[ClientConnection] = set()
        self._by_bot: dict[int, set[ClientConnection]] = {}
        self.push_faults = PushFaults(self)
        # (bot id, method name or "*") -> monotonic time its forced FLOOD_WAIT ends
        self.method_floods: dict[tuple[int, str], float] = {}
        self._server: asyncio.Server | None = None
        self._control: Any = None
        self._saver: asyncio.Task[None] | None = None
        self._dirty = False
        self.port = self.config.port

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        data = read_state_file(cfg.state_path) if cfg.state_path else None
        if data is not None:
            self.server_key = load_state(data, self.world, self.sessions, cfg.limits)
        else:
            self.server_key = ServerKey.generate()
            self._dirty = True
        if cfg.rsa_key_out is not None:
            self.write_rsa_key(cfg.rsa_key_out)
        backend = aes_backend()
        if backend != "cryptg":
            log.warning("simulator: AES backend is %s, not cryptg: expect low throughput", backend)
        await self._listen()
        if cfg.control_port is not None:
            from tgfleet.simulator.control import ControlServer

            self._control = ControlServer(self)
            await self._control.start(cfg.host, cfg.control_port)
        if cfg.state_path is not None:
            self.save()
            self._saver = asyncio.create_task(self._save_periodically())
        log.info(
            "simulator: MTProto on %s:%s, control API on %s, AES %s",
            cfg.host,
            self.port,
            self.control_url or "(none)",
            backend,
        )

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientConnection(self), self.config.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
            self._saver = None
        if self._control is not None:
            await self._control.stop()
            self._control = None
        await self._close_listener()
        if self.config.state_path is not None:
            self.save()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.config.host, self.port

    @property
    def control_url(self) -> str | None:
        if self._control is None:
            return None
        return f"http://{self.config.host}:{self._control.port}"

    @property
    def public_pem(self) -> str:
        return self.server_key.public_pem()

    def write_rsa_key(self, path: str | Path) -> Path:
        """Write the PKCS#1 public key PEM that clients register with Telethon."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.public_pem, encoding="utf-8")
        return target

    # -- persistence ---------------------------------------------------------------------

    def mark_dirty(self) -> None:
        self._dirty = True

    def save(self) -> None:
        if self.config.state_path is None:
            return
        data = dump_state(self.world, self.sessions, self.server_key, self.config.limits)
        write_state_file(self.config.state_path, data)
        self._dirty = False

    async def _save_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.save_interval)
            if self._dirty:
                try:
                    self.save()
                except OSError:
                    log.exception("simulator: could not save state")

    # -- connections (called by ClientConnection) ----------------------------------------

    @property
    def refusing(self) -> bool:
        return time.monotonic() < self._refuse_until

    def register(self, conn: ClientConnection) -> None:
        self._connections.add(conn)
        self.stats["connections_total"] += 1

    def unregister(self, conn: ClientConnection) -> None:
        self._connections.discard(conn)
        for conns in self._by_bot.values():
            conns.discard(conn)

    def bind(self, conn: ClientConnection) -> None:
        """Note which bot a connection's auth key is logged in as (for pushes)."""
        for conns in self._by_bot.values():
            conns.discard(conn)
        if conn.session is not None and conn.session.bot_id is not None:
            self._by_bot.setdefault(conn.session.bot_id, set()).add(conn)

    def add_auth_key(self, key: bytes) -> None:
        self.sessions.add(key)
        self.stats["auth_keys_created"] += 1
        self.mark_dirty()

    # -- world events --------------------------------------------------------------------

    def flood_wait(self, bot: Bot, chat_id: int, group: bool = False, paid: bool = False) -> int:
        """Seconds the bot must wait before sending to ``chat_id`` (0: send now). A
        ``paid`` message above the bot's free rate is charged to its Stars, or answers
        ``NEEDS_STARS`` when it has none left (``FloodControl.check_paid``)."""
        forced = bot.flood_until - time.monotonic()
        if forced > 0:
            return max(1, int(forced + 0.999))
        if not paid:
            return self.flood.check(bot.id, chat_id, group)
        can_pay = bot.stars_tenths >= PAID_FEE_TENTHS
        wait, charged = self.flood.check_paid(bot.id, chat_id, group, can_pay)
        if charged:
            bot.stars_tenths -= PAID_FEE_TENTHS
            bot.paid_messages += 1
            self.stats["paid_messages"] += 1
        return wait

    def listeners(self, bot_id: int) -> list[ClientConnection]:
        """The bot's connections that receive updates."""
        conns = self._by_bot.get(bot_id, ())
        return [c for c in conns if c.session is not None and c.session.listening]

    def push(self, bot: Bot, batch: PushBatch, exclude: ClientConnection | None = None) -> int:
        """Queue updates for every listening connection of ``bot`` (unless a push fault
        loses or holds them: ``pushes``)."""
        if self.push_faults.intercept(bot.id, batch, exclude):
            return 0
        sent = 0
        for conn in self._by_bot.get(bot.id, ()):
            if conn is not exclude and conn.session is not None and conn.session.listening:
                conn.push(batch)
                sent += 1
        self.stats["pushes"] += sent
        return sent

    def on_bot_message(
        self,
        bot: Bot,
        message: StoredMessage,
        origin: ClientConnection | None = None,
        edit: bool = False,
    ) -> None:
        """A bot sent (or edited) a message: count it, tell the bot's other sessions."""
        self.stats["edits" if edit else "sends"] += 1
        self.mark_dirty()
        if any(
            c is not origin and c.session and c.session.listening
            for c in self._by_bot.get(bot.id, ())
        ):
            self.push(bot, message_push(self.world, bot, message, edit), exclude=origin)

    # -- the control surface (Python API) ------------------------------------------------

    def create_bot(self, username: str | None = None, first_name: str | None = None) -> Bot:
        bot = self.world.create_bot(username, first_name)
        self.mark_dirty()
        return bot

    def create_user(
        self,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        lang_code: str | None = None,
    ) -> User:
        user = self.world.create_user(first_name, last_name, username, lang_code)
        self.mark_dirty()
        return user

    def user_send(
        self,
        user_id: int,
        bot_id: int,
        text: str = "",
        photo: bool = False,
        reply_to: int | None = None,
        document: Document | None = None,
    ) -> StoredMessage:
        """A simulated user writes to a bot; pushes it to the bot's listening sessions."""
        world = self.world
        picture = world.add_photo() if photo else None
        message = world.user_sends(user_id, bot_id, text, picture, reply_to, document=document)
        bot = world.bots[bot_id]
        self.stats["user_messages"] += 1
        self.mark_dirty()
        if self._by_bot.get(bot_id):
            self.push(bot, message_push(world, bot, message))
        return message

    def create_group(self, title: str, member_ids: list[int]) -> Group:
        """A basic group of simulated users and bots."""
        group = self.world.create_group(title, member_ids)
        self.mark_dirty()
        return group

    def user_send_group(
        self, user_id: int, group_id: int, text: str = "", photo: bool = False
    ) -> list[tuple[Bot, StoredMessage]]:
        """A user posts in a group: every bot in it gets (and is pushed) its own copy."""
        world = self.world
        group = world.group(group_id)
        if user_id not in group.members or user_id not in world.users:
            raise WorldError(403, "CHAT_WRITE_FORBIDDEN")
        picture = world.add_photo() if photo else None
        copies = []
        for bot_id in sorted(m for m in group.members if m in world.bots):
            bot = world.bots[bot_id]
            message = world.user_sends(user_id, bot_id, text, picture, chat_id=group_id)
            copies.append((bot, message))
            if self._by_bot.get(bot_id):
                self.push(bot, message_push(world, bot, message))
        self.stats["user_messages"] += 1
        self.mark_dirty()
        return copies

    def received(self, user_id: int, bot_id: int | None = None) -> list[Received]:
        """What bots sent to ``user_id`` (optionally only ``bot_id``), oldest first."""
        items = self.world.user(user_id).received
        return [r for r in items if bot_id is None or r.bot_id == bot_id]

    def block(self, user_id: int, bot_id: int, blocked: bool = True) -> int | None:
        """The user blocks (unblocks) the bot: UpdateBotStopped; returns its qts, if any."""
        return set_blocked(self, user_id, bot_id, blocked)

    def set_limits(self, **changes: Any) -> FloodLimits:
        self.config.limits.update(changes)
        self.flood.reset()
        self.mark_dirty()
        return self.config.limits

    # -- faults --------------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Abort every client TCP connection (clients reconnect with their auth keys)."""
        conns = list(self._connections)
        for conn in conns:
            conn.closed = True
            if conn.transport is not None:
                conn.transport.abort()
        self.stats["dropped_connections"] += len(conns)
        return len(conns)

    def stall(self, seconds: float) -> None:
        """Hold every reply and push for ``seconds`` (requests are still processed)."""
        self.stalled_until = asyncio.get_running_loop().time() + seconds

    def forget_auth_keys(self, bot_id: int) -> int:
        """Forget the bot's auth keys, as Telegram sometimes does: the next request on
        one gets transport error -404 (Telethon: AuthKeyNotFound), and the client must
        make a new key and log in again. Returns how many keys were forgotten."""
        self.world.bot(bot_id)
        forgotten = self.sessions.forget_bot(bot_id)
        self.mark_dirty()
        return forgotten

    def force_flood(self, bot_id: int, seconds: float) -> None:
        """Every send of ``bot_id`` fails with FLOOD_WAIT for ``seconds``."""
        self.world.bot(bot_id).flood_until = time.monotonic() + seconds

    def lose_pushes(self, bot_id: int, count: int) -> None:
        """Silently drop the bot's next ``count`` pushes (they stay in its history), so
        its listener sees a pts gap and must recover with updates.getDifference."""
        self.world.bot(bot_id)
        self.push_faults.lost[bot_id] = count

    def hold_pushes(
        self, bot_id: int, seconds: float | None = None, then: str = "too_long"
    ) -> None:
        """Hold back the bot's pushes for ``seconds`` (None: until released): ``pushes``."""
        self.world.bot(bot_id)
        self.push_faults.hold(bot_id, seconds, then)

    def release_pushes(self, bot_id: int, then: str | None = None) -> int:
        self.world.bot(bot_id)
        return self.push_faults.release(bot_id, then)

    def flood_method(self, bot_id: int, method: str, seconds: float) -> None:
        """Every call of ``method`` (Telegram's name, e.g. "contacts.resolveUsername", or
        "*" for every method but login) by the bot answers FLOOD_WAIT for ``seconds``."""
        self.world.bot(bot_id)
        self.method_floods[(bot_id, method)] = time.monotonic() + seconds

    def rehash(self, peer_id: int, bot_id: int | None = None) -> None:
        """Give a user a new access hash as every bot (or only ``bot_id``) sees it."""
        self.world.rehash(peer_id, bot_id)
        self.stats["rehashes"] += 1
        self.mark_dirty()

    def refuse_connections(self, seconds: float) -> None:
        """Close new connections at once for ``seconds`` (0 accepts again)."""
        self._refuse_until = time.monotonic() + seconds

    async def restart(self, downtime: float = 0.0) -> None:
        """Stop listening, drop everyone, persist, listen again on the same port (with new
        server salts, as a restarted process would have)."""
        await self._close_listener()
        self.save()
        self.sessions.rotate_salts()
        await asyncio.sleep(downtime)
        await self._listen()
        self.stats["restarts"] += 1

    def snapshot_stats(self) -> dict[str, Any]:
        listening = sum(
            1 for c in self._connections if c.session is not None and c.session.listening
        )
        return {
            "connections": len(self._connections),
            "listening_connections": listening,
            "auth_keys": len(self.sessions),
            "authorized_keys": sum(1 for s in self.sessions.all() if s.bot_id is not None),
            "bots": len(self.world.bots),
            "users": len(self.world.users),
            "pushes": self.stats["pushes"],
            "sends": self.stats["sends"],
            "flood_errors": self.stats["flood_errors"],
            "counters": dict(self.stats),
        }
