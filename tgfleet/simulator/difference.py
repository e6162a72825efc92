"""updates.getState and updates.getDifference: the bot's pts and qts sequences.

The pts sequence (new messages, edits, deletes) is answered from the bot's bounded history;
the qts sequence (UpdateBotStopped, UpdateChatParticipant) from its qts history, as
``other_updates`` with the state's ``qts``, as Telegram does for bots.

At most ``difference_slice`` updates of each sequence (or the request's ``pts_limit`` /
``qts_limit``) go in one answer: when more are missing the answer is a
``differenceSlice`` whose ``intermediate_state`` the client asks from next (Telethon loops
until it gets a ``difference``). A request whose ``pts_total_limit`` is exceeded
(``pts + pts_total_limit < remote pts``), or whose pts the history no longer reaches,
gets ``differenceTooLong`` with the current pts.
"""

from __future__ import annotations

import time
from typing import Any

from telethon.tl import functions, types

from tgfleet.simulator.methods import RpcContext, handles
from tgfleet.simulator.render import chat_tl, message_tl, peer_chats, peer_users, user_tl, when
from tgfleet.simulator.world import Bot, Group, HistoryEntry, QtsEntry, World


def pts_entries(bot: Bot, pts: int, limit: int) -> tuple[list[HistoryEntry], int] | None:
    """History entries after ``pts`` (at most ``limit``) and the pts they lead to.

    None means the history no longer reaches back to ``pts`` (DifferenceTooLong).
    """
    if pts >= bot.pts:
        return [], bot.pts
    if not bot.history or bot.history[0].pts > pts + 1:
        return None
    entries = [entry for entry in bot.history if entry.pts > pts][:limit]
    return entries, entries[-1].pts


def qts_update(world: World, entry: QtsEntry) -> types.TypeUpdate:
    """The TL update of one qts entry."""
    if entry.kind == "stopped":
        return types.UpdateBotStopped(entry.user_id, when(entry.date), entry.flag, entry.qts)
    member = (
        types.ChatParticipant(entry.user_id, entry.actor_id or entry.user_id, when(entry.date))
        if entry.flag
        else None
    )
    return types.UpdateChatParticipant(
        chat_id=entry.chat_id or 0,
        date=when(entry.date),
        actor_id=entry.actor_id or entry.user_id,
        user_id=entry.user_id,
        qts=entry.qts,
        prev_participant=None if entry.flag else types.ChatParticipant(entry.user_id, 0, when(0)),
        new_participant=member,
    )


def record_qts(world: World, bot: Bot, entry: QtsEntry) -> None:
    bot.qts_history.append(entry)
    while len(bot.qts_history) > world.history_limit:
        bot.qts_history.popleft()


def state(bot: Bot, pts: int | None = None, qts: int | None = None) -> types.updates.State:
    return types.updates.State(
        pts=bot.pts if pts is None else pts,
        qts=bot.qts if qts is None else qts,
        date=when(time.time()),
        seq=0,
        unread_count=0,
    )


def _start_listening(ctx: RpcContext) -> None:
    session = ctx.conn.session
    if session is not None and not ctx.without_updates and not session.listening:
        session.listening = True
        ctx.sim.mark_dirty()


@handles(functions.updates.GetStateRequest)
def get_state(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    _start_listening(ctx)
    return bytes(state(bot))


def _pts_updates(world: World, bot: Bot, entries: list[HistoryEntry]) -> tuple[list[Any], ...]:
    new_ids = {e.message_id for e in entries if e.kind == "new"}
    new_messages, others, stored = [], [], []
    for entry in entries:
        if entry.kind == "delete":
            others.append(types.UpdateDeleteMessages([entry.message_id], entry.pts, 1))
            continue
        message = bot.messages.get(entry.message_id)
        if message is None:
            continue
        if entry.kind == "new":
            new_messages.append(message_tl(world, bot, message))
            stored.append(message)
        elif entry.message_id not in new_ids:
            update = types.UpdateEditMessage(message_tl(world, bot, message), entry.pts, 1)
            others.append(update)
            stored.append(message)
    return new_messages, others, stored


def _qts_peers(
    world: World, bot: Bot, entries: list[QtsEntry], users: list[Any], chats: list[Any]
) -> None:
    """Add the users and groups the qts updates name to ``users`` and ``chats``."""
    known = {u.id for u in users}
    chat_ids = {c.id for c in chats}
    for entry in entries:
        for peer_id in (entry.user_id, entry.actor_id):
            peer = world.users.get(peer_id or 0) or world.bots.get(peer_id or 0)
            if peer is not None and peer.id not in known:
                known.add(peer.id)
                users.append(user_tl(world, bot, peer))
        group: Group | None = world.groups.get(entry.chat_id or 0)
        if group is not None and group.id not in chat_ids:
            chat_ids.add(group.id)
            chats.append(chat_tl(group))


@handles(functions.updates.GetDifferenceRequest)
def get_difference(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    _start_listening(ctx)
    world = ctx.sim.world
    ctx.sim.stats["differences"] += 1
    limit = ctx.sim.config.difference_slice
    total = request.pts_total_limit
    found = pts_entries(bot, request.pts, min(limit, request.pts_limit or limit))
    if found is None or (total and request.pts + total < bot.pts):
        ctx.sim.stats["differences_too_long"] += 1
        return bytes(types.updates.DifferenceTooLong(pts=bot.pts))
    entries, pts = found
    qts_limit = min(limit, request.qts_limit or limit)
    missed_qts = [e for e in bot.qts_history if e.qts > (request.qts or 0)]
    qts_entries = missed_qts[:qts_limit]
    qts = qts_entries[-1].qts if len(missed_qts) > qts_limit else bot.qts
    if not entries and not qts_entries:
        return bytes(types.updates.DifferenceEmpty(date=when(time.time()), seq=0))
    new_messages, others, stored = _pts_updates(world, bot, entries)
    others.extend(qts_update(world, e) for e in qts_entries)
    users, chats = peer_users(world, bot, stored), peer_chats(world, stored)
    _qts_peers(world, bot, qts_entries, users, chats)
    parts = {
        "new_messages": new_messages,
        "new_encrypted_messages": [],
        "other_updates": others,
        "chats": chats,
        "users": users,
    }
    if pts < bot.pts or qts < bot.qts:
        ctx.sim.stats["difference_slices"] += 1
        slice_state = state(bot, pts, qts)
        return bytes(types.updates.DifferenceSlice(**parts, intermediate_state=slice_state))
    return bytes(types.updates.Difference(**parts, state=state(bot, pts, qts)))
