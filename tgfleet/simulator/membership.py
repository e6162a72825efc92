"""Who talks to whom: users blocking bots (UpdateBotStopped, on the bot's qts sequence) and
members joining or leaving groups (a service message on the pts sequence, and, when the
member is the bot itself, UpdateChatParticipant on its qts sequence)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tgfleet.simulator.difference import qts_update, record_qts
from tgfleet.simulator.render import message_push, updates_push
from tgfleet.simulator.world import Bot, Group, QtsEntry, WorldError

if TYPE_CHECKING:
    from tgfleet.simulator.server import Simulator


def _qts_event(sim: Simulator, bot: Bot, entry: QtsEntry, group: Group | None = None) -> None:
    record_qts(sim.world, bot, entry)
    world = sim.world
    if sim.listeners(bot.id):
        users = [p for p in (world.users.get(entry.user_id), world.bots.get(entry.user_id)) if p]
        actor = world.users.get(entry.actor_id or 0)
        if actor is not None and actor.id != entry.user_id:
            users.append(actor)
        chats = [] if group is None else [group]
        sim.push(bot, updates_push(world, bot, [qts_update(world, entry)], users, chats))


def set_blocked(sim: Simulator, user_id: int, bot_id: int, blocked: bool) -> int | None:
    """The user blocks (or unblocks) the bot. When that changes anything, the bot gets
    UpdateBotStopped(stopped=blocked) with its next qts; returns that qts (None: no change)."""
    world = sim.world
    user, bot = world.user(user_id), world.bot(bot_id)
    if (bot_id in user.blocked_bots) == blocked:
        return None
    (user.blocked_bots.add if blocked else user.blocked_bots.discard)(bot_id)
    bot.qts += 1
    _qts_event(sim, bot, QtsEntry(bot.qts, "stopped", int(time.time()), user_id, blocked))
    sim.stats["bot_stopped" if blocked else "bot_restarted"] += 1
    sim.mark_dirty()
    return bot.qts


def change_member(
    sim: Simulator, group_id: int, member_id: int, actor_id: int, joined: bool
) -> list[dict[str, int]]:
    """``actor_id`` (a user in the group) adds or removes ``member_id`` (a user or bot).

    Every bot in the group (and the removed bot) gets the service message
    (MessageActionChatAddUser / ChatDeleteUser, pts +1); a bot that is itself added or
    removed also gets UpdateChatParticipant (qts +1). Returns [{"bot_id", "id", "pts"}].
    """
    world = sim.world
    group = world.group(group_id)
    if member_id not in world.users and member_id not in world.bots:
        raise WorldError(404, f"no user or bot {member_id}")
    if actor_id not in world.users or actor_id not in group.members:
        raise WorldError(403, "CHAT_ADMIN_REQUIRED")
    if (member_id in group.members) == joined:
        raise WorldError(400, "USER_ALREADY_PARTICIPANT" if joined else "USER_NOT_PARTICIPANT")
    bots_before = {m for m in group.members if m in world.bots}
    (group.members.add if joined else group.members.discard)(member_id)
    bots = sorted(bots_before | {m for m in group.members if m in world.bots})
    action = {"type": "add_user" if joined else "delete_user", "user_id": member_id}
    sent = []
    for bot_id in bots:
        bot = world.bots[bot_id]
        message = world.user_sends(actor_id, bot_id, "", chat_id=group_id, action=action)
        sent.append({"bot_id": bot_id, "id": message.id, "pts": message.pts})
        if sim.listeners(bot_id):
            sim.push(bot, message_push(world, bot, message))
        if bot_id == member_id:
            bot.qts += 1
            entry = QtsEntry(bot.qts, "participant", int(time.time()), member_id, joined)
            entry.chat_id, entry.actor_id = group_id, actor_id
            _qts_event(sim, bot, entry, group)
    sim.stats["member_changes"] += 1
    sim.mark_dirty()
    return sent
