"""What a handler gets: ``Context``, the update, its sender, the session, and the effects
it can ask for (replies, edits, deletions, callback answers, media, events, state).

Handlers never call Telegram: every method here adds to the ``Effects`` the inbox writes
with the update's processed mark, in one transaction (see ``tgfleet.bots.router``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tgfleet.bots.effects import Effects
from tgfleet.bots.events import CallbackQuery, Event, MediaRef, Message, from_inbound
from tgfleet.bots.fsm import ConversationState
from tgfleet.bots.keyboards import InlineKeyboard, InlineMarkup, KeyboardLike, markup_dict
from tgfleet.inbox import InboundMessage
from tgfleet.platform.errors import TgfleetError
from tgfleet.sends.media import stored_media, upload_media

log = logging.getLogger(__name__)


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
        if isinstance(media, MediaRef):
            if kind is not None or file_name is not None or mime_type is not None:
                raise HandlerUsageError(
                    "a received file is sent as it is: kind, file_name and mime_type are "
                    "for uploads of local files"
                )
            value = stored_media(
                media.kind, media.id, media.access_hash, media.file_reference, self._source(media)
            )
        elif isinstance(media, str | os.PathLike):
            value = upload_media(media, kind or "document", file_name, mime_type)
        else:
            raise HandlerUsageError(
                f"send a MediaRef (ctx.update.media) or a file path, not {type(media).__name__}"
            )
        self.send(chat_id, caption, keyboard=keyboard, media=value, **options)

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
        **options: Any,
    ) -> None:
        """Edit a message of this chat: by default the one whose button was pressed.
        An empty ``InlineKeyboard()`` removes the buttons; None leaves them. The options
        are the outbox's (parse_mode, ...)."""
        if text is None and keyboard is None:
            raise HandlerUsageError("ctx.edit() needs a new text, a new keyboard or both")
        if keyboard is not None and not isinstance(keyboard, InlineKeyboard | InlineMarkup):
            raise HandlerUsageError("a message can be edited with an inline keyboard only")
        if message_id is None:
            message_id = self._require_callback("ctx.edit() without a message_id").message_id
        markup = None if keyboard is None else markup_dict(keyboard)
        self.effects.edit(self.chat_id, message_id, text, markup, **options)

    def delete(self, message_id: int | None = None) -> None:
        """Delete a message of this chat: by default the one whose button was pressed,
        or the message being handled."""
        if message_id is None:
            update = self.update
            if isinstance(update, CallbackQuery | Message):
                message_id = update.message_id
            else:
                raise HandlerUsageError(f"ctx.delete() needs a message_id for a {update!r}")
        self.effects.delete(self.chat_id, [message_id])


#: What ``ctx.reply_media`` sends: a file a message brought, or a local path to upload.
MediaLike = MediaRef | str | os.PathLike[str]
