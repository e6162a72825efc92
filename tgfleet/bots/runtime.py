"""What an update worker needs to run a bot's app: a short-lived view of the bot and
the handler that feeds inbound messages to its Router."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tgfleet.bots import app_router
from tgfleet.bots.effects import Effects
from tgfleet.bots.router import Context
from tgfleet.db import Bot, session_scope
from tgfleet.inbox.record import Handler, InboundMessage
from tgfleet.platform.envelope import KIND_CALLBACK
from tgfleet.platform.settings import Settings

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


def handler_for(bot: BotView) -> Handler:
    """The inbox handler that runs ``bot``'s app on one message."""
    router = app_router(bot.settings.get("app"))
    admins = list(bot.admin_chat_ids)

    def handle_message(session: Session, inbound: InboundMessage) -> Effects:
        ctx = Context(
            session=session,
            bot_id=bot.id,
            admin_chat_ids=admins,
            message=inbound,
            effects=Effects(bot.id),
            bot_settings=bot.settings,
        )
        handled = router.dispatch(ctx)
        if inbound.kind == KIND_CALLBACK and not ctx.answered:
            # Every press is answered once, so the user's spinner always stops; a press no
            # handler takes (a forged or outdated button) gets a short notice.
            query_id = int(getattr(inbound.update, "query_id", 0))
            notice = None if handled else STALE_BUTTON_NOTICE
            if not handled:
                log.info("bot %s: no handler for button data %r", bot.id, inbound.text[:64])
            ctx.effects.answer_callback(query_id, notice, False, None, chat_id=inbound.chat_id)
        return ctx.effects

    return handle_message


def handler_of_bot(settings: Settings, bot_id: int) -> Handler | None:
    """The handler of ``bot_id``'s app, or None when the bot is not in the fleet."""
    bot = bot_view(settings, bot_id)
    return None if bot is None else handler_for(bot)
