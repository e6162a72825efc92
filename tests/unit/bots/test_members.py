"""Members joining and leaving groups, as the runtime hands them to ``chat_member``
handlers: one handler call per change, the bot's own included."""

from __future__ import annotations

from typing import Any

import pytest
from telethon.tl import types

from tests.unit.bots.updates import BOT, GROUP, SENT_AT, USER, context, effects_of
from tgfleet.bots import ChatMemberUpdated, Context, Router
from tgfleet.bots.runtime import BotView, announces_own_change, handler_for
from tgfleet.inbox import InboundMessage

OTHER = 2002


def service(member: int, joined: bool = True, msg_id: int = 8) -> InboundMessage:
    """The group's service message: USER added (or removed) ``member``."""
    action: Any = (
        types.MessageActionChatAddUser(users=[member])
        if joined
        else types.MessageActionChatDeleteUser(user_id=member)
    )
    tl = types.MessageService(
        id=msg_id, peer_id=types.PeerChat(GROUP), date=SENT_AT, from_id=types.PeerUser(USER),
        action=action,
    )  # fmt: skip
    return InboundMessage(BOT, -GROUP, USER, msg_id, "", tl, "chat_member")


def participant(joined: bool = True) -> InboundMessage:
    """The bot's own participant update: USER added (or removed) the bot."""
    member = types.ChatParticipant(user_id=BOT, inviter_id=USER, date=SENT_AT)
    update = types.UpdateChatParticipant(
        chat_id=GROUP, date=SENT_AT, actor_id=USER, user_id=BOT, qts=1,
        prev_participant=None if joined else member, new_participant=member if joined else None,
    )  # fmt: skip
    return InboundMessage(BOT, -GROUP, USER, 8, "", None, "chat_member", update=update)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[ChatMemberUpdated]:
    """The events a ``chat_member`` handler of the bot's app got."""
    got: list[ChatMemberUpdated] = []
    router = Router("members")

    @router.chat_member()
    def member(ctx: Context) -> None:
        assert isinstance(ctx.update, ChatMemberUpdated)
        got.append(ctx.update)
        ctx.reply(f"{'welcome' if ctx.update.joined else 'bye'} {ctx.update.user_id}")

    monkeypatch.setattr("tgfleet.bots.runtime.app_router", lambda name: router)
    return got


def run(inbound: InboundMessage) -> list[str]:
    effects = handler_for(BotView(BOT, ()))(None, inbound)  # type: ignore[arg-type]
    return [row["text"] for row in getattr(effects, "outbox", [])]


def test_another_members_change_reaches_the_handler_with_its_service_message(
    seen: list[ChatMemberUpdated],
) -> None:
    # When USER adds OTHER, then removes them, Then the handler runs once for each,
    # and its replies go to the group
    assert run(service(OTHER)) == [f"welcome {OTHER}"]
    assert run(service(OTHER, joined=False, msg_id=9)) == [f"bye {OTHER}"]
    assert seen == [
        ChatMemberUpdated(-GROUP, OTHER, True, USER, 8),
        ChatMemberUpdated(-GROUP, OTHER, False, USER, 9),
    ]


def test_the_bots_own_change_reaches_the_handler_once(seen: list[ChatMemberUpdated]) -> None:
    # Given the bot added to the group: Telegram sends the service message and the
    # bot's participant update
    # When both are handled, Then only the participant update runs the handler
    assert run(service(BOT)) == []
    assert run(participant()) == [f"welcome {BOT}"]
    # And so for its removal
    assert run(service(BOT, joined=False, msg_id=9)) == []
    assert run(participant(joined=False)) == [f"bye {BOT}"]
    assert seen == [
        ChatMemberUpdated(-GROUP, BOT, True, USER),
        ChatMemberUpdated(-GROUP, BOT, False, USER),
    ]


def test_only_a_service_message_about_the_bot_itself_is_left_to_the_participant_update() -> None:
    assert announces_own_change(ChatMemberUpdated(-GROUP, BOT, True, USER, 8), BOT)
    assert not announces_own_change(ChatMemberUpdated(-GROUP, BOT, True, USER), BOT)
    assert not announces_own_change(ChatMemberUpdated(-GROUP, OTHER, True, USER, 8), BOT)


def test_delete_without_an_id_deletes_the_service_message() -> None:
    ctx = context(service(OTHER))
    ctx.delete()
    assert effects_of(ctx) == [("delete", -GROUP, [8])]
