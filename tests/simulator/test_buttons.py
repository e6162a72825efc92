"""Reply markup and inline button presses: what the user sees, callback queries and answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from telethon import Button, events, functions
from telethon.errors import ButtonDataInvalidError, QueryIdInvalidError, ReplyMarkupTooLongError
from telethon.tl import types

from tests.support.simulator import World
from tests.support.waiting import wait_until_async
from tgfleet.simulator import SimulatorApiError

pytestmark = pytest.mark.timeout(60)


def _inline(*buttons: Any) -> types.ReplyInlineMarkup:
    return types.ReplyInlineMarkup([types.KeyboardInlineButtonRow(list(buttons))])


def _callback(text: str, data: bytes) -> types.KeyboardInlineButton:
    return types.KeyboardInlineButton(text, types.InlineButtonTypeCallback(data))


def test_user_sees_inline_and_reply_keyboards(world: World, run: Callable[..., Any]) -> None:
    # Given a bot that knows the user
    async def scenario() -> None:
        client = await world.bot_client()
        try:
            peer = await client.get_input_entity("ann_smith")
            # When it sends an inline keyboard, a reply keyboard and a keyboard removal
            await client.send_message(
                peer,
                "Pick",
                buttons=[
                    [Button.inline("Yes", b"yes"), Button.url("Docs", "https://example.org")],
                    [Button.inline("Raw", b"\xff\x00")],
                ],
            )
            await client.send_message(
                peer, "Menu", buttons=[Button.text("A", resize=True, single_use=True)]
            )
            await client.send_message(peer, "Bye", buttons=Button.clear())
        finally:
            await client.disconnect()

    run(scenario())
    # Then the user's view shows each markup
    pick, menu, bye = world.sim.received(world.user["id"])
    assert pick["markup"] == {
        "inline": [
            [
                {"type": "callback", "text": "Yes", "data": "yes", "data_b64": "eWVz"},
                {"type": "url", "text": "Docs", "url": "https://example.org"},
            ],
            [{"type": "callback", "text": "Raw", "data": None, "data_b64": "/wA="}],
        ]
    }
    assert menu["markup"]["keyboard"] == [[{"type": "text", "text": "A"}]]
    assert (menu["markup"]["resize"], menu["markup"]["one_time"]) == (True, True)
    assert bye["markup"] == {"remove": True, "selective": False}
    assert (pick["edit_date"], pick["deleted"]) == (None, False)


def test_press_reaches_the_bot_and_returns_its_answer(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a bot whose CallbackQuery handler answers "ok" as an alert
    async def scenario() -> tuple[list[Any], dict[str, Any], list[dict[str, Any]]]:
        client = await world.bot_client()
        seen: list[Any] = []

        async def on_query(event: events.CallbackQuery.Event) -> None:
            seen.append((event.data, event.sender_id, event.chat_id, event.message_id))
            await event.answer("ok", alert=True)

        client.add_event_handler(on_query, events.CallbackQuery())
        await client.catch_up()
        try:
            peer = await client.get_input_entity("ann_smith")
            sent = await client.send_message(peer, "Sure?", buttons=Button.inline("Yes", b"y:1"))
            # When the user presses the button
            answer = await asyncio.to_thread(
                world.sim.press, world.user["id"], world.bot["id"], sent.id, text="Yes"
            )
            # and the bot answers the same query a second time
            with pytest.raises(QueryIdInvalidError):
                await client(
                    functions.messages.SetBotCallbackAnswerRequest(
                        query_id=answer["query_id"], cache_time=0, message="again"
                    )
                )
            presses = await asyncio.to_thread(world.sim.presses, world.user["id"])
            return [*seen, sent.id], answer, presses
        finally:
            await client.disconnect()

    seen, answer, presses = run(scenario())
    # Then the handler saw the data, from the user, in the private chat, on that message
    user_id = world.user["id"]
    assert seen[0] == (b"y:1", user_id, user_id, seen[1])
    # and the press returned the answer (the spinner stopped), which stays readable
    assert (answer["answered"], answer["message"], answer["alert"]) == (True, "ok", True)
    assert answer["timed_out"] is False
    assert [(p["data"], p["answered"], p["message"]) for p in presses] == [("y:1", True, "ok")]


def test_unanswered_press_times_out_and_late_answer_is_refused(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a bot whose handler notes the query but does not answer it
    async def scenario() -> tuple[dict[str, Any], int]:
        client = await world.bot_client()
        queries: list[int] = []

        async def on_query(event: events.CallbackQuery.Event) -> None:
            queries.append(event.query.query_id)

        client.add_event_handler(on_query, events.CallbackQuery(data=b"slow"))
        await client.catch_up()
        try:
            peer = await client.get_input_entity("ann_smith")
            sent = await client.send_message(peer, "?", buttons=Button.inline("Slow", b"slow"))
            # When the user presses it and waits 0.3 s
            answer = await asyncio.to_thread(
                world.sim.press,
                world.user["id"],
                world.bot["id"],
                sent.id,
                data="slow",
                timeout=0.3,
            )
            await wait_until_async(lambda: queries, 5, "the bot to see the query")
            # Then an answer after the timeout is refused
            with pytest.raises(QueryIdInvalidError):
                await client(
                    functions.messages.SetBotCallbackAnswerRequest(
                        query_id=queries[0], cache_time=0, message="late"
                    )
                )
            return answer, queries[0]
        finally:
            await client.disconnect()

    answer, query_id = run(scenario())
    assert (answer["answered"], answer["timed_out"], answer["message"]) == (False, True, None)
    assert answer["query_id"] == query_id


def test_forged_presses_and_bad_markup_are_refused(world: World, run: Callable[..., Any]) -> None:
    # Given a bot that sent the user an inline keyboard
    async def scenario() -> int:
        client = await world.bot_client()
        try:
            peer = await client.get_input_entity("ann_smith")
            # When it sends 65 bytes of callback data, Then BUTTON_DATA_INVALID
            with pytest.raises(ButtonDataInvalidError):
                await client.send_message(peer, "x", buttons=_inline(_callback("Big", b"x" * 65)))
            # When it sends a row of 9 inline buttons, Then REPLY_MARKUP_TOO_LONG
            nine = [_callback(str(i), b"d") for i in range(9)]
            with pytest.raises(ReplyMarkupTooLongError):
                await client.send_message(peer, "x", buttons=_inline(*nine))
            sent = await client.send_message(
                peer, "ok", buttons=[Button.inline("A", b"a"), Button.url("U", "https://x.org")]
            )
            return sent.id
        finally:
            await client.disconnect()

    message_id = run(scenario())
    user_id, bot_id = world.user["id"], world.bot["id"]
    # Then presses of data the message does not carry, of a URL button, or of an unknown
    # message are refused by the control API
    for kwargs in ({"data": "forged"}, {"text": "U"}, {"text": "Nope"}):
        with pytest.raises(SimulatorApiError) as refused:
            world.sim.press(user_id, bot_id, message_id, **kwargs)
        assert refused.value.status == 400
    with pytest.raises(SimulatorApiError) as unknown:
        world.sim.press(user_id, bot_id, message_id + 100, text="A")
    assert unknown.value.message == "MESSAGE_ID_INVALID"
    assert len(world.sim.received(user_id)) == 1
