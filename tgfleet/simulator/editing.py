"""Edits and deletes: messages.editMessage and messages.deleteMessages from bots, and edits
simulated users make to their own messages.

Each edit moves the bot's pts by 1 (UpdateEditMessage); a delete of N messages moves it by
N (messages.AffectedMessages(pts, pts_count=N), UpdateDeleteMessages in getDifference).
Both are flood-limited like sends (the same per-chat and per-bot buckets).

An edit with ``media`` replaces the message's photo or document (a text message gets one,
as Telegram lets bots do); the file is checked as sendMedia checks it. A voice note can
neither be replaced (MEDIA_PREV_INVALID) nor be the new file (MEDIA_NEW_INVALID).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from telethon.tl import functions, types

from tgfleet.simulator.files import Document, Photo
from tgfleet.simulator.markup import markup_json
from tgfleet.simulator.media import resolve_media
from tgfleet.simulator.messaging import MAX_CAPTION, MAX_TEXT, check_flood
from tgfleet.simulator.methods import RpcContext, handles
from tgfleet.simulator.render import message_push, message_updates, updates_push
from tgfleet.simulator.world import Bot, HistoryEntry, StoredMessage, World, WorldError

if TYPE_CHECKING:
    from tgfleet.simulator.server import Simulator

_UNSET: Any = object()


def _file_ids(
    message: StoredMessage, media: Photo | Document | None
) -> tuple[int | None, int | None]:
    """(photo_id, document_id) of ``message`` once ``media`` (None: no new file) is in it."""
    if media is None:
        return message.photo_id, message.document_id
    return (media.id, None) if isinstance(media, Photo) else (None, media.id)


def _unchanged(
    message: StoredMessage, text: str, markup: Any, media: Photo | Document | None
) -> bool:
    files = (message.photo_id, message.document_id)
    return (message.text, message.markup, files) == (text, markup, _file_ids(message, media))


def apply_edit(
    world: World,
    bot: Bot,
    message: StoredMessage,
    text: str,
    markup: Any = _UNSET,
    media: Photo | Document | None = None,
) -> StoredMessage:
    """Change a message's text (and markup, and file: ``media``); the bot's pts moves by
    1; users' copies follow."""
    new_markup = message.markup if markup is _UNSET else markup
    if _unchanged(message, text, new_markup, media):
        raise WorldError(400, "MESSAGE_NOT_MODIFIED")
    bot.pts += 1
    now = time.time()
    message.text, message.markup = text, new_markup
    message.photo_id, message.document_id = _file_ids(message, media)
    message.edit_date, message.pts = int(now), bot.pts
    world._record(bot, HistoryEntry(bot.pts, "edit", message.id))
    if message.out:
        for user in world.recipients(bot, message):
            item = world.inbox_item(user, bot.id, message.id)
            if item is not None:
                item.text, item.markup, item.edited_at = text, new_markup, now
                if media is not None:
                    item.photo_id, item.media = message.photo_id, world.media_json(message)
    return message


def _new_media(ctx: RpcContext, bot: Bot, message: StoredMessage, media: Any) -> Photo | Document:
    """The file an edit puts in ``message``: checked as sendMedia checks it (unknown file or
    wrong access hash: MEDIA_EMPTY; stale file reference: FILE_REFERENCE_EXPIRED)."""
    new = resolve_media(ctx, bot.id, media)
    documents = ctx.sim.world.documents
    old = None if message.document_id is None else documents.get(message.document_id)
    if old is not None and old.kind == "voice":
        raise WorldError(400, "MEDIA_PREV_INVALID")
    if isinstance(new, Document) and new.kind == "voice":
        raise WorldError(400, "MEDIA_NEW_INVALID")
    return new


def _edited_markup(message: StoredMessage, request_markup: Any) -> Any:
    """What editMessage leaves as the message's markup: an inline keyboard is replaced
    (absent: removed, as Telegram does); a reply keyboard cannot be edited."""
    if request_markup is not None and not isinstance(request_markup, types.ReplyInlineMarkup):
        raise WorldError(400, "REPLY_MARKUP_INVALID")
    if message.markup is not None and "inline" not in message.markup:
        return message.markup if request_markup is None else markup_json(request_markup)
    return markup_json(request_markup)


@handles(functions.messages.EditMessageRequest)
def edit_message(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    chat = ctx.peer(bot, request.peer)
    message = bot.messages.get(request.id)
    if message is None or (message.chat_id or message.peer_id) != chat.id:
        raise WorldError(400, "MESSAGE_ID_INVALID")
    if not message.out:
        raise WorldError(403, "MESSAGE_AUTHOR_REQUIRED")
    media = None if request.media is None else _new_media(ctx, bot, message, request.media)
    text = message.text if request.message is None else request.message
    has_file = media is not None or message.photo_id is not None or message.document_id is not None
    if not text.strip() and not has_file:
        raise WorldError(400, "MESSAGE_EMPTY")
    if has_file and len(text) > MAX_CAPTION:
        raise WorldError(400, "MEDIA_CAPTION_TOO_LONG")
    if len(text) > MAX_TEXT:
        raise WorldError(400, "MESSAGE_TOO_LONG")
    markup = _edited_markup(message, request.reply_markup)
    if _unchanged(message, text, markup, media):
        raise WorldError(400, "MESSAGE_NOT_MODIFIED")
    check_flood(ctx, bot, chat)
    edited = apply_edit(ctx.sim.world, bot, message, text, markup, media)
    ctx.sim.on_bot_message(bot, edited, origin=ctx.conn, edit=True)
    return bytes(message_updates(ctx.sim.world, bot, edited, edit=True))


def _deletable(world: World, bot: Bot, ids: list[int]) -> list[StoredMessage]:
    found = [bot.messages[i] for i in dict.fromkeys(ids) if i in bot.messages]
    for message in found:
        if message.chat_id is not None and not message.out:
            raise WorldError(403, "MESSAGE_DELETE_FORBIDDEN")
    return found


@handles(functions.messages.DeleteMessagesRequest)
def delete_messages(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    world = ctx.sim.world
    found = _deletable(world, bot, list(request.id))
    chats: dict[int, Any] = {}
    for message in found:
        chat_id = message.chat_id or message.peer_id
        if chat_id not in chats:
            chats[chat_id] = world.groups[chat_id] if message.chat_id else world.users[chat_id]
    for chat in chats.values():
        check_flood(ctx, bot, chat)
    for message in found:
        bot.pts += 1
        world._record(bot, HistoryEntry(bot.pts, "delete", message.id))
        del bot.messages[message.id]
        if message.out and request.revoke:
            for user in world.recipients(bot, message):
                item = world.inbox_item(user, bot.id, message.id)
                if item is not None:
                    item.deleted = True
    ctx.sim.stats["deletes"] += len(found)
    ctx.sim.mark_dirty()
    if found:
        update = types.UpdateDeleteMessages([m.id for m in found], bot.pts, len(found))
        _push_others(ctx, bot, update)
    return bytes(types.messages.AffectedMessages(pts=bot.pts, pts_count=len(found)))


def _push_others(ctx: RpcContext, bot: Bot, update: Any) -> None:
    """Tell the bot's other listening sessions (they would otherwise see a pts gap)."""
    sim = ctx.sim
    if any(c is not ctx.conn for c in sim.listeners(bot.id)):
        sim.push(bot, updates_push(sim.world, bot, [update], [], []), exclude=ctx.conn)


def user_edits(sim: Simulator, user_id: int, bot_id: int, message_id: int, text: str) -> int:
    """A simulated user edits a message they sent the bot (``message_id`` as the bot sees
    it); the bot gets UpdateEditMessage. Returns the new pts."""
    world = sim.world
    world.user(user_id)
    bot = world.bot(bot_id)
    message = bot.messages.get(message_id)
    if message is None or message.out or message.peer_id != user_id or message.action:
        raise WorldError(400, "MESSAGE_ID_INVALID")
    if not text.strip():
        raise WorldError(400, "MESSAGE_EMPTY")
    apply_edit(world, bot, message, text)
    sim.stats["user_edits"] += 1
    sim.mark_dirty()
    if sim.listeners(bot_id):
        sim.push(bot, message_push(world, bot, message, edit=True))
    return bot.pts
