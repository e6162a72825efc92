"""Inline button presses: a simulated user presses a callback button of a message a bot
sent them; the bot gets UpdateBotCallbackQuery (no pts: it is not in getDifference, a bot
that is offline never sees it) and answers with messages.setBotCallbackAnswer.

The press waits (bounded, ``SimulatorConfig.callback_timeout``, as Telegram's
BOT_RESPONSE_TIMEOUT) for the answer. After that, or once answered, the query id is dead:
answering it gives ``400 QUERY_ID_INVALID``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telethon.tl import functions, types

from tgfleet.simulator import mtproto
from tgfleet.simulator.markup import find_callback
from tgfleet.simulator.methods import RpcContext, handles
from tgfleet.simulator.render import updates_push
from tgfleet.simulator.world import WorldError

if TYPE_CHECKING:
    from tgfleet.simulator.server import Simulator

MAX_QUERIES = 10_000
MAX_ANSWER_TEXT = 200


@dataclass
class CallbackQuery:
    id: int
    bot_id: int
    user_id: int
    message_id: int
    chat_id: int | None
    data: bytes
    button_text: str
    pressed_at: float
    waiter: asyncio.Future[None] | None = field(default=None, repr=False)
    answered: bool = False
    expired: bool = False
    message: str | None = None
    alert: bool = False
    url: str | None = None
    cache_time: int = 0
    answered_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        try:
            text_data: str | None = self.data.decode("utf-8")
        except UnicodeDecodeError:
            text_data = None
        return {
            "query_id": self.id,
            "bot_id": self.bot_id,
            "user_id": self.user_id,
            "message_id": self.message_id,
            "chat_id": self.chat_id,
            "text": self.button_text,
            "data": text_data,
            "data_b64": base64.b64encode(self.data).decode(),
            "pressed_at": self.pressed_at,
            "answered": self.answered,
            "timed_out": self.expired and not self.answered,
            "message": self.message,
            "alert": self.alert,
            "url": self.url,
            "cache_time": self.cache_time,
            "answered_at": self.answered_at,
        }


class CallbackQueries:
    """Queries by id (the newest ``MAX_QUERIES``: the record of what users pressed)."""

    def __init__(self) -> None:
        self.by_id: OrderedDict[int, CallbackQuery] = OrderedDict()

    def add(self, query: CallbackQuery) -> None:
        self.by_id[query.id] = query
        while len(self.by_id) > MAX_QUERIES:
            self.by_id.popitem(last=False)

    def of_user(self, user_id: int, bot_id: int | None = None) -> list[CallbackQuery]:
        return [
            q
            for q in self.by_id.values()
            if q.user_id == user_id and (bot_id is None or q.bot_id == bot_id)
        ]


def _new_query_id() -> int:
    value: int = struct.unpack("<q", os.urandom(8))[0] & 0x7FFF_FFFF_FFFF_FFFF
    return value or 1


async def press(
    sim: Simulator,
    user_id: int,
    bot_id: int,
    message_id: int,
    text: str | None = None,
    data: bytes | None = None,
    timeout: float | None = None,
) -> CallbackQuery:
    """The user presses the callback button (by text or data) of a bot's message and waits
    for the bot's answer (at most ``timeout`` s); returns the query, answered or not."""
    world = sim.world
    user, bot = world.user(user_id), world.bot(bot_id)
    if text is None and data is None:
        raise WorldError(400, "name the button by 'text' or 'data'")
    item = world.inbox_item(user, bot_id, message_id)
    if item is None or item.deleted or message_id not in bot.messages:
        raise WorldError(400, "MESSAGE_ID_INVALID")
    button = find_callback(item.markup, text, data)
    if button is None:
        raise WorldError(400, "DATA_INVALID")  # no such button on that message
    if button["type"] != "callback":
        raise WorldError(400, f"BUTTON_TYPE_INVALID: {button['type']} buttons send no query")
    query = CallbackQuery(
        id=_new_query_id(),
        bot_id=bot_id,
        user_id=user_id,
        message_id=message_id,
        chat_id=item.chat_id,
        data=base64.b64decode(button["data_b64"]),
        button_text=button["text"],
        pressed_at=time.time(),
        waiter=asyncio.get_running_loop().create_future(),
    )
    sim.callbacks.add(query)
    group = None if item.chat_id is None else world.groups.get(item.chat_id)
    peer: types.TypePeer = types.PeerUser(user_id) if group is None else types.PeerChat(group.id)
    chat_instance = world.access_hash(bot_id, -(item.chat_id or user_id))
    update = types.UpdateBotCallbackQuery(
        query.id, user_id, peer, message_id, chat_instance, data=query.data
    )
    sim.stats["callback_queries"] += 1
    sim.push(bot, updates_push(world, bot, [update], [user], [] if group is None else [group]))
    assert query.waiter is not None
    wait = sim.config.callback_timeout if timeout is None else timeout
    try:
        await asyncio.wait_for(asyncio.shield(query.waiter), wait)
    except TimeoutError:
        query.expired = True
        sim.stats["callback_timeouts"] += 1
    query.waiter = None
    return query


@handles(functions.messages.SetBotCallbackAnswerRequest)
def set_bot_callback_answer(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    query = ctx.sim.callbacks.by_id.get(request.query_id)
    if query is None or query.bot_id != bot.id or query.answered or query.expired:
        raise WorldError(400, "QUERY_ID_INVALID")
    if request.message is not None and len(request.message) > MAX_ANSWER_TEXT:
        raise WorldError(400, "MESSAGE_TOO_LONG")
    query.answered, query.answered_at = True, time.time()
    query.message, query.alert = request.message, bool(request.alert)
    query.url, query.cache_time = request.url, request.cache_time
    if query.waiter is not None and not query.waiter.done():
        query.waiter.set_result(None)
    ctx.sim.stats["callback_answers"] += 1
    return mtproto.BOOL_TRUE
