"""The handler API: a router of commands, texts and photos, and the context handlers get.

A bot app is a ``Router``; ``bots.settings['app']`` names which one a bot runs
(see ``tgfleet.bots.app_router``). Handlers are plain synchronous functions of a
``Context``; whatever they write goes through ``ctx.session`` in the same
transaction that marks the message processed, so their effects happen once.
Replies (``ctx.reply``, ``ctx.send``, ``ctx.notify_admins``) and analytics events
(``ctx.event``) are written when the handler returns, with the processed mark, in
that same transaction; the replies are enqueued for delivery after it commits.

    router = Router("echo")

    @router.command("start")
    def start(ctx: Context) -> None:
        ctx.reply("hello")
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tgfleet.bots.effects import Effects
from tgfleet.inbox import InboundMessage

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What a handler gets: the message, its sender, the session, and ways to answer."""

    session: Session
    bot_id: int
    admin_chat_ids: list[int]
    message: InboundMessage
    effects: Effects
    bot_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> int:
        return int(self.message.sender_id or self.message.chat_id)

    @property
    def chat_id(self) -> int:
        return self.message.chat_id

    @property
    def text(self) -> str:
        return self.message.text

    def args(self) -> list[str]:
        """Words after the command: ``/set age 30`` -> ``['age', '30']``."""
        return self.text.split()[1:]

    def reply(self, text: str, **options: Any) -> None:
        """Answer in this chat (queued in the outbox, sent after commit)."""
        options.setdefault("reply_to", None)
        self.send(self.chat_id, text, **options)

    def send(self, chat_id: int, text: str, **options: Any) -> None:
        """Send ``text`` to ``chat_id``; the options are ``queue_message``'s (parse_mode,
        dedupe_key, media, ...)."""
        self.effects.queue(chat_id, text, **options)

    def notify_admins(self, text: str) -> None:
        for admin in self.admin_chat_ids:
            self.send(admin, text)

    def event(self, kind: str, **data: Any) -> None:
        """Record an analytics fact for this bot and user."""
        self.effects.event(kind, self.user_id, data)


HandlerFn = Callable[[Context], None]


class Router:
    """Routes an inbound message to the first matching handler."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._commands: dict[str, HandlerFn] = {}
        self._photo: HandlerFn | None = None
        self._text: HandlerFn | None = None
        self._fallback: HandlerFn | None = None

    def command(self, name: str) -> Callable[[HandlerFn], HandlerFn]:
        def register(fn: HandlerFn) -> HandlerFn:
            self._commands[name.lower()] = fn
            return fn

        return register

    def photo(self) -> Callable[[HandlerFn], HandlerFn]:
        def register(fn: HandlerFn) -> HandlerFn:
            self._photo = fn
            return fn

        return register

    def text(self) -> Callable[[HandlerFn], HandlerFn]:
        def register(fn: HandlerFn) -> HandlerFn:
            self._text = fn
            return fn

        return register

    def fallback(self) -> Callable[[HandlerFn], HandlerFn]:
        """For anything else (unknown commands, other media)."""

        def register(fn: HandlerFn) -> HandlerFn:
            self._fallback = fn
            return fn

        return register

    def resolve(self, message: InboundMessage) -> HandlerFn | None:
        if message.kind != "message":
            return None  # edits are recorded, not re-handled
        if message.photo is not None and self._photo is not None:
            return self._photo
        text = message.text.strip()
        if text.startswith("/"):
            name = text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower() if len(text) > 1 else ""
            return self._commands.get(name, self._fallback)
        if text and self._text is not None:
            return self._text
        return self._fallback

    def dispatch(self, ctx: Context) -> bool:
        handler = self.resolve(ctx.message)
        if handler is None:
            return False
        handler(ctx)
        return True
