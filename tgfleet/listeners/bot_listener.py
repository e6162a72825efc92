"""One bot's Telethon client inside a listener process.

It logs in once per node (the session is stored encrypted in ``bot_sessions``),
loads the saved update state so Telethon catches up with getDifference, and turns
every update into an envelope for the publisher. The update state it saves only
ever covers updates whose publish succeeded: a crash replays, it never skips.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from telethon import TelegramClient, events
from telethon._updates import MessageBox
from telethon._updates.messagebox import ENTRY_ACCOUNT, ENTRY_SECRET, PtsInfo
from telethon.tl import functions, types

from tgfleet.db import fleet
from tgfleet.db.fleet import BotInfo, SavedState
from tgfleet.listeners.publisher import Publisher
from tgfleet.platform.envelope import ORDERED_KINDS, classify, encode, entity_records
from tgfleet.platform.lease import Lease
from tgfleet.platform.metrics import metrics
from tgfleet.platform.names import RECORD_ENTITIES, UPDATES_QUEUE
from tgfleet.platform.settings import Settings
from tgfleet.platform.telegram import make_client, session_is_invalid
from tgfleet.platform.tracing import current_traceparent, span

log = logging.getLogger(__name__)

NODE_ROLE = "listener"
#: Update state is saved this long after a publish (batching the next ones).
SAVE_DELAY_S = 0.5
#: How long a chat's chain tail (its last published message) is saved with the state for
#: a listener that takes over: twice the inbox's CHAIN_STALL_S, after which that message
#: has run or its successor stopped waiting for it.
CHAIN_KEEP_S = 60.0
#: Most chain tails saved (the chats published to last): a save writes them all.
CHAIN_TAILS_MAX = 5_000


class DifferenceStates(MessageBox):
    """Telethon's update state machine, telling ``on_difference`` the updates each
    difference brought and the state after it (Telethon keeps that state to itself),
    and handing over every update a difference brought."""

    __slots__ = ("on_difference",)

    def apply_difference_type(self, diff: Any, chat_hashes: Any) -> Any:
        # Telethon sorts a difference's other_updates as if they had come live while the
        # difference is fetched, so those on the account's pts or qts (edits, deletes, a
        # user blocking the bot, members joining) are dropped as "being fetched": they
        # are the difference's own, and come after its messages.
        updates, users, chats = super().apply_difference_type(diff, chat_hashes)
        handed = {id(update) for update in updates}
        missed = [
            update
            for update in getattr(diff, "other_updates", ())
            if id(update) not in handed and _on_account_sequence(update)
        ]
        return [*updates, *missed], users, chats

    def apply_difference(self, diff: Any, chat_hashes: Any) -> Any:
        updates, users, chats = super().apply_difference(diff, chat_hashes)
        account, _ = self.session_state()
        state = SavedState(account["pts"], account["qts"], account["date"], 0)
        self.on_difference(updates, state)
        return updates, users, chats


def _on_account_sequence(update: Any) -> bool:
    info = PtsInfo.from_update(update)
    return info is not None and info.entry in (ENTRY_ACCOUNT, ENTRY_SECRET)


class BotListener:
    """Listens for one bot while this process holds its lease."""

    def __init__(
        self, settings: Settings, bot: BotInfo, lease: Lease, publisher: Publisher
    ) -> None:
        self.settings = settings
        self.bot = bot
        self.lease = lease
        self.publisher = publisher
        self.client: TelegramClient | None = None
        self.node = fleet.node_name(NODE_ROLE)
        #: Last inbound message id published per chat: the order chain for workers.
        self._prev: dict[int, int] = {}
        #: Chat -> (last inbound message id, unix time) of the publishes done (Redis took
        #: them), oldest first, starting from the ones the listener before this one saved:
        #: saved with the update state (``CHAIN_KEEP_S``).
        self._tails: dict[int, tuple[int, float]] = {}
        self._published: SavedState | None = None
        self._saved: SavedState | None = None
        self._save_task: asyncio.Task[None] | None = None
        self._barriers: set[asyncio.Task[None]] = set()
        self.updates = 0
        self.last_update_at: float | None = None

    @property
    def bot_id(self) -> int:
        return self.bot.id

    async def start(self) -> None:
        """Connect (logging in when this node has no session yet) and start listening.

        A stored session that Telegram says is invalid (revoked, unregistered, or an auth
        key the server does not know) is dropped and the bot logs in again with its token
        at once. Any other error (the network, a timeout, the database) propagates, the
        process retries later, and the stored session stays.
        """
        try:
            await self._start()
        except Exception as exc:
            if not session_is_invalid(exc):
                raise
            log.warning(
                "bot %s: its stored session is no longer valid (%r); logging in again",
                self.bot_id,
                exc,
            )
            await self.stop()
            await asyncio.to_thread(fleet.delete_session, self.settings, self.bot_id, self.node)
            await self._start()

    async def _start(self) -> None:
        settings, bot_id = self.settings, self.bot_id
        session = await asyncio.to_thread(fleet.load_session, settings, bot_id, self.node)
        state = await asyncio.to_thread(fleet.load_update_state, settings, bot_id)
        tails = await asyncio.to_thread(fleet.load_chain_tails, settings, bot_id, CHAIN_KEEP_S)
        self._tails = {**tails, **self._tails}
        client = make_client(
            settings, session, receive_updates=True, catch_up=True, sequential_updates=True
        )
        if state is not None and client.session.auth_key is None:
            # A new auth key (first run on this node, or the server moved) must log in
            # before it may catch up: getDifference needs a logged-in account, and
            # Telethon disconnects when its catch-up is refused.
            session = await self._log_in(client)
            client = make_client(
                settings, session, receive_updates=True, catch_up=True, sequential_updates=True
            )
        if state is not None:
            self._saved = self._published = state
            date = state.date or datetime.now(UTC)
            client.session.set_update_state(
                0, types.updates.State(state.pts, state.qts, date, state.seq, 0)
            )
        client.add_event_handler(self._on_update, events.Raw())
        self._track_differences(client)
        self.client = client
        await client.connect()
        if not await client.is_user_authorized():
            await self._log_in(client, keep_connected=True)
        me = await client.get_me()
        if state is None:
            # First run: remember where the account is now, so that a listener taking over
            # later catches up from here instead of from "now".
            current = await client(functions.updates.GetStateRequest())
            self._published = SavedState(current.pts, current.qts, current.date, 0)
            await self.save_state()
        log.info("listening for bot %s (@%s)", bot_id, getattr(me, "username", None))
        await self._warm_admins()

    async def _log_in(self, client: TelegramClient, *, keep_connected: bool = False) -> str:
        """Sign ``client`` in with the bot's token and store its session; returns it."""
        settings, bot_id = self.settings, self.bot_id
        if not client.is_connected():
            await client.connect()
        token = await asyncio.to_thread(fleet.bot_token, settings, bot_id)
        await client.sign_in(bot_token=token)
        session = str(client.session.save())
        await asyncio.to_thread(fleet.save_session, settings, bot_id, self.node, session)
        log.info("bot %s logged in on %s; session stored", bot_id, self.node)
        if not keep_connected:
            await client.disconnect()
        return session

    async def _warm_admins(self) -> None:
        """Record the admin chats' entities this session can resolve in the entity store."""
        assert self.client is not None
        found: list[Any] = []
        for admin in self.bot.admin_chat_ids:
            try:
                found.append(await self.client.get_entity(admin))
            except (ValueError, TypeError) as exc:
                log.warning("bot %s cannot resolve admin %s yet: %s", self.bot_id, admin, exc)
        records = [record.to_json() for record in entity_records(found)]
        if records:
            await self.publisher.send(RECORD_ENTITIES, [self.bot_id, records], UPDATES_QUEUE)

    def _track_differences(self, client: TelegramClient) -> None:
        """Let the updates that getDifference fetched move the saved state too.

        Telethon hands them over as ``UpdateNewMessage`` with pts 0, after it has moved its
        own state to the difference's (``MessageBox.apply_difference``, Telethon 1.x). So
        the state after each difference (or slice of one) goes with the last update it
        brought and is saved once that update is published; a difference with nothing
        to hand over moves the state once everything before it is published. Saving from
        the updates' own pts alone, every restart fetched the same difference again.
        """
        box = DifferenceStates(client._message_box._log)
        box.on_difference = self._on_difference
        client._message_box = box

    def _on_difference(self, updates: list[Any], state: SavedState) -> None:
        if updates:
            updates[-1]._tgfleet_state = state
            return
        barrier = self.publisher.after_published(lambda: self._advance_to(state))
        task = asyncio.get_running_loop().create_task(barrier)
        self._barriers.add(task)
        task.add_done_callback(self._barriers.discard)

    async def _on_update(self, update: Any) -> None:
        message = getattr(update, "message", None)
        pts, qts = getattr(update, "pts", None), getattr(update, "qts", None)
        date = getattr(message, "date", None) or getattr(update, "date", None)
        after: SavedState | None = getattr(update, "_tgfleet_state", None)
        if isinstance(update, types.UpdateNewMessage) and getattr(message, "out", False):
            # Our own sends (from sender sessions): nothing to handle, but the state moves.
            if after is None:
                self._advance(pts, date)
            else:
                await self.publisher.after_published(lambda: self._advance_to(after))
            return
        entities = getattr(update, "_entities", {}) or {}
        bot = str(self.bot_id)
        metrics().updates_received.labels(bot).inc()
        # A message is handled after the chat's last message published before it, and so
        # is a press, a block or a membership change (the order chain, ``prev``).
        kind, _, chat_id, msg_id = classify(update)
        chain = chat_id if kind in ORDERED_KINDS else None  # the chat whose order it takes
        prev = None
        if chain is not None:
            prev = self._prev.get(chain)
            if prev is None:
                prev = self._inherited_tail(chain, msg_id)
        with span("tgfleet.publish", "producer", attributes={"tgfleet.bot": self.bot_id}):
            envelope = encode(
                self.bot_id,
                update,
                entities.values(),
                prev_id=prev,
                lease=self.lease.token,
                trace_parent=current_traceparent(),
            )

            def published() -> None:
                self._advance(pts, date, qts, after)
                if chain is not None and msg_id is not None:
                    self._tail(chain, msg_id)
                metrics().updates_published.labels(bot).inc()

            await self.publisher.publish(envelope, published)
        if chain is not None and msg_id is not None:
            self._prev[chain] = msg_id
        self.updates += 1
        self.last_update_at = time.time()

    def _inherited_tail(self, chat_id: int, msg_id: int | None) -> int | None:
        """The last message of ``chat_id`` the listener before this one published (saved
        with the state this one started from), if it came before ``msg_id``: the old
        listener's messages may still be on their way to the workers, and the chat's
        first message from this one waits for it as the old one's next would have."""
        tail = self._tails.get(chat_id)  # (a chat this one published for has a ``prev``)
        if tail is None or msg_id is None or tail[0] >= msg_id:
            return None
        return tail[0]

    def _tail(self, chat_id: int, msg_id: int) -> None:
        """``msg_id`` was published for ``chat_id``: the chat's tail, newest last."""
        tails = self._tails
        tails.pop(chat_id, None)
        tails[chat_id] = (msg_id, time.time())
        if len(tails) > CHAIN_TAILS_MAX:
            del tails[next(iter(tails))]

    def _recent_tails(self) -> dict[int, tuple[int, float]]:
        """The tails of the last CHAIN_KEEP_S (older ones are dropped): what is saved."""
        tails, oldest = self._tails, time.time() - CHAIN_KEEP_S
        while tails:
            chat_id = next(iter(tails))
            if tails[chat_id][1] >= oldest:
                break
            del tails[chat_id]
        return dict(tails)

    def _advance(
        self,
        pts: int | None,
        date: datetime | None,
        qts: int | None = None,
        after: SavedState | None = None,
    ) -> None:
        """Move the state to save past a published update (pts for messages, qts for
        updates like UpdateBotStopped and UpdateChatParticipant; ``after``: the state of
        the difference whose last update it was)."""
        if after is not None:
            self._advance_to(after)
        current = self._published or SavedState(0, 0, None, 0)
        moved = SavedState(
            max(current.pts, pts or 0), max(current.qts, qts or 0), date or current.date, 0
        )
        self._move(current, moved)

    def _advance_to(self, state: SavedState) -> None:
        """Move the state to save to ``state`` (never back)."""
        current = self._published or SavedState(0, 0, None, 0)
        moved = SavedState(
            max(current.pts, state.pts), max(current.qts, state.qts), state.date or current.date, 0
        )
        self._move(current, moved)

    def _move(self, current: SavedState, moved: SavedState) -> None:
        if (moved.pts, moved.qts) != (current.pts, current.qts):
            self._published = moved
            if self._save_task is None or self._save_task.done():
                self._save_task = asyncio.get_running_loop().create_task(self._save_soon())

    async def _save_soon(self) -> None:
        """Save shortly after publishes, batching the ones that come in between."""
        await asyncio.sleep(SAVE_DELAY_S)
        try:
            await self.save_state()
        except Exception:
            log.exception("bot %s: saving update state failed; will retry", self.bot_id)

    async def save_state(self) -> None:
        """Persist the published state if it moved (called periodically and at stop)."""
        state = self._published
        if state is not None and state != self._saved:
            tails = self._recent_tails()
            await asyncio.to_thread(
                fleet.save_update_state, self.settings, self.bot_id, state, tails
            )
            self._saved = state

    async def stop(self) -> None:
        if self._save_task is not None:
            self._save_task.cancel()
        if self.client is not None:
            await self.client.disconnect()
        await self.save_state()
