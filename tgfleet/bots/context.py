"""What a handler gets: ``Context``, the update, its sender, the session, and the effects
it can ask for (replies, edits, deletions, callback answers, media, events, state).

Handlers never call Telegram: every method here adds to the ``Effects`` the inbox writes
with the update's processed mark, in one transaction (see ``tgfleet.bots.router``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from sqlalchemy.orm import Session

from tgfleet.bots.effects import Effects
from tgfleet.bots.events import (
    CallbackQuery,
    ChatMemberUpdated,
    Event,
    MediaRef,
    Message,
    from_inbound,
)
from tgfleet.bots.fsm import ConversationState
from tgfleet.bots.keyboards import InlineKeyboard, InlineMarkup, KeyboardLike, markup_dict
from tgfleet.db.entities import choose_language
from tgfleet.inbox import InboundMessage
from tgfleet.platform.errors import TgfleetError
from tgfleet.platform.redis import redis_client
from tgfleet.sends.media import stored_media, upload_media

log = logging.getLogger(__name__)

#: What ``ctx.set_language`` takes: a language, optionally with its region (``pt_BR``).
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:[_-][A-Za-z]{2,4})?")


class HandlerUsageError(TgfleetError):
    """A handler asked for something its update does not allow (e.g. answering a
    message as if it were a callback query)."""


def _no_translation(message: str) -> str:
    return message


@dataclass
class Context:
    """What a handler gets: the update, its sender, the session, and ways to answer."""

    session: Session
    bot_id: int
    admin_chat_ids: list[int]
    message: InboundMessage
    effects: Effects
    bot_settings: dict[str, Any] = field(default_factory=dict)
    #: Values the filters passed on (``match``, ``callback_data``, ...).
    data: dict[str, Any] = field(default_factory=dict)
    #: The conversation state the update arrived in (None: none); what ``StateIs``
    #: reads. ``ctx.state`` is the state itself, to read and change.
    state_name: str | None = None
    #: The user's stored language, else Telegram's lang_code (the runtime fills it).
    user_lang: str | None = None
    #: The language replies should be in (the I18n middleware sets it).
    lang: str | None = None
    #: Translates a message id (the I18n middleware sets it; by default the id itself).
    gettext: Callable[[str], str] = _no_translation
    #: Applies ``user_lang`` to ``lang`` and ``gettext`` again after ``set_language``
    #: (the I18n middleware sets it).
    relocalize: Callable[[Context], None] | None = None
    #: The fleet's Redis (``REDIS_URL``) when an update worker made this context; what
    #: ``ctx.redis`` connects to.
    redis_url: str | None = None
    #: Whether ``answer()`` was called for this callback query.
    answered: bool = False
    #: The name of the handler chosen for this update (set before inner middlewares run).
    handler_name: str | None = None
    _update: Event | None = field(default=None, repr=False)
    _state: ConversationState | None = field(default=None, repr=False)

    # -- the update --------------------------------------------------------------------------

    @property
    def update(self) -> Event:
        """The typed update (``Message``, ``CallbackQuery``, ...)."""
        if self._update is None:
            self._update = from_inbound(self.message)
        return self._update

    @property
    def state(self) -> ConversationState:
        """This user's conversation state in this chat (``tgfleet.bots.fsm``): ``get()``,
        ``set(State)``, ``update_data(...)``, ``clear()``... Written with the update's
        other effects, in its transaction."""
        if self._state is None:
            self._state = ConversationState(self.session, self.bot_id, self.chat_id, self.user_id)
        return self._state

    @property
    def redis(self) -> Redis:
        """This process's client of the fleet's Redis: state every worker process shares
        (``Throttle`` keeps its counts there). What a handler writes there is not part of
        the update's transaction: a handler run again writes it again."""
        if self.redis_url is None:
            raise HandlerUsageError("this context has no Redis (no update worker made it)")
        return redis_client(self.redis_url)

    @property
    def callback(self) -> CallbackQuery | None:
        update = self.update
        return update if isinstance(update, CallbackQuery) else None

    @property
    def callback_data(self) -> Any:
        """The unpacked ``CallbackData`` a ``SomeData.filter()`` matched (None otherwise)."""
        return self.data.get("callback_data")

    @property
    def bot_username(self) -> str | None:
        username = self.bot_settings.get("username")
        return str(username) if username else None

    @property
    def user_id(self) -> int:
        if self.message.sender_id:
            return int(self.message.sender_id)
        user_id = getattr(self.update, "user_id", None)
        return int(user_id or self.message.chat_id)

    @property
    def chat_id(self) -> int:
        return self.message.chat_id

    @property
    def text(self) -> str:
        return self.message.text

    def args(self) -> list[str]:
        """Words after the command: ``/set age 30`` -> ``['age', '30']``."""
        return self.text.split()[1:]

    def _(self, message: str) -> str:
        """``message`` in the user's language (see ``gettext``)."""
        return self.gettext(message)

    def set_language(self, lang: str) -> None:
        """Store ``lang`` (``"de"``, ``"pt_BR"``) as this user's language in this bot,
        with the update's other effects; it wins over Telegram's ``lang_code`` from now
        on, for this handler's remaining replies too (with the I18n middleware)."""
        if not _LANGUAGE.fullmatch(lang):
            raise HandlerUsageError(f"{lang!r} is not a language code like 'de' or 'pt_BR'")
        choose_language(self.session, self.bot_id, self.user_id, lang)
        self.user_lang = lang
        if self.relocalize is not None:
            self.relocalize(self)

    # -- effects -----------------------------------------------------------------------------

    def reply(self, text: str, keyboard: KeyboardLike | None = None, **options: Any) -> None:
        """Answer in this chat (queued in the outbox, sent after commit)."""
        options.setdefault("reply_to", None)
        self.send(self.chat_id, text, keyboard=keyboard, **options)

    def send(
        self, chat_id: int, text: str, keyboard: KeyboardLike | None = None, **options: Any
    ) -> None:
        """Send ``text`` to ``chat_id``, with ``keyboard`` under it; the options are
        ``queue_message``'s (parse_mode, dedupe_key, media, ...)."""
        if keyboard is not None:
            options["reply_markup"] = markup_dict(keyboard)
        self.effects.queue(chat_id, text, **options)

    def reply_media(
        self,
        media: MediaLike,
        caption: str = "",
        keyboard: KeyboardLike | None = None,
        **options: Any,
    ) -> None:
        """Send a file to this chat: a ``MediaRef`` a message brought (sent again by id),
        or a path on the sender's machine (uploaded by the sender; ``kind`` "photo",
        "document" (the default), "voice" or "video", optional ``file_name`` and
        ``mime_type``). ``caption`` goes under it; the other options are ``send``'s."""
        options.setdefault("reply_to", None)
        self.send_media(self.chat_id, media, caption, keyboard, **options)

    def send_media(
        self,
        chat_id: int,
        media: MediaLike,
        caption: str = "",
        keyboard: KeyboardLike | None = None,
        *,
        kind: str | None = None,
        file_name: str | None = None,
        mime_type: str | None = None,
        **options: Any,
    ) -> None:
        """``reply_media`` to ``chat_id``."""
        value = self._media_value(media, kind, file_name, mime_type)
        self.send(chat_id, caption, keyboard=keyboard, media=value, **options)

    def _media_value(
        self,
        media: MediaLike,
        kind: str | None,
        file_name: str | None,
        mime_type: str | None,
    ) -> dict[str, Any]:
        """The outbox ``media`` of a file a message brought (sent by id) or a local path
        (uploaded by the sender, as ``kind``: "document" unless given)."""
        if isinstance(media, MediaRef):
            if kind is not None or file_name is not None or mime_type is not None:
                raise HandlerUsageError(
                    "a received file is sent as it is: kind, file_name and mime_type are "
                    "for uploads of local files"
                )
            return stored_media(
                media.kind, media.id, media.access_hash, media.file_reference, self._source(media)
            )
        if isinstance(media, str | os.PathLike):
            return upload_media(media, kind or "document", file_name, mime_type)
        raise HandlerUsageError(
            f"send a MediaRef (ctx.update.media) or a file path, not {type(media).__name__}"
        )

    def _source(self, media: MediaRef) -> tuple[int, int] | None:
        """(chat, message) the file came in when it is this update's: the sender fetches
        a fresh file reference from there if Telegram says the stored one expired."""
        update = self.update
        if isinstance(update, Message) and update.media is not None and update.media.id == media.id:
            return update.chat_id, update.message_id
        return None

    def notify_admins(self, text: str) -> None:
        for admin in self.admin_chat_ids:
            self.send(admin, text)

    def event(self, kind: str, **data: Any) -> None:
        """Record an analytics fact for this bot and user."""
        self.effects.event(kind, self.user_id, data)

    def _require_callback(self, what: str) -> CallbackQuery:
        callback = self.callback
        if callback is None:
            raise HandlerUsageError(
                f"{what} is for callback queries; this update is a {type(self.update).__name__}"
            )
        return callback

    def answer(self, text: str | None = None, alert: bool = False, url: str | None = None) -> None:
        """Answer the callback query (once): a toast, an alert, or a url to open."""
        callback = self._require_callback("ctx.answer()")
        if self.answered:
            raise HandlerUsageError("this callback query was answered already; Telegram takes one")
        self.effects.answer_callback(callback.query_id, text, alert, url, chat_id=self.chat_id)
        self.answered = True

    def edit(
        self,
        text: str | None = None,
        keyboard: InlineKeyboard | InlineMarkup | None = None,
        message_id: int | None = None,
        *,
        media: MediaLike | None = None,
        kind: str | None = None,
        file_name: str | None = None,
        mime_type: str | None = None,
        **options: Any,
    ) -> None:
        """Edit a message of this chat: by default the one whose button was pressed.
        ``text`` None keeps the text. An empty ``InlineKeyboard()`` removes the buttons;
        with None the edit carries no keyboard, and Telegram takes inline buttons away:
        pass the keyboard again to keep it. ``media`` replaces the message's photo or
        document (a text message gets one), as ``reply_media`` takes it: a ``MediaRef``
        (by id) or a local path the sender uploads (``kind`` "photo" or "document",
        the default, or "video"; ``file_name``, ``mime_type``); ``text`` is then its
        caption. The options are the outbox's (parse_mode, ...)."""
        if text is None and keyboard is None and media is None:
            raise HandlerUsageError("ctx.edit() needs a new text, a new keyboard or new media")
        if keyboard is not None and not isinstance(keyboard, InlineKeyboard | InlineMarkup):
            raise HandlerUsageError("a message can be edited with an inline keyboard only")
        if media is None and (kind is not None or file_name is not None or mime_type is not None):
            raise HandlerUsageError("kind, file_name and mime_type describe media: pass media=")
        if message_id is None:
            message_id = self._require_callback("ctx.edit() without a message_id").message_id
        markup = None if keyboard is None else markup_dict(keyboard)
        if media is not None:
            options["media"] = self._media_value(media, kind, file_name, mime_type)
        self.effects.edit(self.chat_id, message_id, text, markup, **options)

    def delete(self, message_id: int | None = None) -> None:
        """Delete a message of this chat: by default the one whose button was pressed,
        the message being handled, or the service message of a member joining or leaving."""
        if message_id is None:
            update = self.update
            if isinstance(update, CallbackQuery | Message | ChatMemberUpdated):
                message_id = update.message_id
            if message_id is None:
                raise HandlerUsageError(f"ctx.delete() needs a message_id for a {update!r}")
        self.effects.delete(self.chat_id, [message_id])


#: What ``ctx.reply_media`` sends and ``ctx.edit(media=...)`` puts in a message: a file a
#: message brought, or a local path to upload.
MediaLike = MediaRef | str | os.PathLike[str]
