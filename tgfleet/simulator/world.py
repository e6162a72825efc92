"""The simulated world: bots (MTProto accounts), users, private chats, photos.

Pure in-memory state with no I/O. Every bot has one pts sequence (+1 per message in and
out, +1 per edit) and a bounded history that ``updates.getDifference`` answers from.
Simulated users are not MTProto clients: they act through the control API and record what
bots send them.
"""

from __future__ import annotations

import os
import re
import secrets
import struct
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from tgfleet.simulator.files import Document, Photo
from tgfleet.simulator.hashes import AccessHashes

__all__ = ["Document", "Photo"]  # re-exported: world objects

DEFAULT_HISTORY_LIMIT = 10_000
DEFAULT_INBOX_LIMIT = 10_000
_RANDOM_ID_MEMORY = 10_000
_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")


class WorldError(Exception):
    """A request the world refuses; carries Telegram's error code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


@dataclass(slots=True)
class StoredMessage:
    """A message as the bot's account sees it: in the private chat with ``peer_id``, or,
    when ``chat_id`` is set, in that group, sent by ``peer_id`` (the bot itself if out)."""

    id: int
    peer_id: int
    out: bool
    date: int
    text: str
    pts: int
    reply_to: int | None = None
    photo_id: int | None = None
    edit_date: int | None = None
    random_id: int | None = None
    chat_id: int | None = None
    document_id: int | None = None
    markup: dict[str, Any] | None = None  # buttons, as the control API shows them
    action: dict[str, Any] | None = None  # a service message: {"type", "user_id", ...}


@dataclass(slots=True)
class HistoryEntry:
    pts: int
    kind: str  # "new", "edit" or "delete"
    message_id: int


@dataclass(slots=True)
class QtsEntry:
    """An update on the bot's qts sequence (UpdateBotStopped, UpdateChatParticipant)."""

    qts: int
    kind: str  # "stopped" or "participant"
    date: int
    user_id: int
    flag: bool  # stopped / joined
    chat_id: int | None = None
    actor_id: int | None = None


@dataclass
class Bot:
    id: int
    token: str
    first_name: str
    username: str
    pts: int = 1
    next_message_id: int = 1
    messages: OrderedDict[int, StoredMessage] = field(default_factory=OrderedDict)
    history: deque[HistoryEntry] = field(default_factory=deque)
    random_ids: OrderedDict[int, int] = field(default_factory=OrderedDict)
    flood_until: float = 0.0
    #: The bot's Stars, in tenths (paid broadcasts cost 0.1 Star a message), and how
    #: many messages it paid for.
    stars_tenths: int = 0
    paid_messages: int = 0
    qts: int = 0
    qts_history: deque[QtsEntry] = field(default_factory=deque)


@dataclass(slots=True)
class Received:
    """A message a simulated user received from a bot."""

    bot_id: int
    message_id: int
    date: float
    text: str
    reply_to: int | None = None
    photo_id: int | None = None
    edited_at: float | None = None
    chat_id: int | None = None
    media: dict[str, Any] | None = None  # {"type", "id", "file_name", "mime_type", "size"}
    markup: dict[str, Any] | None = None
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        media = self.media
        if media is None and self.photo_id is not None:
            media = {"type": "photo", "id": self.photo_id}
        return {
            "bot_id": self.bot_id,
            "message_id": self.message_id,
            "date": self.date,
            "text": self.text,
            "reply_to": self.reply_to,
            "media": media,
            "markup": self.markup,
            "edited_at": self.edited_at,
            "edit_date": None if self.edited_at is None else int(self.edited_at),
            "deleted": self.deleted,
            "chat_id": self.chat_id,
        }


@dataclass
class User:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    #: The language of the user's Telegram app (``User.lang_code``, which bots see).
    lang_code: str | None = None
    received: deque[Received] = field(default_factory=deque)
    blocked_bots: set[int] = field(default_factory=set)


@dataclass
class Group:
    """A basic group: simulated users and bots; a bot sees messages of every member."""

    id: int
    title: str
    members: set[int]
    date: int = 0


class World:
    """Bots, users, their chats and photos; ``access_hash`` is keyed by a server secret."""

    def __init__(
        self,
        secret: bytes | None = None,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        inbox_limit: int = DEFAULT_INBOX_LIMIT,
    ) -> None:
        self.hashes = AccessHashes(secret or os.urandom(32))
        self.history_limit = history_limit
        self.inbox_limit = inbox_limit
        self.next_id = 1_000_001
        self.bots: dict[int, Bot] = {}
        self.users: dict[int, User] = {}
        self.photos: dict[int, Photo] = {}
        self.documents: dict[int, Document] = {}
        self.groups: dict[int, Group] = {}
        self._tokens: dict[str, int] = {}
        self._usernames: dict[str, int] = {}

    # -- identities -------------------------------------------------------------------

    def access_hash(self, account_id: int, peer_id: int) -> int:
        """The hash ``account_id`` must present for ``peer_id``; never 0."""
        return self.hashes.of(account_id, peer_id)

    def rehash(self, peer_id: int, account_id: int | None = None) -> None:
        """``peer_id`` (a user or bot) gets a new access hash as every bot sees it, or only
        as ``account_id`` does: the old one answers PEER_ID_INVALID from now on."""
        if peer_id not in self.users and peer_id not in self.bots:
            raise WorldError(404, f"no user or bot {peer_id}")
        if account_id is not None:
            self.bot(account_id)
        self.hashes.rehash(peer_id, account_id)

    def _allocate_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _claim_username(self, username: str | None, owner: int) -> None:
        if username is None:
            return
        if not _USERNAME.match(username):
            raise WorldError(400, "USERNAME_INVALID")
        if username.lower() in self._usernames:
            raise WorldError(400, "USERNAME_OCCUPIED")
        self._usernames[username.lower()] = owner

    def add_bot(self, bot: Bot) -> Bot:
        self._claim_username(bot.username, bot.id)
        self.bots[bot.id] = bot
        self._tokens[bot.token] = bot.id
        self.next_id = max(self.next_id, bot.id)
        return bot

    def add_user(self, user: User) -> User:
        self._claim_username(user.username, user.id)
        self.users[user.id] = user
        self.next_id = max(self.next_id, user.id)
        return user

    def create_bot(self, username: str | None = None, first_name: str | None = None) -> Bot:
        bot_id = self._allocate_id()
        username = username or f"sim{bot_id}_bot"
        token = f"{bot_id}:{secrets.token_urlsafe(26)}"
        return self.add_bot(Bot(bot_id, token, first_name or username, username))

    def create_user(
        self,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        lang_code: str | None = None,
    ) -> User:
        user = User(self._allocate_id(), first_name, last_name, username, lang_code)
        user.received = deque(maxlen=self.inbox_limit)
        return self.add_user(user)

    def bot_by_token(self, token: str) -> Bot | None:
        bot_id = self._tokens.get(token)
        return None if bot_id is None else self.bots[bot_id]

    def resolve_username(self, username: str) -> int | None:
        return self._usernames.get(username.lower())

    def bot(self, bot_id: int) -> Bot:
        try:
            return self.bots[bot_id]
        except KeyError:
            raise WorldError(404, f"no bot {bot_id}") from None

    def user(self, user_id: int) -> User:
        try:
            return self.users[user_id]
        except KeyError:
            raise WorldError(404, f"no user {user_id}") from None

    def create_group(self, title: str, member_ids: list[int]) -> Group:
        for member in member_ids:
            if member not in self.users and member not in self.bots:
                raise WorldError(404, f"no user or bot {member}")
        group = Group(self._allocate_id(), title, set(member_ids), int(time.time()))
        self.groups[group.id] = group
        return group

    def group(self, group_id: int) -> Group:
        try:
            return self.groups[group_id]
        except KeyError:
            raise WorldError(404, f"no group {group_id}") from None

    def add_photo(self, width: int = 800, height: int = 600) -> Photo:
        photo_id = struct.unpack("<q", os.urandom(8))[0] & 0x7FFF_FFFF_FFFF_FFFF
        photo = Photo(photo_id, self.access_hash(0, photo_id), os.urandom(16), int(time.time()))
        photo.width, photo.height = width, height
        self.photos[photo_id] = photo
        return photo

    # -- messages ---------------------------------------------------------------------

    def _append(self, bot: Bot, message: StoredMessage) -> None:
        bot.messages[message.id] = message
        while len(bot.messages) > self.history_limit:
            bot.messages.popitem(last=False)
        self._record(bot, HistoryEntry(message.pts, "new", message.id))

    def _record(self, bot: Bot, entry: HistoryEntry) -> None:
        bot.history.append(entry)
        while len(bot.history) > self.history_limit:
            bot.history.popleft()

    def user_sends(
        self,
        user_id: int,
        bot_id: int,
        text: str = "",
        photo: Photo | None = None,
        reply_to: int | None = None,
        chat_id: int | None = None,
        document: Document | None = None,
        action: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """A user writes to a bot (or to a group the bot is in: ``chat_id``; ``action``
        makes it a service message); returns the message as the bot's account stores it."""
        self.user(user_id)
        bot = self.bot(bot_id)
        bot.pts += 1
        message = StoredMessage(
            id=bot.next_message_id,
            peer_id=user_id,
            out=False,
            date=int(time.time()),
            text=text,
            pts=bot.pts,
            reply_to=reply_to,
            photo_id=None if photo is None else photo.id,
            chat_id=chat_id,
            document_id=None if document is None else document.id,
            action=action,
        )
        bot.next_message_id += 1
        self._append(bot, message)
        return message

    def check_peer(self, bot: Bot, user_id: int, access_hash: int) -> User:
        user = self.users.get(user_id)
        if user is None or access_hash != self.access_hash(bot.id, user_id):
            raise WorldError(400, "PEER_ID_INVALID")
        return user

    def duplicate(self, bot: Bot, random_id: int) -> StoredMessage | None:
        """The message an earlier request with this random_id created, if any."""
        message_id = bot.random_ids.get(random_id)
        if message_id is None:
            return None
        return bot.messages.get(message_id)

    def recipients(self, bot: Bot, message: StoredMessage) -> list[User]:
        """The simulated users who see a message the bot sent."""
        if message.chat_id is None:
            user = self.users.get(message.peer_id)
            return [] if user is None else [user]
        group = self.groups.get(message.chat_id)
        members = [] if group is None else sorted(group.members)
        return [self.users[m] for m in members if m in self.users]

    def bot_sends(
        self,
        bot: Bot,
        to: User | Group,
        text: str,
        random_id: int,
        reply_to: int | None = None,
        photo: Photo | None = None,
        document: Document | None = None,
        markup: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """A bot writes to a user or a group (each user records it in their inbox)."""
        if isinstance(to, User) and bot.id in to.blocked_bots:
            raise WorldError(403, "USER_IS_BLOCKED")
        bot.pts += 1
        now = time.time()
        group = isinstance(to, Group)
        message = StoredMessage(
            id=bot.next_message_id,
            peer_id=bot.id if group else to.id,
            out=True,
            date=int(now),
            text=text,
            pts=bot.pts,
            reply_to=reply_to,
            photo_id=None if photo is None else photo.id,
            random_id=random_id,
            chat_id=to.id if group else None,
            document_id=None if document is None else document.id,
            markup=markup,
        )
        bot.next_message_id += 1
        self._append(bot, message)
        bot.random_ids[random_id] = message.id
        while len(bot.random_ids) > _RANDOM_ID_MEMORY:
            bot.random_ids.popitem(last=False)
        for user in self.recipients(bot, message):
            if user.received.maxlen is None:
                user.received = deque(user.received, maxlen=self.inbox_limit)
            item = Received(bot.id, message.id, now, text, reply_to, message.photo_id)
            item.chat_id, item.media, item.markup = (
                message.chat_id,
                self.media_json(message),
                markup,
            )
            user.received.append(item)
        return message

    def media_json(self, message: StoredMessage) -> dict[str, Any] | None:
        """A message's media as the control API shows it."""
        photo = None if message.photo_id is None else self.photos.get(message.photo_id)
        if photo is not None:
            return {"type": "photo", "id": photo.id}
        doc = None if message.document_id is None else self.documents.get(message.document_id)
        if doc is None:
            return None
        return {
            "type": doc.kind,
            "id": doc.id,
            "file_name": doc.file_name,
            "mime_type": doc.mime_type,
            "size": doc.size,
            "duration": doc.duration,
        }

    def inbox_item(self, user: User, bot_id: int, message_id: int) -> Received | None:
        """The user's copy of a bot's message, if the user received it."""
        for item in reversed(user.received):
            if item.bot_id == bot_id and item.message_id == message_id:
                return item
        return None
