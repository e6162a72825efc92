"""What an update worker needs to run a bot's app: a short-lived view of the bot and
the handler that feeds inbound messages to its Router."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tgfleet.bots import app_router
from tgfleet.bots.context import Context
from tgfleet.bots.effects import Effects
from tgfleet.bots.events import ChatMemberUpdated, Event
from tgfleet.bots.fsm import ConversationState, StoredState
from tgfleet.db import Bot, session_scope
from tgfleet.db.prepared import Call
from tgfleet.inbox.failures import HandlerRaised
from tgfleet.inbox.record import Handler, HandlerEffects, InboundMessage
from tgfleet.platform.envelope import KIND_CALLBACK
from tgfleet.platform.settings import Settings
from tgfleet.sends.delivery import NOTICE_PREFIX

log = logging.getLogger(__name__)

#: What a press no handler takes is answered with.
STALE_BUTTON_NOTICE = "This button is no longer available."
#: How long a worker process trusts its copy of a bot's app and admins.
BOT_CACHE_S = 10.0


@dataclass(frozen=True)
class BotView:
    id: int
    admin_chat_ids: tuple[int, ...]
    settings: dict[str, Any] = field(default_factory=dict)


_bots: dict[int, tuple[BotView, float]] = {}


def bot_view(settings: Settings, bot_id: int) -> BotView | None:
    """The bot as handling needs it (None if it is not in the fleet); cached briefly."""
    cached = _bots.get(bot_id)
    if cached is not None and time.monotonic() - cached[1] < BOT_CACHE_S:
        return cached[0]
    with session_scope(settings, bot_id=bot_id) as session:
        bot = session.get(Bot, bot_id)
        if bot is None:
            return None
        view = BotView(bot.id, tuple(bot.admin_chat_ids or ()), dict(bot.settings or {}))
    _bots[bot_id] = (view, time.monotonic())
    return view


def handler_for(bot: BotView, redis_url: str | None = None) -> Handler:
    """The inbox handler that runs ``bot``'s app on one message; its handlers reach the
    fleet's Redis at ``redis_url`` (``ctx.redis``)."""
    router = app_router(bot.settings.get("app"))
    admins = list(bot.admin_chat_ids)

    def handle_message(session: Session, inbound: InboundMessage) -> HandlerEffects:
        ctx = Context(
            session=session,
            bot_id=bot.id,
            admin_chat_ids=admins,
            message=inbound,
            effects=Effects(bot.id),
            bot_settings=bot.settings,
            user_lang=inbound.user_lang,
            redis_url=redis_url,
        )
        ctx._state = conversation_state(ctx)
        if inbound.state_loaded:  # the drain read it with the message: no query
            ctx.state_name = ctx.state.get()
        try:
            handled = not announces_own_change(ctx.update, bot.id) and router.dispatch(ctx)
        except Exception as exc:  # the inbox rolls back; these go with the dead letter
            raise HandlerRaised(exc, on_dead(bot, inbound, exc), retry_limit(bot)) from exc
        if inbound.kind == KIND_CALLBACK and not ctx.answered:
            # Every press is answered once, so the user's spinner always stops; a press no
            # handler takes (a forged or outdated button) gets a short notice.
            query_id = int(getattr(inbound.update, "query_id", 0))
            notice = None if handled else STALE_BUTTON_NOTICE
            if not handled:
                log.info("bot %s: no handler for button data %r", bot.id, inbound.text[:64])
            ctx.effects.answer_callback(query_id, notice, False, None, chat_id=inbound.chat_id)
        change = ctx.state.pending()
        return ctx.effects if change is None else WithState(ctx.effects, change)

    return handle_message


def announces_own_change(event: Event, bot_id: int) -> bool:
    """True for the group's service message of the bot itself joining or leaving: Telegram
    tells the bot of that change with a participant update too, and that one is what the
    ``chat_member`` handlers get (one change, one handler call)."""
    return (
        isinstance(event, ChatMemberUpdated)
        and event.message_id is not None
        and event.user_id == bot_id
    )


def on_dead(bot: BotView, inbound: InboundMessage, error: BaseException) -> Effects | None:
    """What is written when ``inbound`` is dead-lettered because its handler raised:
    a press is still answered (empty), so the user's spinner stops; with
    ``settings["notify_admins_on_error"]`` each admin chat gets a short notice, once
    per dead update (dedupe key ``notice:handler:<chat>:<update>:<admin>``)."""
    effects = Effects(bot.id)
    if inbound.kind == KIND_CALLBACK:
        query_id = int(getattr(inbound.update, "query_id", 0))
        effects.answer_callback(query_id, None, False, None, chat_id=inbound.chat_id)
    if bot.settings.get("notify_admins_on_error"):
        which = _update_id(inbound)
        text = (
            f"A handler failed on {inbound.kind} {which} in chat {inbound.chat_id} and the "
            f"update was dead-lettered: {error!r:.300}"
        )
        for admin in bot.admin_chat_ids:
            key = f"{NOTICE_PREFIX}handler:{inbound.chat_id}:{which}:{admin}"
            effects.queue(admin, text, dedupe_key=key)
    return effects if effects.outbox else None


def _update_id(inbound: InboundMessage) -> str:
    """The message id, or for a press the query id: what tells one dead update apart."""
    if inbound.kind == KIND_CALLBACK:
        return f"q{int(getattr(inbound.update, 'query_id', 0))}"
    return str(inbound.tg_message_id)


def retry_limit(bot: BotView) -> int | None:
    """``settings["handler_retry_limit"]``: how many RetryLater a handler may raise for
    one update (None: the inbox's default)."""
    value = bot.settings.get("handler_retry_limit")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def conversation_state(ctx: Context) -> ConversationState:
    """``ctx.state``, seeded with what the drain read with the message when that row
    is this user's (else it is read on first use)."""
    inbound = ctx.message
    if inbound.state_loaded and (inbound.sender_id or inbound.chat_id) == ctx.user_id:
        stored = StoredState.of_inbound(inbound)
        return ConversationState(ctx.session, ctx.bot_id, ctx.chat_id, ctx.user_id, stored)
    return ConversationState(ctx.session, ctx.bot_id, ctx.chat_id, ctx.user_id)


@dataclass(frozen=True)
class WithState:
    """A handler run's effects and the statement that stores its conversation state
    change: both are written with the processed mark, in its round trip (the state
    first, the outbox rows, whose ids ``written`` wants, last). Otherwise it reads as
    the effects it wraps."""

    effects: Effects
    change: Call

    def calls(self, first: Sequence[Call] = ()) -> list[Call]:
        return self.effects.calls([*first, self.change])

    def written(self, session: Session, rows: Sequence[Any]) -> None:
        self.effects.written(session, rows)

    def __getattr__(self, name: str) -> Any:
        if name == "effects":  # not set yet (copying): no recursion
            raise AttributeError(name)
        return getattr(self.effects, name)


def handler_of_bot(settings: Settings, bot_id: int) -> Handler | None:
    """The handler of ``bot_id``'s app, or None when the bot is not in the fleet."""
    bot = bot_view(settings, bot_id)
    return None if bot is None else handler_for(bot, settings.redis_url)
