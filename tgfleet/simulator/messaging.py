"""The messages.* methods: send, send media, typing, get messages (edits and deletes:
``editing``; callback answers: ``callbacks``)."""

from __future__ import annotations

from typing import Any

from telethon.tl import functions, types

from tgfleet.simulator import mtproto
from tgfleet.simulator.files import Photo
from tgfleet.simulator.limits import NEEDS_STARS
from tgfleet.simulator.markup import markup_json
from tgfleet.simulator.media import resolve_media
from tgfleet.simulator.methods import RpcContext, handles
from tgfleet.simulator.render import message_tl, message_updates, peer_chats, peer_users, when
from tgfleet.simulator.world import Bot, Group, StoredMessage, User, WorldError

MAX_TEXT = 4096
MAX_CAPTION = 1024


def _reply_to(request: Any) -> int | None:
    reply = request.reply_to
    if isinstance(reply, types.InputReplyToMessage):
        return int(reply.reply_to_msg_id)
    return None


def check_flood(ctx: RpcContext, bot: Bot, to: User | Group, paid: bool = False) -> None:
    """Refuse a send over the limits: FLOOD_WAIT_N, or, for a paid broadcast message
    (``allow_paid_floodskip``) above the free rate when the bot's Stars ran out,
    BALANCE_TOO_LOW."""
    wait = ctx.sim.flood_wait(bot, to.id, group=isinstance(to, Group), paid=paid)
    if wait == NEEDS_STARS:
        raise WorldError(400, "BALANCE_TOO_LOW")
    if wait:
        raise WorldError(420, f"FLOOD_WAIT_{wait}")


def _short_sent(message: StoredMessage) -> bytes:
    return bytes(
        types.UpdateShortSentMessage(
            out=True, id=message.id, pts=message.pts, pts_count=1, date=when(message.date)
        )
    )


@handles(functions.messages.SendMessageRequest)
def send_message(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    user = ctx.peer(bot, request.peer)
    world = ctx.sim.world
    original = world.duplicate(bot, request.random_id)
    if original is not None:
        ctx.sim.stats["duplicate_sends"] += 1
        return _short_sent(original)
    text = request.message
    if not text or not text.strip():
        raise WorldError(400, "MESSAGE_EMPTY")
    if len(text) > MAX_TEXT:
        raise WorldError(400, "MESSAGE_TOO_LONG")
    markup = markup_json(request.reply_markup)
    check_flood(ctx, bot, user, paid=bool(request.allow_paid_floodskip))
    message = world.bot_sends(bot, user, text, request.random_id, _reply_to(request), markup=markup)
    ctx.sim.on_bot_message(bot, message, origin=ctx.conn)
    return _short_sent(message)


@handles(functions.messages.SendMediaRequest)
def send_media(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    user = ctx.peer(bot, request.peer)
    world = ctx.sim.world
    original = world.duplicate(bot, request.random_id)
    if original is not None:
        ctx.sim.stats["duplicate_sends"] += 1
        return bytes(message_updates(world, bot, original, random_id=request.random_id))
    if len(request.message or "") > MAX_CAPTION:
        raise WorldError(400, "MEDIA_CAPTION_TOO_LONG")
    markup = markup_json(request.reply_markup)
    media = resolve_media(ctx, bot.id, request.media)
    check_flood(ctx, bot, user, paid=bool(request.allow_paid_floodskip))
    photo = media if isinstance(media, Photo) else None
    document = None if isinstance(media, Photo) else media
    text, reply_to = request.message or "", _reply_to(request)
    message = world.bot_sends(bot, user, text, request.random_id, reply_to, photo, document, markup)
    ctx.sim.on_bot_message(bot, message, origin=ctx.conn)
    return bytes(message_updates(world, bot, message, random_id=request.random_id))


@handles(functions.messages.SetTypingRequest)
def set_typing(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    ctx.peer(bot, request.peer)
    ctx.sim.stats["typing"] += 1
    return mtproto.BOOL_TRUE


@handles(functions.messages.GetMessagesRequest)
def get_messages(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    world = ctx.sim.world
    found: list[types.TypeMessage] = []
    stored: list[StoredMessage] = []
    for item in request.id:
        message_id = item.id if isinstance(item, types.InputMessageID) else 0
        message = bot.messages.get(message_id)
        if message is None:
            found.append(types.MessageEmpty(message_id, None))
            continue
        found.append(message_tl(world, bot, message))
        stored.append(message)
    return bytes(
        types.messages.Messages(
            messages=found,
            topics=[],
            chats=peer_chats(world, stored),
            users=peer_users(world, bot, stored),
        )
    )
