"""When a handler raises: what the runtime hands the inbox to write with the dead letter
(the press's answer, the admins' notices) and how RetryLater reaches the inbox."""

from __future__ import annotations

from typing import Any

import pytest
from telethon.tl import types

from tgfleet.bots import RetryLater, Router
from tgfleet.bots.runtime import BotView, handler_for, on_dead, retry_limit
from tgfleet.inbox.failures import HandlerRaised
from tgfleet.inbox.record import InboundMessage


def press(query_id: int = 77) -> InboundMessage:
    update = types.UpdateBotCallbackQuery(
        query_id=query_id, user_id=1001, peer=types.PeerUser(1001), msg_id=5,
        chat_instance=1, data=b"x",
    )  # fmt: skip
    return InboundMessage(42, 1001, 1001, 5, "x", None, "callback", update)


def message(text: str = "hi") -> InboundMessage:
    return InboundMessage(42, 1001, 1001, 9, text, None, "message")


def test_a_press_whose_handler_raised_is_answered_empty() -> None:
    effects = on_dead(BotView(42, (7,)), press(), ValueError("boom"))
    assert effects is not None
    [answer] = effects.outbox
    assert (answer["op"], answer["target_id"], answer["text"]) == ("answer", 77, "")


def test_a_message_whose_handler_raised_writes_nothing_by_default() -> None:
    assert on_dead(BotView(42, (7,)), message(), ValueError("boom")) is None


def test_admins_are_told_once_per_dead_update_when_the_bot_asks_for_it() -> None:
    bot = BotView(42, (7, 8), {"notify_admins_on_error": True})
    effects = on_dead(bot, message(), ValueError("boom"))
    assert effects is not None
    assert [(row["chat_id"], row["dedupe_key"]) for row in effects.outbox] == [
        (7, "notice:handler:1001:9:7"),
        (8, "notice:handler:1001:9:8"),
    ]
    assert "ValueError('boom')" in effects.outbox[0]["text"]
    # A press is answered and the admins told, keyed by the query (no message id of its own)
    keys = [row["dedupe_key"] for row in on_dead(bot, press(), ValueError()).outbox]  # type: ignore[union-attr]
    assert keys == [None, "notice:handler:1001:q77:7", "notice:handler:1001:q77:8"]


@pytest.mark.parametrize(("value", "limit"), [(3, 3), (0, None), ("3", None), (True, None)])
def test_a_bot_may_set_how_often_a_handler_retries(value: Any, limit: int | None) -> None:
    assert retry_limit(BotView(42, (), {"handler_retry_limit": value})) == limit


def test_a_handler_error_reaches_the_inbox_with_what_to_write_if_it_dies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = Router("failing")

    @router.callback_query()
    def fails(ctx: Any) -> None:
        ctx.answer("never sent")
        raise RetryLater("the shop is closed", 30)

    monkeypatch.setattr("tgfleet.bots.runtime.app_router", lambda name: router)
    handler = handler_for(BotView(42, (), {"handler_retry_limit": 2}))
    with pytest.raises(HandlerRaised) as raised:
        handler(None, press())  # type: ignore[arg-type]
    # Then the inbox gets the handler's own error, the limit, and a fresh empty answer
    assert isinstance(raised.value.error, RetryLater)
    assert raised.value.retry_limit == 2
    assert [row["text"] for row in raised.value.on_dead.outbox] == [""]  # type: ignore[union-attr]
